"""Evaluation records: what ``scripts/evaluate.py`` writes, read into :class:`MeasuredResult` for the cards."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..label_sets import canonical_dataset, datasets_named_in, same_images
from ..zoo import ZooEntry


@dataclass(frozen=True)
class MeasuredResult:
    """One evaluation of our converted weights; numbers in percent like the paper tables."""

    multi_scale: bool
    miou: float
    pixel_accuracy: float | None = None
    mean_accuracy: float | None = None
    protocol: str = ""
    split: str | None = None
    num_images: int | None = None
    source: str = ""


_TRUTHY_PROTOCOL_KEYS = ("aug_test", "tta", "multi_scale", "ms_flip", "multi_scale_flip")
_SCALE_KEYS = ("scales", "img_ratios", "ratios", "scale_factors", "short_sides")


def _percent(metrics: dict, percent_keys: Sequence[str], fraction_keys: Sequence[str]) -> float | None:
    for key in percent_keys:
        if metrics.get(key) is not None:
            return float(metrics[key])
    for key in fraction_keys:
        if metrics.get(key) is not None:
            value = float(metrics[key])
            return value * 100.0 if value <= 1.0 else value  # evaluate's mean_iou returns fractions
    return None


def _records(data: Any) -> list[dict]:
    if isinstance(data, list):
        return [r for item in data for r in _records(item)]
    if not isinstance(data, dict):
        raise ValueError("an evaluation JSON holds an object or a list of objects")
    for key in ("results", "evaluations"):
        if isinstance(data.get(key), list):
            return [r for item in data[key] for r in _records({**{k: v for k, v in data.items() if k != key}, **item})]
    return [data]


def parse_eval_json(data: Any, source: str = "", entry: ZooEntry | None = None) -> list[MeasuredResult]:
    """Read what ``scripts/evaluate.py`` writes.

    Accepted: an object (or a list of objects, or ``{"results": [...]}``) with the metric either flat or under
    ``"metrics"``: ``mean_iou``/``overall_accuracy``/``mean_accuracy`` as ``evaluate``'s mean_iou returns them
    (fractions) or ``mIoU``/``aAcc``/``mAcc`` in percent; the protocol flat or under ``"protocol"``: any of
    ``aug_test``/``tta``/``multi_scale``/``ms_flip`` true, or more than one entry in ``scales``/``img_ratios``, means
    multi-scale; ``flip``; optional ``test_mode``, ``split``, ``num_images``, ``dataset`` (must be the row's).
    """
    out = []
    for record in _records(data):
        metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else record
        protocol = record.get("protocol") if isinstance(record.get("protocol"), dict) else {}
        look = {**record, **protocol}
        miou = _percent(metrics, ("mIoU", "miou"), ("mean_iou",))
        if miou is None or not math.isfinite(miou):
            raise ValueError(f"{source or 'evaluation JSON'}: no mIoU (mean_iou or mIoU) in {sorted(metrics)}")
        scales = next((look[k] for k in _SCALE_KEYS if isinstance(look.get(k), (list, tuple))), None)
        multi = any(bool(look.get(k)) for k in _TRUTHY_PROTOCOL_KEYS) or (scales is not None and len(scales) > 1)
        flip = bool(look.get("flip")) or bool(look.get("aug_test")) or bool(look.get("ms_flip"))
        if flip and not multi:
            raise ValueError(f"{source or 'evaluation JSON'}: flip without multi-scale is not a protocol of the "
                             "paper tables (single-scale, or multi-scale + flip)")
        dataset = look.get("dataset")
        if entry is not None and isinstance(dataset, str) and dataset and dataset != "custom":
            named = canonical_dataset(dataset) or next(iter(datasets_named_in(dataset)), None)
            if named not in same_images(entry.dataset):
                raise ValueError(f"{source or 'evaluation JSON'}: evaluated on {dataset!r}, but {entry.name} is a "
                                 f"{entry.dataset} model")
        parts = [str(look["test_mode"])] if look.get("test_mode") else []
        if multi:
            parts.append("multi-scale" + (" + flip" if flip else "") + (f" {list(scales)}" if scales else ""))
        else:
            parts.append("single-scale")
        out.append(MeasuredResult(
            multi_scale=multi, miou=round(miou, 2),
            pixel_accuracy=_round(_percent(metrics, ("aAcc",), ("overall_accuracy", "pixel_accuracy"))),
            mean_accuracy=_round(_percent(metrics, ("mAcc",), ("mean_accuracy",))),
            protocol=", ".join(parts), split=look.get("split"),
            num_images=int(look["num_images"]) if look.get("num_images") is not None else None, source=source,
        ))
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def read_eval_files(paths: Iterable[str | Path], entry: ZooEntry | None = None) -> list[MeasuredResult]:
    results = []
    for path in sorted(Path(p) for p in paths):
        results.extend(parse_eval_json(json.loads(Path(path).read_text()), source=path.name, entry=entry))
    return results
