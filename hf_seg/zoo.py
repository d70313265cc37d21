"""The model zoo: every released row of the five seeds' tables, with the facts needed to build, test and cite it.

Each family lists its rows in ``hf_seg/modeling/<family>/presets.py`` as ``ZOO_ENTRIES``; this module collects them.
A preset builds the row's full-size architecture (random weights) and its processor; converted weights live on the
hub under ``hub_id`` once released.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from .families import families, get_family
from .label_sets import get_label_set
from .model_loading import LoadedModel, ModelLoadError, load  # noqa: F401 - the one model + processor loader

HUB_ORG = "hf-seg"


@dataclass(frozen=True)
class PaperResult:
    """Numbers as the seed's paper/README reports them (never our own measurements)."""

    miou_single_scale: float | None = None
    miou_multi_scale: float | None = None  # multi-scale + flip unless ``multi_scale_note`` says otherwise
    pixel_accuracy: float | None = None  # single-scale
    params_m: float | None = None
    flops_g: float | None = None
    fps: float | None = None  # single-scale
    multi_scale_note: str = ""
    pixel_accuracy_multi_scale: float | None = None
    # the ADE20K SceneParsing benchmark's "overall score" = (mIoU + pixel accuracy) / 2, as printed (some tables
    # print one that does not match their own mIoU and accuracy, so it is a reported fact, never computed)
    overall_score_single_scale: float | None = None
    overall_score_multi_scale: float | None = None
    fps_multi_scale: float | None = None
    training_time: str = ""  # as the table states it, e.g. "1.38 x 20 = 27.6 hours" (hours per epoch x epochs)


@dataclass(frozen=True)
class ZooEntry:
    name: str  # preset name, e.g. "setr-pup-cityscapes-768"
    family: str
    dataset: str  # a label set in hf_seg/label_sets.json
    description: str  # the table row as the seed names it, e.g. "SETR-PUP (ViT-L/16, 768x768, 80k)"
    config: dict[str, Any]  # family Config kwargs (without labels)
    processor: dict[str, Any]  # HfSegImageProcessor kwargs (the test protocol)
    crop_size: tuple[int, int]
    paper: PaperResult
    checkpoint_urls: tuple[str, ...] = ()
    paper_title: str = ""
    paper_url: str = ""
    source_table: str = ""  # where in the paper/README the numbers are
    license: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # the row's name in the seed's facts (fixtures/<family>/zoo.json "models"[].name, e.g. the original config's
    # stem); lets tests check that every released row has a preset and model cards name the original row
    original_name: str = ""

    @property
    def hub_id(self) -> str:
        return f"{HUB_ORG}/{self.name}"

    @property
    def test_mode(self) -> str:
        return self.config.get("test_mode", "whole")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hub_id"] = self.hub_id
        out["test_mode"] = self.test_mode
        return out


@lru_cache(maxsize=None)
def _registry() -> dict[str, ZooEntry]:
    entries: dict[str, ZooEntry] = {}
    for family in families().values():
        try:
            presets = importlib.import_module(f"{family.package}.presets")
        except ModuleNotFoundError as err:
            if err.name != f"{family.package}.presets":
                raise
            continue
        for entry in presets.ZOO_ENTRIES:
            if entry.name in entries:
                raise ValueError(f"duplicate zoo entry {entry.name!r}")
            entries[entry.name] = entry
    return entries


def list_models(family: str | None = None) -> list[ZooEntry]:
    return [e for e in _registry().values() if family is None or e.family == family]


def get_entry(name: str) -> ZooEntry:
    registry = _registry()
    if name not in registry:
        import difflib

        close = difflib.get_close_matches(name, registry, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `hf-seg models` lists them"
        raise KeyError(f"no zoo model named {name!r}{hint}")
    return registry[name]


def build_config(name: str, **overrides):
    """The row's full-size config with its dataset's labels; ``overrides`` change any config field."""
    entry = get_entry(name)
    labels = get_label_set(entry.dataset)
    kwargs = {**entry.config, "id2label": labels.id2label, "num_labels": labels.num_labels, **overrides}
    if "id2label" in overrides and "num_labels" not in overrides:
        kwargs["num_labels"] = len(overrides["id2label"])
    return get_family(entry.family).config_class(**kwargs)


def build_model(name: str, **config_overrides):
    """The row's architecture with random weights (no pretrained weights can be fetched by a preset)."""
    entry = get_entry(name)
    return get_family(entry.family).model_class(build_config(name, **config_overrides))


def build_processor(name: str, **overrides):
    from .image_processing import HfSegImageProcessor

    entry = get_entry(name)
    labels = get_label_set(entry.dataset)
    kwargs = {"do_reduce_labels": labels.reduce_labels, "label_map": labels.label_map or None, **entry.processor}
    kwargs.update(overrides)
    return HfSegImageProcessor(**kwargs)
