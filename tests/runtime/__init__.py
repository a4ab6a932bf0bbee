"""Unit tests of `reactor.runtime`."""
