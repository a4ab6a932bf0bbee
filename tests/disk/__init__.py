"""Unit tests of `reactor.disk`."""
