"""Tests that need something of the host: a tool (iproute2, systemd-analyze, setpriv,
mount), root to use it, or the kernel feature it drives (a tmpfs, a network namespace).

On a developer's laptop without it such a test skips, and says what is missing. Under
`CI=true` it fails instead: CI installs every tool these tests need (.ci/run), so a
missing one there is a broken CI machine, not a reason to test less. conftest.py adds a
safety net: under `CI=true`, any skip whose reason says something is missing fails too,
however the skip was made.

A skip for another reason stays a plain skip: a permission test that cannot hold root to
file permissions, or a kernel too old for a feature (that is the kernel, not a tool).
"""

from __future__ import annotations

import os
import re
from typing import NoReturn

import pytest

MISSING = "missing tool: "  # every skip made here starts so
CI_HINT = "CI=true: a missing tool fails the test instead of skipping it (.ci/run installs it)"

# What the safety net takes for "something is missing", in any skip's reason.
SAYS_MISSING = re.compile(
    r"missing tool|not installed|is needed|\bneeds\b|cannot (make|mount|drop|run|start|find)"
    r"|command not found|no such file|could not import|not available|not the \w+ observer",
    re.IGNORECASE,
)


def in_ci() -> bool:
    """True under CI=true (as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_for_missing_tool(reason: str) -> NoReturn:
    """Skip this test for want of `reason` (say what is missing); under CI=true, fail it."""
    if in_ci():
        pytest.fail(f"{MISSING}{reason}\n{CI_HINT}", pytrace=False)
    try:
        pytest.skip(f"{MISSING}{reason}")
    except pytest.skip.Exception as skip:
        # report the test's own location, as a skipif mark does, not this line
        skip._use_item_location = True
        raise


def require_tool(available: bool, reason: str) -> None:
    """`skip_for_missing_tool(reason)` unless `available`."""
    if not available:
        skip_for_missing_tool(reason)


def says_missing(reason: str) -> bool:
    """Does a skip's reason say a tool (or what it needs) is missing?"""
    return SAYS_MISSING.search(reason) is not None
