"""The model zoo: every released row of the five seeds' tables, with the facts needed to build, test and cite it.

Each family lists its rows as data in ``hf_seg/modeling/<family>/presets.json``, with the facts of the original
repository they come from (licence, commit, citations: ``"source"``, ``"citations"`` and ``citation.bib``); this module
reads them. A preset builds the row's full-size architecture (random weights) and its processor; converted weights
live on the hub under ``hub_id`` once released.

``presets.json``: ``"rows"`` hold the :class:`ZooEntry` fields of each row. To keep rows short, ``"defaults"`` gives
the fields a row does not state (for ``config``/``processor``/``extra``/``paper``: keys merged under the row's own), a
row's ``config``/``processor``/``extra`` may be a list of ``"@part"`` names (dicts in ``"parts"``) and dicts merged in
order, and its ``notes`` a list of text and ``"@sentence"`` names (``"sentences"``) joined with spaces. One family's
file names the demo's default row (``"demo_row"``).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

from .families import Family, families, get_family
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


@dataclass(frozen=True)
class Citation:
    title: str
    url: str
    bibtex: str


@dataclass(frozen=True)
class FamilyFacts:
    """The original repository a family's rows come from (``presets.json`` ``"source"``; licences as stated in each
    repository's LICENSE/README, citations from its README)."""

    display: str
    repo: str
    commit: str
    license: str  # hub license id (lower-case SPDX)
    license_name: str  # as the original states it
    license_url: str
    citations: tuple[Citation, ...]
    license_note: str = ""


def _bibtex_entries(text: str) -> dict[str, str]:
    """key -> entry text of a .bib file (an entry starts with ``@type{key,`` at the start of a line)."""
    starts = list(re.finditer(r"^@\w+\{([^,\s]+),", text, flags=re.M))
    return {m.group(1): text[m.start():(starts[i + 1].start() if i + 1 < len(starts) else len(text))].strip()
            for i, m in enumerate(starts)}


def _merged(value, default: dict | None, parts: dict, where: str) -> dict:
    out = copy.deepcopy(default or {})
    for piece in value if isinstance(value, list) else [value]:
        if isinstance(piece, str):
            if not piece.startswith("@") or piece[1:] not in parts:
                raise ValueError(f"{where}: {piece!r} is no '@part' of the file (parts: {sorted(parts)})")
            piece = parts[piece[1:]]
        out.update(copy.deepcopy(piece))
    return out


def _entry(family: str, row: dict, doc: dict, where: str) -> ZooEntry:
    defaults, known = doc.get("defaults", {}), {f.name for f in fields(ZooEntry)} - {"family"}
    unknown = set(row) - known
    if unknown or "name" not in row:
        raise ValueError(f"{where}: a row needs 'name' and may have {sorted(known)}; got {sorted(row)}")
    kwargs = {**defaults, **row}
    for key in ("config", "processor", "extra", "paper"):
        kwargs[key] = _merged(row.get(key, {}), defaults.get(key), doc.get("parts", {}), f"{where} {key}")
    sentences = doc.get("sentences", {})
    notes = kwargs.get("notes", "")
    if isinstance(notes, list):
        missing = [n for n in notes if n.startswith("@") and n[1:] not in sentences]
        if missing:
            raise ValueError(f"{where}: notes name unknown sentences {missing}")
        kwargs["notes"] = " ".join(sentences[n[1:]] if n.startswith("@") else n for n in notes)
    kwargs["crop_size"] = tuple(kwargs["crop_size"])
    kwargs["checkpoint_urls"] = tuple(kwargs.get("checkpoint_urls", ()))
    kwargs["paper"] = PaperResult(**kwargs["paper"])
    return ZooEntry(family=family, **kwargs)


@lru_cache(maxsize=None)
def _document(family: Family) -> dict:
    path = family.folder / "presets.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@lru_cache(maxsize=None)
def _presets(family: Family) -> tuple[FamilyFacts | None, tuple[ZooEntry, ...]]:
    doc, path = _document(family), family.folder / "presets.json"
    if not doc:
        return None, ()
    bib_path = path.with_name("citation.bib")
    bib = _bibtex_entries(bib_path.read_text(encoding="utf-8")) if bib_path.is_file() else {}
    missing = [c["bibtex"] for c in doc.get("citations", []) if c["bibtex"] not in bib]
    if missing:
        raise ValueError(f"{path}: citations {missing} are not entries of {bib_path}")
    citations = tuple(Citation(c["title"], c["url"], bib[c["bibtex"]]) for c in doc.get("citations", []))
    facts = FamilyFacts(**doc["source"], citations=citations) if "source" in doc else None
    return facts, tuple(_entry(family.name, row, doc, f"{path} row {i} ({row.get('name')})")
                        for i, row in enumerate(doc["rows"]))


def family_facts(family: str) -> FamilyFacts | None:
    """The original repository of ``family``'s rows, or None when the family lists none."""
    return _presets(get_family(family))[0] if family in families() else None


@lru_cache(maxsize=None)
def _registry() -> dict[str, ZooEntry]:
    entries: dict[str, ZooEntry] = {}
    for family in families().values():
        for entry in _presets(family)[1]:
            if entry.name in entries:
                raise ValueError(f"duplicate zoo entry {entry.name!r}")
            entries[entry.name] = entry
    return entries


def list_models(family: str | None = None) -> list[ZooEntry]:
    return [e for e in _registry().values() if family is None or e.family == family]


def demo_row() -> str:
    """The row ``hf-seg demo`` finetunes unless told otherwise: the one a family's ``presets.json`` names under
    ``"demo_row"`` (a compact model that learns something from random weights in minutes on a CPU)."""
    named = [doc["demo_row"] for doc in map(_document, families().values()) if "demo_row" in doc]
    if len(named) != 1:
        raise ValueError(f"exactly one family's presets.json must name a \"demo_row\"; found {named}")
    return get_entry(named[0]).name


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
    kwargs = {**entry.config, "id2label": labels.id2label, "num_labels": labels.num_labels,
              "training_recipe": _training_recipe(entry), **overrides}
    if "id2label" in overrides and "num_labels" not in overrides:
        kwargs["num_labels"] = len(overrides["id2label"])
    return get_family(entry.family).config_class(**kwargs)


def _training_recipe(entry) -> dict | None:
    """The row's original training recipe, carried in the config so that saved copies resolve it too."""
    from .training.recipes import record_for_row

    try:
        return record_for_row(entry.name, entry.family)
    except KeyError:
        return None


def build_model(name: str, **config_overrides):
    """The row's architecture with random weights (no pretrained weights can be fetched by a preset)."""
    entry = get_entry(name)
    return get_family(entry.family).model_class(build_config(name, **config_overrides))


def build_processor(name: str, **overrides):
    entry = get_entry(name)
    labels = get_label_set(entry.dataset)
    kwargs = {"do_reduce_labels": labels.reduce_labels, "label_map": labels.label_map or None, **entry.processor}
    kwargs.update(overrides)
    return get_family(entry.family).processor_class(**kwargs)
