"""The zoo covers every released row of the five seeds, and model_cards/ has a current, truthful card per row.

Facts per row come from the seeds' ``zoo.json`` (``$HF_SEG_FIXTURES/<family>/zoo.json`` when available, otherwise the
rows extracted from them into ``tests/data/zoo_facts.json``; when both exist they must agree), plus the rows of the seed
documents that those files lack (``tests/data/zoo_facts_seed_only.json``, each with its source).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hf_seg  # noqa: F401  (registers the families)
from hf_seg import model_cards as mc
from hf_seg.zoo import HUB_ORG, build_config, list_models

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "model_cards"
FACTS_FILE = Path(__file__).resolve().parent / "data" / "zoo_facts.json"
SEED_ONLY_FILE = Path(__file__).resolve().parent / "data" / "zoo_facts_seed_only.json"
# fixture folder -> the hf_seg family names it may be registered under
FIXTURE_FAMILIES = {"csail": ("csail",), "setr": ("setr",), "regproxy": ("regionproxy", "regproxy"),
                    "semask": ("semask",), "unept": ("unept",)}


# ---------------------------------------------------------------------------------------------------------------
# rows of each seed's zoo.json, reduced to what the zoo must reproduce
# ---------------------------------------------------------------------------------------------------------------


def _dataset_key(text: str | None) -> str | None:
    if not text:
        return None
    t = text.lower()
    for key, needle in (("ade20k", "ade"), ("cityscapes", "cityscapes"), ("pascal_context", "context"),
                        ("coco_stuff", "coco"), ("camvid", "camvid")):
        if needle in t:
            return key
    return t


def _number(text) -> float | None:
    """'5.8M' / '3.9G' / 35 / '-' -> float or None."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*([0-9.]+)\s*[MGmg]?\s*", str(text))
    return float(match[1]) if match else None


def _urls(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if v]
    return [v for v in value if v]


def extract_rows(fixture_family: str, zoo: dict) -> list[dict]:
    rows = []
    for m in zoo["models"]:
        row = {"name": m["name"], "dataset": _dataset_key(m.get("dataset")), "config": m.get("config"),
               "crop_size": m.get("crop_size"), "checkpoint_urls": sorted(_urls(m.get("checkpoint_urls",
                                                                                      m.get("checkpoint_url")))),
               "miou_ss": None, "miou_ms": None, "pixel_acc": None, "params_m": None, "flops_g": None, "fps": None,
               "pixel_acc_ms": None, "overall_ss": None, "overall_ms": None, "fps_ms": None}
        if fixture_family == "csail":
            ss, ms = m["results"]["single_scale"], m["results"]["multi_scale"]
            row.update(miou_ss=ss["mIoU"], miou_ms=ms["mIoU"], pixel_acc=ss["pixel_acc"], fps=ss["inference_fps"],
                       pixel_acc_ms=ms["pixel_acc"], overall_ss=ss["overall_score"], overall_ms=ms["overall_score"],
                       fps_ms=ms["inference_fps"])
        elif fixture_family == "regproxy":
            r = m["reported"]
            row.update(miou_ss=r.get("miou"), miou_ms=r.get("miou_ms_flip"), params_m=_number(r.get("params")),
                       flops_g=_number(r.get("flops")), fps=_number(r.get("fps")))
        elif fixture_family == "setr":
            row.update(miou_ss=m.get("miou_ss"), miou_ms=m.get("miou_ms_flip"))
        else:  # semask, unept
            row.update(miou_ss=m.get("miou_single_scale"), miou_ms=m.get("miou_ms_flip"),
                       params_m=_number(m.get("params")))
        rows.append(row)
    return rows


def _live_zoo_files() -> dict[str, Path]:
    base = os.environ.get("HF_SEG_FIXTURES")
    if not base:
        return {}
    return {f: Path(base) / f / "zoo.json" for f in FIXTURE_FAMILIES if (Path(base) / f / "zoo.json").is_file()}


def zoo_facts() -> dict[str, list[dict]]:
    facts = json.loads(FACTS_FILE.read_text())
    for fixture_family, path in _live_zoo_files().items():
        facts[fixture_family] = extract_rows(fixture_family, json.loads(path.read_text()))
    for fixture_family, rows in json.loads(SEED_ONLY_FILE.read_text()).items():
        facts[fixture_family] = facts[fixture_family] + rows
    return facts


def test_bundled_facts_match_the_seed_zoo_files():
    live = _live_zoo_files()
    if not live:
        pytest.skip("HF_SEG_FIXTURES is not set (the bundled tests/data/zoo_facts.json is used)")
    bundled = json.loads(FACTS_FILE.read_text())
    for fixture_family, path in live.items():
        assert bundled.get(fixture_family) == extract_rows(fixture_family, json.loads(path.read_text())), (
            f"tests/data/zoo_facts.json is stale for {fixture_family}: regenerate it with "
            "`python tests/test_zoo_and_cards.py --write-facts`")


# ---------------------------------------------------------------------------------------------------------------
# matching zoo entries to rows
# ---------------------------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _entry_text(entry) -> str:
    parts = [entry.name, entry.description, entry.notes or "", entry.source_table,
             json.dumps(entry.extra, default=str, sort_keys=True)]
    return _norm(" ".join(parts))


def match_rows(rows: list[dict], entries: list) -> tuple[dict[str, object], list[str]]:
    """row name -> entry. Keys, in order: ``original_name``; the row name inside the preset name; a shared checkpoint
    URL; the original config's file stem named in the entry's text. Returns (matches, problems)."""
    problems, matches, used = [], {}, {}
    strategies = [
        lambda row, e: e.original_name == row["name"],
        lambda row, e: not e.original_name and _norm(row["name"]) in _norm(e.name),
        lambda row, e: not e.original_name and bool(set(row["checkpoint_urls"]) & set(e.checkpoint_urls)),
        lambda row, e: not e.original_name and bool(row["config"]) and _norm(Path(row["config"]).stem) in _entry_text(e),
    ]
    for row in rows:
        found = []
        for strategy in strategies:
            found = [e for e in entries if strategy(row, e)]
            if found:
                break
        if len(found) == 1:
            matches[row["name"]] = found[0]
            used.setdefault(found[0].name, []).append(row["name"])
        elif not found:
            problems.append(f"row {row['name']!r} has no zoo entry (add a preset with original_name={row['name']!r})")
        else:
            problems.append(f"row {row['name']!r} matches several entries {[e.name for e in found]}; set original_name")
    for name, row_names in used.items():
        if len(row_names) > 1:
            problems.append(f"entry {name!r} matches several rows {row_names}; set original_name")
    for e in entries:
        if e.name not in used:
            problems.append(f"entry {e.name!r} matches no row of the seed's zoo.json (set original_name)")
    return matches, problems


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) < 1e-6


def _entries_for(fixture_family: str) -> tuple[str | None, list]:
    for family in FIXTURE_FAMILIES[fixture_family]:
        entries = list_models(family)
        if entries:
            return family, entries
    return None, []


@pytest.mark.parametrize("fixture_family", sorted(FIXTURE_FAMILIES))
def test_zoo_covers_every_released_row(fixture_family):
    facts = zoo_facts()
    family, entries = _entries_for(fixture_family)
    if not entries:
        pytest.skip(f"no presets.py with ZOO_ENTRIES for {fixture_family} yet")
    rows = facts[fixture_family]
    matches, problems = match_rows(rows, entries)
    for row in rows:
        entry = matches.get(row["name"])
        if entry is None:
            continue
        where = f"{entry.name} (row {row['name']})"
        p = entry.paper
        for label, want, got in (("mIoU single-scale", row["miou_ss"], p.miou_single_scale),
                                 ("mIoU multi-scale", row["miou_ms"], p.miou_multi_scale),
                                 ("pixel accuracy", row["pixel_acc"], p.pixel_accuracy),
                                 ("pixel accuracy multi-scale", row["pixel_acc_ms"], p.pixel_accuracy_multi_scale),
                                 ("overall score", row["overall_ss"], p.overall_score_single_scale),
                                 ("overall score multi-scale", row["overall_ms"], p.overall_score_multi_scale)):
            if not _same(want, got):
                problems.append(f"{where}: {label} {got} != reported {want}")
        for label, want, got in (("params (M)", row["params_m"], p.params_m), ("FLOPs (G)", row["flops_g"], p.flops_g),
                                 ("FPS", row["fps"], p.fps), ("FPS multi-scale", row["fps_ms"], p.fps_multi_scale)):
            if want is not None and not _same(want, got):
                problems.append(f"{where}: {label} {got} != reported {want}")
        if set(row["checkpoint_urls"]) != set(entry.checkpoint_urls):
            problems.append(f"{where}: checkpoint urls {sorted(entry.checkpoint_urls)} != {row['checkpoint_urls']}")
        if row["crop_size"] and list(entry.crop_size) != list(row["crop_size"]):
            problems.append(f"{where}: crop {list(entry.crop_size)} != {row['crop_size']}")
        if row["dataset"] and entry.dataset != row["dataset"] and not entry.dataset.startswith(row["dataset"] + "_"):
            problems.append(f"{where}: dataset {entry.dataset!r} != {row['dataset']!r}")
    assert not problems, f"{family}: " + "\n".join(problems)


def test_every_entry_is_a_buildable_row():
    entries = list_models()
    assert entries, "the zoo is empty"
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for e in entries:
        assert e.hub_id == f"{HUB_ORG}/{e.name}" and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", e.name), e.name
        assert e.test_mode in ("whole", "slide"), e.name
        assert e.paper.miou_single_scale is not None or e.paper.miou_multi_scale is not None, e.name
        config = build_config(e.name)  # architecture without weights; families test building the models
        assert config.num_labels > 0


def test_hf_seg_models_lists_every_row(capsys):
    from hf_seg.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    entries = list_models()
    for e in entries:
        assert e.name in out
    assert f"{len(entries)} models" in out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listed] == [e.name for e in entries]
    assert all(d["hub_id"] and "paper" in d for d in listed)


# ---------------------------------------------------------------------------------------------------------------
# the cards
# ---------------------------------------------------------------------------------------------------------------


def _paper_metrics(entry) -> dict[str, float]:
    p = entry.paper
    want = {"mIoU (single-scale, reported)": p.miou_single_scale,
            f"mIoU ({mc.multi_scale_label(entry)}, reported)": p.miou_multi_scale,
            "Pixel accuracy (single-scale, reported)": p.pixel_accuracy,
            f"Pixel accuracy ({mc.multi_scale_label(entry)}, reported)": p.pixel_accuracy_multi_scale}
    return {k: v for k, v in want.items() if v is not None}


def check_card(path: Path, entry) -> list[str]:
    """Everything a card must say about its row; returns the problems."""
    from huggingface_hub import ModelCard

    if not path.is_file():
        return [f"{entry.name}: no card at {path}"]
    card = ModelCard.load(path)
    problems = []
    data = card.data
    if data.model_name != entry.name:
        problems.append(f"{entry.name}: model_name {data.model_name!r}")
    facts = mc.family_facts(entry.family)
    if facts and data.license != facts.license:
        problems.append(f"{entry.name}: license {data.license!r} != {facts.license!r}")
    results = data.eval_results or []
    paper = {r.metric_name: r for r in results if r.source_name != mc.REPRODUCTION_SOURCE}
    want = _paper_metrics(entry)
    if set(paper) != set(want):
        problems.append(f"{entry.name}: card reports {sorted(paper)}, the zoo has {sorted(want)}")
    for name, value in want.items():
        if name in paper and not _same(paper[name].metric_value, value):
            problems.append(f"{entry.name}: card {name} = {paper[name].metric_value}, zoo {value}")
    ds = mc.dataset_facts(entry.dataset)
    for r in results:
        if r.dataset_type != ds.hub_type or r.task_type != "image-segmentation":
            problems.append(f"{entry.name}: eval result {r.metric_name} on {r.dataset_type}/{r.task_type}")
    ours = [r for r in results if r.source_name == mc.REPRODUCTION_SOURCE]
    if any(r.dataset_config != mc.REPRODUCTION_CONFIG for r in ours) or any(r.dataset_config for r in paper.values()):
        problems.append(f"{entry.name}: paper and our results share a model-index group (one source per group)")
    attached = sorted(path.parent.glob(mc.EVAL_GLOB))
    if attached:
        measured = mc.read_eval_files(attached, entry=entry)
        if sorted(r.metric_value for r in ours if r.metric_type == "mean_iou") != sorted(m.miou for m in measured):
            problems.append(f"{entry.name}: our mIoU in the card differs from the attached evaluations")
    elif ours or mc.NOT_MEASURED not in card.text:
        problems.append(f"{entry.name}: claims our own numbers without an attached evaluation JSON")
    p = entry.paper
    paper_row = next((line for line in card.text.splitlines() if line.startswith("| Paper/README")), "")
    for value in (p.miou_single_scale, p.miou_multi_scale, p.pixel_accuracy, p.params_m, p.flops_g, p.fps,
                  p.pixel_accuracy_multi_scale, p.overall_score_single_scale, p.overall_score_multi_scale,
                  p.fps_multi_scale):
        if value is not None and f"| {mc.fmt(value)} " not in paper_row + " ":
            problems.append(f"{entry.name}: the body's paper row lacks {mc.fmt(value)}: {paper_row}")
    if p.training_time and f"| {p.training_time} |" not in paper_row:
        problems.append(f"{entry.name}: the body's paper row lacks the training time {p.training_time!r}")
    if f"**{entry.name}** (this model)" not in card.text:
        problems.append(f"{entry.name}: no family table row")
    for other in list_models(entry.family):
        if f"[{other.name}]" not in card.text and other.name != entry.name:
            problems.append(f"{entry.name}: family table lacks {other.name}")
    if facts and not all(c.bibtex in card.text for c in facts.citations):
        problems.append(f"{entry.name}: citation missing")
    for url in entry.checkpoint_urls:
        if url not in card.text:
            problems.append(f"{entry.name}: original checkpoint URL {url} missing")
    return problems


def test_every_row_has_a_card_with_the_zoo_numbers():
    entries = list_models()
    problems = []
    for entry in entries:
        problems += check_card(CARDS / entry.name / mc.CARD_FILE, entry)
    index = (CARDS / mc.INDEX_FILE).read_text() if (CARDS / mc.INDEX_FILE).is_file() else ""
    problems += [f"model_cards/README.md does not list {e.name}" for e in entries
                 if f"[{e.name}]({e.name}/README.md)" not in index]
    known = {e.name for e in entries}
    problems += [f"card {p.parent.name} has no zoo row" for p in CARDS.glob(f"*/{mc.CARD_FILE}")
                 if p.parent.name not in known]
    assert not problems, "\n".join(problems) + "\n(regenerate: python scripts/generate_model_cards.py)"


def test_committed_cards_are_current():
    result = mc.generate_cards(CARDS, check=True)
    assert not result.stale and not result.orphans, (
        f"stale cards {result.stale}, orphan cards {result.orphans}: run python scripts/generate_model_cards.py")


def test_generator_is_idempotent_and_check_detects_staleness(tmp_path):
    entries = list_models()
    first = mc.generate_cards(tmp_path)
    assert sorted(first.written) == sorted([mc.INDEX_FILE, *(e.name for e in entries)])
    second = mc.generate_cards(tmp_path)
    assert not second.written and len(second.unchanged) == len(entries) + 1
    victim = tmp_path / entries[0].name / mc.CARD_FILE
    victim.write_text(victim.read_text().replace(mc.fmt(entries[0].paper.miou_single_scale or
                                                        entries[0].paper.miou_multi_scale), "99.99", 1))
    assert mc.generate_cards(tmp_path, check=True).stale == [entries[0].name]
    assert check_card(victim, entries[0]), "a card with a wrong number must fail the card check"
    (tmp_path / "not-a-row").mkdir()
    (tmp_path / "not-a-row" / mc.CARD_FILE).write_text("---\n---\n")
    assert mc.generate_cards(tmp_path, check=True).orphans == ["not-a-row"]


def test_generator_script_check_fails_on_missing_cards(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_model_cards.py"), "--check",
                           "--output", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"stale: {list_models()[0].name}" in proc.stdout


def test_attached_evaluation_fills_our_column(tmp_path):
    entry = list_models()[0]
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"metrics": {"mean_iou": 0.41234, "overall_accuracy": 0.8, "mean_accuracy": 0.5},
                                     "protocol": {"test_mode": entry.test_mode, "multi_scale": False},
                                     "dataset": entry.dataset, "num_images": 10}))
    cards = tmp_path / "cards"
    target = mc.attach_eval_json(cards, entry.name, eval_file)
    assert mc.attach_eval_json(cards, entry.name, eval_file) == target  # attaching twice keeps one copy
    mc.generate_cards(cards, names=[entry.name])
    path = cards / entry.name / mc.CARD_FILE
    assert not check_card(path, entry)
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    ours = {r.metric_name: r.metric_value for r in card.data.eval_results if r.source_name == mc.REPRODUCTION_SOURCE}
    assert ours == {"mIoU (single-scale, hf_seg)": 41.23, "Pixel accuracy (single-scale, hf_seg)": 80.0}
    ours_row = next(line for line in card.text.splitlines() if line.startswith("| hf_seg"))
    assert "| 41.23 |" in ours_row
    if entry.paper.miou_multi_scale is not None:
        assert mc.NOT_MEASURED in ours_row  # the multi-scale cell stays unmeasured


def test_eval_json_formats_and_refusals():
    entry = list_models()[0]
    [ms] = mc.parse_eval_json({"mIoU": 45.678, "aAcc": 81.0, "aug_test": True, "flip": True}, entry=entry)
    assert ms.multi_scale and ms.miou == 45.68 and ms.pixel_accuracy == 81.0 and "flip" in ms.protocol
    results = mc.parse_eval_json({"results": [{"mean_iou": 0.4}, {"mean_iou": 0.42, "img_ratios": [0.5, 1.0]}]})
    assert [(r.multi_scale, r.miou) for r in results] == [(False, 40.0), (True, 42.0)]
    with pytest.raises(ValueError, match="flip without multi-scale"):
        mc.parse_eval_json({"mean_iou": 0.4, "flip": True})
    with pytest.raises(ValueError, match="no mIoU"):
        mc.parse_eval_json({"accuracy": 0.4})
    other = "cityscapes" if entry.dataset != "cityscapes" else "ade20k"
    with pytest.raises(ValueError, match="evaluated on"):
        mc.parse_eval_json({"mean_iou": 0.4, "dataset": other}, entry=entry)


def test_eval_json_written_by_scripts_evaluate_is_understood():
    from hf_seg import evaluation

    from hf_seg.data.info import dataset_info

    entry = list_models()[0]
    common = dict(per_category=[], num_images=3, timings={}, info=dataset_info(entry.dataset))
    single = evaluation.EvaluationResult(
        metrics={"mean_iou": 0.5, "mean_accuracy": 0.6, "overall_accuracy": 0.7, "mIoU": 50.0, "mAcc": 60.0,
                 "aAcc": 70.0},
        protocol={"test_mode": entry.test_mode, "aug_test": False, "scales": [1.0], "flip": False}, **common)
    multi = evaluation.EvaluationResult(
        metrics={"mean_iou": 0.52, "mean_accuracy": 0.6, "overall_accuracy": 0.7, "mIoU": 52.0, "mAcc": 60.0,
                 "aAcc": 70.0},
        protocol={"test_mode": entry.test_mode, "aug_test": True, "scales": [0.5, 1.0, 1.5], "flip": True}, **common)
    records = [json.loads(json.dumps(r.to_dict(model=entry.hub_id, split="validation"))) for r in (single, multi)]
    [ss], [ms] = (mc.parse_eval_json(r, entry=entry) for r in records)
    assert (ss.multi_scale, ss.miou, ss.pixel_accuracy, ss.num_images) == (False, 50.0, 70.0, 3)
    assert (ms.multi_scale, ms.miou) == (True, 52.0) and "flip" in ms.protocol


def _write_facts() -> None:  # pragma: no cover - maintenance helper
    base = Path(os.environ["HF_SEG_FIXTURES"])  # the full fixture set
    facts = {f: extract_rows(f, json.loads((base / f / "zoo.json").read_text())) for f in FIXTURE_FAMILIES}
    FACTS_FILE.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {FACTS_FILE}")


if __name__ == "__main__" and "--write-facts" in sys.argv:  # pragma: no cover
    _write_facts()
