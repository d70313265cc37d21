"""``argparse`` types that refuse impossible values at parse time (``--max-samples -1``, ``--stride 0``), so the
command stops with a usage message instead of a traceback or a silently empty run."""

from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_int", "positive_float", "positive_int"]


def _number(text: str, kind, allow_zero: bool, what: str):
    """``kind(text)``, finite and > 0 (or >= 0 with ``allow_zero``); otherwise an ``ArgumentTypeError``."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, False, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, True, "an integer >= 0 (it is negative or not a number)")


def positive_float(text: str) -> float:
    return _number(text, float, False, "a positive number")
