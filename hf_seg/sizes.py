"""Image sizes: ``(height, width)`` pairs from what users and original configs write, and the keep-ratio resize
every resizing step of the package computes its output size with."""

from __future__ import annotations

import numbers
from collections.abc import Sequence


def int_pair(value, name: str = "size") -> tuple[int, int]:
    """``(height, width)`` from an int (square), a ``{"height", "width"}`` dict or a sequence of two numbers."""
    if value is None:
        raise ValueError(f"{name} is required")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, dict):
        return int(value["height"]), int(value["width"])
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {value!r}")
    return pair


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def target_size(height: int, width: int, scale: Sequence[int] | None = None, ratio: float = 1.0,
                short_side: int | None = None, max_size: int | None = None, size_divisor: int | None = None,
                round_down: bool = False) -> tuple[int, int]:
    """The (height, width) an image keeps its aspect ratio at: with ``scale=(long, short)``, the largest size whose long
    side is <= ``int(long * ratio)`` and short side <= ``int(short * ratio)`` (mmseg's random ``ratio_range`` scale,
    then mmcv's keep-ratio rescale); with ``short_side``,
    the short side at ``short_side`` and the long side at most ``max_size``. Sides round to the nearest integer (mmcv)
    or down (``round_down``), then up to a multiple of ``size_divisor``. The processor's test resize, the training
    rescale and the training data checks all size images here."""
    if scale is not None:
        long, short = int(max(scale) * ratio), int(min(scale) * ratio)
        factor = min(long / max(height, width), short / min(height, width))
    else:
        factor = short_side / min(height, width)
        if max_size is not None:
            factor = min(factor, max_size / max(height, width))
    offset = 0.0 if round_down else 0.5
    h, w = max(1, int(height * factor + offset)), max(1, int(width * factor + offset))
    if size_divisor:
        h, w = _round_up(h, size_divisor), _round_up(w, size_divisor)
    return h, w
