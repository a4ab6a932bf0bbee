"""pod5-reactor: live, crash-safe basecalling work manager."""

__version__ = "0.1.0"
