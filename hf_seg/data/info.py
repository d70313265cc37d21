"""Dataset facts: classes, ignore index, label reduction, label maps, palette."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..label_sets import (available_label_sets, canonical_dataset, convert_labels, default_palette, get_label_set,
                          same_images)

__all__ = ["DatasetInfo", "dataset_info", "coco_stuff_raw_label_map", "convert_labels", "info_for_num_labels"]


@dataclass
class DatasetInfo:
    """What a model and the metric need to know about a segmentation dataset.

    ``label_map`` (applied first, all entries at once: ``{7: 0, 0: 255}`` sends 7 to 0 and 0 to 255) and
    ``reduce_labels`` (then: 0 -> ``ignore_index``, k -> k - 1) turn the stored annotation values into training ids
    ``0..num_labels-1`` and ``ignore_index``; :meth:`convert_labels` does exactly that, like the image processor.
    """

    name: str  # a label set of hf_seg/label_sets.json ("ade20k", "cityscapes", ...) or "custom"
    num_labels: int | None
    id2label: dict[int, str] = field(default_factory=dict)
    ignore_index: int = 255
    reduce_labels: bool = False
    label_map: dict[int, int] | None = None
    palette: list[list[int]] | None = None
    layout: str | None = None  # folder layout it was read from, or "hub" / "disk"
    source: str | None = None  # the folder or hub name
    splits: list[str] = field(default_factory=list)
    image_column: str = "image"
    label_column: str = "annotation"
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return [self.id2label.get(i, str(i)) for i in range(self.num_labels or 0)]

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    def convert_labels(self, annotation) -> np.ndarray:
        """Stored annotation values -> int64 training ids (``label_map`` then ``reduce_labels``)."""
        return convert_labels(annotation, self.label_map, self.reduce_labels, self.ignore_index)

    def replace(self, **changes) -> "DatasetInfo":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["id2label"] = {int(k): v for k, v in self.id2label.items()}
        return out


@lru_cache(maxsize=None)
def _coco_raw_map() -> dict[int, int]:
    data = json.loads((Path(__file__).with_name("coco_stuff_stuffthingmaps.json")).read_text())
    return {int(k): int(v) for k, v in data["stuffthingmaps_to_train_id"].items()}


def coco_stuff_raw_label_map() -> dict[int, int]:
    """Official COCO-Stuff ``stuffthingmaps`` values (0..181) -> the 171 mmseg train ids (unused ids -> 255)."""
    return dict(_coco_raw_map())


def dataset_info(name: str, **overrides) -> DatasetInfo:
    """Facts of a known dataset (``ade20k``, ``cityscapes``, ``camvid``, ``pascal_context``, ``coco_stuff`` and
    aliases such as ``scene_parse_150``); ``overrides`` replace fields."""
    canonical = canonical_dataset(name)
    if canonical is None or canonical not in available_label_sets():
        raise KeyError(f"unknown dataset {name!r}; known: {available_label_sets()}")
    labels = get_label_set(canonical)
    info = DatasetInfo(
        name=canonical,
        num_labels=labels.num_labels,
        id2label=dict(labels.id2label),
        ignore_index=255,
        reduce_labels=labels.reduce_labels,
        label_map=dict(labels.label_map) or None,
        palette=[list(c) for c in labels.palette],
    )
    return replace(info, **overrides) if overrides else info


def custom_info(num_labels: int | None = None, id2label=None, **overrides) -> DatasetInfo:
    """Facts of a dataset hf_seg does not know (class names from ``id2label`` when given)."""
    id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
    if num_labels is None and id2label:
        num_labels = len(id2label)
    palette = [list(c) for c in default_palette(num_labels)] if num_labels else None
    return DatasetInfo(name="custom", num_labels=num_labels, id2label=id2label, palette=palette, **overrides)


def info_for_num_labels(info: DatasetInfo, num_labels: int) -> DatasetInfo | None:
    """The same files read with the class convention that has ``num_labels`` classes (Pascal-Context: 59 classes
    with background ignored, or 60 with background as class 0), or ``None``."""
    if info.num_labels == num_labels:
        return info
    for name in sorted(same_images(info.name) - {info.name}):
        if name in available_label_sets():
            other = dataset_info(name)
            if other.num_labels == num_labels:
                return replace(other, layout=info.layout, source=info.source, splits=list(info.splits),
                               notes=list(info.notes) + [f"{name}: the {num_labels}-class convention of these files"])
    return None
