"""The one table of the datasets the seeds report on (``label_sets.json``, facts, no images): class names, palettes,
label conventions, the other names a dataset goes by (hub names, folder names, mmseg dataset types) and what a model
card says about it. :func:`canonical_dataset` is the one place a dataset name is recognised."""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

_FILE = Path(__file__).with_name("label_sets.json")


@dataclass(frozen=True)
class LabelSet:
    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    reduce_labels: bool
    label_map: dict[int, int] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # other names of the dataset: hub ids, folder names, mmseg dataset types
    card: dict = field(default_factory=dict)  # model cards: display name, hub dataset type, evaluated split, hub id
    same_images_as: str | None = None  # another label set that reads the same annotation files differently

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))


@lru_cache(maxsize=None)
def _table() -> dict:
    return json.loads(_FILE.read_text())


def available_label_sets() -> list[str]:
    return sorted(_table())


def get_label_set(name: str) -> LabelSet:
    table = _table()
    if name not in table:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(table)}")
    entry = table[name]
    names = tuple(entry["names"])
    palette = entry.get("palette") or default_palette(len(names))
    return LabelSet(
        name=name,
        names=names,
        palette=tuple(tuple(c) for c in palette),
        reduce_labels=entry["reduce_labels"],
        label_map={int(k): int(v) for k, v in entry.get("label_map", {}).items()},
        aliases=tuple(entry.get("aliases", ())),
        card=dict(entry.get("card", {})),
        same_images_as=entry.get("same_images_as"),
    )


def _key(name: str) -> str:
    return "".join(c for c in str(name).lower() if c not in "-_ ")


@lru_cache(maxsize=None)
def _names() -> dict[str, str]:
    """normalised name or alias -> label set"""
    return {_key(alias): name for name in _table() for alias in (name, *_table()[name].get("aliases", ()))}


def canonical_dataset(name: str) -> str | None:
    """The label set a dataset name means (case, ``-``, ``_`` and spaces ignored): its own name or an alias."""
    return _names().get(_key(name))


def datasets_named_in(text: str) -> list[str]:
    """Label sets whose name or alias occurs inside ``text`` (e.g. a hub id or an mmseg ``dataset_type``), the
    longest match first; aliases shorter than 5 characters only count as whole names (:func:`canonical_dataset`)."""
    text = _key(text)
    found = sorted(((len(k), n) for k, n in _names().items() if len(k) >= 5 and k in text), reverse=True)
    return list(dict.fromkeys(n for _, n in found))


def same_images(name: str) -> set[str]:
    """``name`` and the label sets that read the same annotation files with another class convention."""
    links = {n: e.get("same_images_as") for n, e in _table().items()}
    return {name, *(n for n, other in links.items() if other == name), *filter(None, [links.get(name)])}


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct, deterministic colours (golden-ratio hue steps) for datasets without an official palette."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65 + 0.35 * (i % 2), 0.6 + 0.4 * ((i // 2) % 2))
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def label_set_for(num_labels: int, hint: str = "") -> LabelSet | None:
    """The dataset a converted model was trained on, from its class count and, if ambiguous, a dataset-type hint."""
    candidates = [n for n in available_label_sets() if len(_table()[n]["names"]) == num_labels]
    named = [n for n in datasets_named_in(hint) if n in candidates]
    if named:
        return get_label_set(named[0])
    return get_label_set(candidates[0]) if len(candidates) == 1 else None


def convert_labels(annotation, label_map=None, reduce_labels: bool = False, ignore_index: int = 255) -> np.ndarray:
    """Stored annotation values -> int64 training ids: ``label_map`` (all entries at once), then label reduction.

    The one implementation of the label contract: the processor, the datasets and the evaluation all call it.
    """
    labels = np.array(annotation, dtype=np.int64, copy=True)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if label_map and labels.size:
        keys = np.fromiter((int(k) for k in label_map), dtype=np.int64, count=len(label_map))
        values = np.fromiter((int(v) for v in label_map.values()), dtype=np.int64, count=len(label_map))
        low, high = int(min(labels.min(), keys.min())), int(max(labels.max(), keys.max()))
        if high - low < (1 << 20):  # a lookup table: one pass whatever the number of entries
            table = np.arange(low, high + 1, dtype=np.int64)
            table[keys - low] = values
            labels = table[labels - low]
        else:
            source = labels.copy()
            for key, value in zip(keys, values):
                labels[source == key] = value
    if reduce_labels:
        ignore = (labels == 0) | (labels == ignore_index)
        labels = np.where(ignore, ignore_index, labels - 1)
    return labels
