"""Unit tests of `reactor.serve`."""
