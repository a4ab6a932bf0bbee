"""Unit tests of `reactor.ops`."""
