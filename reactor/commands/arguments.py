"""argparse types shared by the verbs: each refuses a bad value with one line saying why."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(minimum: int) -> Callable[[str], int]:
    """A whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            msg = f"{text!r} is not a whole number >= {minimum}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def seconds(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        msg = f"{text!r} is not a number of seconds >= 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def probability(text: str) -> float:
    """A probability, from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        msg = f"{text!r} is not a probability between 0 and 1"
        raise argparse.ArgumentTypeError(msg)
    return value
