"""Unit tests of `reactor.core`."""
