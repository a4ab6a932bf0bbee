"""Tests that run real processes end to end: `reactor serve` with real engines, the crash
torture and load drivers (`python -m tests.system.torture`, `python -m tests.system.load`)
at quick settings, systemd units, access over a network namespace, and the benchmark smoke
test."""
