"""Class names, palettes and label conventions of the datasets the seeds report on (facts, no images)."""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_FILE = Path(__file__).with_name("label_sets.json")


@dataclass(frozen=True)
class LabelSet:
    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    reduce_labels: bool
    label_map: dict[int, int] = field(default_factory=dict)

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
    )


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct, deterministic colours (golden-ratio hue steps) for datasets without an official palette."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65 + 0.35 * (i % 2), 0.6 + 0.4 * ((i // 2) % 2))
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def label_set_for(num_labels: int, hint: str = "") -> LabelSet | None:
    """The dataset a converted model was trained on, from its class count and, if ambiguous, a dataset-type hint."""
    normalized_hint = hint.lower().replace("_", "").replace("-", "")
    candidates = [n for n in available_label_sets() if len(_table()[n]["names"]) == num_labels]
    named = [n for n in candidates if n.replace("_", "") in normalized_hint]
    if named:
        return get_label_set(named[0])
    return get_label_set(candidates[0]) if len(candidates) == 1 else None
