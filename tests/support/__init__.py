"""Helpers shared by the tests, the drivers (`tests.system.torture`, `tests.system.load`)
and the benchmarks (`tests.bench`).

A helper that more than one module needs lives here, in one place: no test module
(`test_*.py`) imports another, and nothing imports `tests.conftest` (the fixtures there
are built from these helpers). These helpers do not borrow the code under test to check
it: starting a `reactor serve`, and recounting every read of a run, are written here
again on purpose, so that a test never takes the product's own word for its proof.
"""
