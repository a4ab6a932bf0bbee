"""Unit tests of `reactor.engine`."""
