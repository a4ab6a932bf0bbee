"""Unit tests of `reactor.settings`."""
