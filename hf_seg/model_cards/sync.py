"""The ``model_cards/`` folder: one ``<name>/README.md`` per zoo row plus the index, kept in step with the zoo, and
the evaluation JSONs attached next to the cards."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..zoo import ZooEntry, get_entry, list_models
from .card import card_text
from .evaluations import MeasuredResult, parse_eval_json, read_eval_files
from .index import INDEX_FILE, zoo_index_markdown

CARD_FILE = "README.md"
PARITY_FILE = "parity.json"
EVAL_GLOB = "eval*.json"


def card_dir(root: str | Path, name: str) -> Path:
    return Path(root) / name


def attachments(folder: Path, entry: ZooEntry) -> tuple[list[MeasuredResult], dict | None]:
    measured = read_eval_files(folder.glob(EVAL_GLOB), entry=entry) if folder.is_dir() else []
    parity_path = folder / PARITY_FILE
    parity = json.loads(parity_path.read_text()) if parity_path.is_file() else None
    return measured, parity


@dataclass
class GenerateResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # check mode: cards that differ or are missing
    orphans: list[str] = field(default_factory=list)  # folders with a card but no zoo row


def generate_cards(root: str | Path, check: bool = False, names: Iterable[str] | None = None) -> GenerateResult:
    """Write ``root/<name>/README.md`` for every zoo row (or ``names``); with ``check`` write nothing and report
    which cards are stale or missing."""
    root = Path(root)
    result = GenerateResult()
    entries = list_models()
    by_family: dict[str, list[ZooEntry]] = {}
    for e in entries:
        by_family.setdefault(e.family, []).append(e)
    wanted = set(names) if names is not None else None
    for entry in entries:
        if wanted is not None and entry.name not in wanted:
            continue
        folder = card_dir(root, entry.name)
        measured, parity = attachments(folder, entry)
        text = card_text(entry, family_entries=by_family[entry.family], measured=measured, parity=parity)
        path = folder / CARD_FILE
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            result.unchanged.append(entry.name)
        elif check:
            result.stale.append(entry.name)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            result.written.append(entry.name)
    if names is None:
        index, text = root / INDEX_FILE, zoo_index_markdown(entries)
        current = index.read_text(encoding="utf-8") if index.is_file() else None
        if current == text:
            result.unchanged.append(INDEX_FILE)
        elif check:
            result.stale.append(INDEX_FILE)
        else:
            root.mkdir(parents=True, exist_ok=True)
            index.write_text(text, encoding="utf-8")
            result.written.append(INDEX_FILE)
    known = {e.name for e in entries}
    if root.is_dir():
        result.orphans = sorted(p.parent.name for p in root.glob(f"*/{CARD_FILE}") if p.parent.name not in known)
    return result


def attach_eval_json(root: str | Path, name: str, path: str | Path) -> Path:
    """Validate an evaluation JSON against the row and copy it next to the row's card (``eval-<n>.json``)."""
    entry = get_entry(name)
    data = json.loads(Path(path).read_text())
    parse_eval_json(data, source=str(path), entry=entry)  # refuse what the card could not show
    folder = card_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    existing = {p.name for p in folder.glob(EVAL_GLOB)}
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    for p in sorted(folder.glob(EVAL_GLOB)):
        if p.read_text() == text:
            return p  # attached already
    index = 0
    while f"eval-{index}.json" in existing:
        index += 1
    target = folder / f"eval-{index}.json"
    target.write_text(text)
    return target
