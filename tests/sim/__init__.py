"""Unit tests of `reactor.sim`."""
