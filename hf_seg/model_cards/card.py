"""One row's card: the README text (results, the family's table, usage, evaluation commands, conversion and parity,
licence and citation) and its ``model-index`` metadata."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..inference import DEFAULT_TTA_SCALES
from ..zoo import ZooEntry, get_entry, list_models
from .evaluations import MeasuredResult
from .facts import dataset_facts, family_facts

NOT_MEASURED = "not yet measured"
REPRODUCTION_SOURCE = "hf_seg reproduction (scripts/evaluate.py)"
REPRODUCTION_CONFIG = "hf_seg-evaluation"


def fmt(value: float | None, missing: str = "-") -> str:
    if value is None:
        return missing
    return f"{value:g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _crop(entry: ZooEntry) -> str:
    return "x".join(str(v) for v in entry.crop_size)


def _flips(entry: ZooEntry) -> bool:
    note = entry.paper.multi_scale_note.lower()
    return not note or ("flip" in note and "no flip" not in note and "without flip" not in note)


def multi_scale_label(entry: ZooEntry) -> str:
    return "multi-scale + flip" if _flips(entry) else "multi-scale"


def test_protocol(entry: ZooEntry) -> str:
    config = entry.config
    if entry.test_mode == "slide":
        crop = config.get("test_crop_size") or entry.crop_size
        stride = config.get("test_stride")
        text = f"sliding window {'x'.join(map(str, crop))}"
        if stride:
            text += f", stride {'x'.join(map(str, stride))}"
    else:
        text = "whole image"
    return text


def _processor_summary(entry: ZooEntry) -> str:
    p = entry.processor
    mode = p.get("resize_mode")
    if mode == "keep_ratio" and p.get("scale"):
        return f"keep-ratio resize to scale {tuple(p['scale'])} (long, short)"
    if mode == "short_side" and p.get("short_side"):
        text = f"resize the short side to {p['short_side']}"
        if p.get("max_size"):
            text += f" (long side at most {p['max_size']})"
        if p.get("size_divisor"):
            text += f", rounded up to a multiple of {p['size_divisor']}"
        return text
    if mode == "fixed" and p.get("size"):
        return f"resize to {p['size']}"
    return f"resize mode {mode!r}" if mode else "processor defaults"


def _eval_results(entry: ZooEntry, measured: Sequence[MeasuredResult]):
    from huggingface_hub import EvalResult

    ds = dataset_facts(entry.dataset)
    facts = family_facts(entry.family)
    paper_url = facts.repo if facts else (entry.paper_url or None)
    common = dict(task_type="image-segmentation", task_name="Semantic Segmentation", dataset_type=ds.hub_type,
                  dataset_name=ds.name, dataset_split=ds.split)
    results = []
    paper = entry.paper
    for value, mtype, name in (
        (paper.miou_single_scale, "mean_iou", "mIoU (single-scale, reported)"),
        (paper.miou_multi_scale, "mean_iou", f"mIoU ({multi_scale_label(entry)}, reported)"),
        (paper.pixel_accuracy, "pixel_accuracy", "Pixel accuracy (single-scale, reported)"),
        (paper.pixel_accuracy_multi_scale, "pixel_accuracy", f"Pixel accuracy ({multi_scale_label(entry)}, reported)"),
    ):
        if value is not None:
            results.append(EvalResult(**common, metric_type=mtype, metric_name=name, metric_value=float(value),
                                      source_name="Reported by the original authors (paper/README table)",
                                      source_url=paper_url))
    for m in measured:
        tag = "multi-scale" if m.multi_scale else "single-scale"
        split = m.split or ds.split
        # model-index groups results by (task, dataset type/config/split/revision) and gives each group ONE source:
        # our results carry their own dataset config so that they are never attributed to the paper (and back).
        # The evaluation JSON travels with the card (model_cards/<name>/ and the hub folder).
        mcommon = {**common, "dataset_split": split, "dataset_config": REPRODUCTION_CONFIG,
                   "source_name": REPRODUCTION_SOURCE,
                   "source_url": f"https://huggingface.co/{entry.hub_id}/blob/main/{Path(m.source).name}"}
        results.append(EvalResult(**mcommon, metric_type="mean_iou", metric_name=f"mIoU ({tag}, hf_seg)",
                                  metric_value=float(m.miou)))
        if m.pixel_accuracy is not None:
            results.append(EvalResult(**mcommon, metric_type="pixel_accuracy",
                                      metric_name=f"Pixel accuracy ({tag}, hf_seg)", metric_value=float(m.pixel_accuracy)))
    return results


def _latest(measured: Sequence[MeasuredResult], multi_scale: bool, field: str) -> float | None:
    values = [getattr(m, field) for m in measured if m.multi_scale == multi_scale and getattr(m, field) is not None]
    return values[-1] if values else None


def _overall(miou: float | None, pixel_accuracy: float | None) -> float | None:
    return None if miou is None or pixel_accuracy is None else round((miou + pixel_accuracy) / 2, 2)


def _result_columns(entry: ZooEntry, measured: Sequence[MeasuredResult]) -> list[tuple[str, str, str]]:
    """(header, reported cell, our cell) for each column the row's table has; optional ones only when reported or
    measured. Our overall score is (mIoU + pixel accuracy) / 2 of our own evaluation (the benchmark's definition)."""
    p = entry.paper
    ours = {ms: (_latest(measured, ms, "miou"), _latest(measured, ms, "pixel_accuracy")) for ms in (False, True)}

    def measured_cell(value):
        return fmt(value) if value is not None else NOT_MEASURED

    ms_label = multi_scale_label(entry)
    columns = [("mIoU (single-scale)", fmt(p.miou_single_scale), measured_cell(ours[False][0])),
               (f"mIoU ({ms_label})", fmt(p.miou_multi_scale), measured_cell(ours[True][0]))]
    optional = [
        ("Pixel acc. (single-scale)", p.pixel_accuracy, ours[False][1]),
        (f"Pixel acc. ({ms_label})", p.pixel_accuracy_multi_scale, ours[True][1]),
        ("Overall score (single-scale)", p.overall_score_single_scale, _overall(*ours[False])),
        (f"Overall score ({ms_label})", p.overall_score_multi_scale, _overall(*ours[True])),
    ]
    for header, reported, mine in optional:
        if reported is not None or mine is not None:
            columns.append((header, fmt(reported), measured_cell(mine)))
    columns += [("Params (M)", fmt(p.params_m), "-"), ("FLOPs (G)", fmt(p.flops_g), "-"), ("FPS", fmt(p.fps), "-")]
    if p.fps_multi_scale is not None:
        columns.append((f"FPS ({ms_label})", fmt(p.fps_multi_scale), "-"))
    if p.training_time:
        columns.append(("Training time", p.training_time, "-"))
    return columns


def results_table(entry: ZooEntry, measured: Sequence[MeasuredResult] = ()) -> str:
    columns = _result_columns(entry, measured)
    header = ["Source"] + [c[0] for c in columns]
    paper_row = ["Paper/README (as reported)"] + [c[1] for c in columns]
    ours = ["hf_seg, these weights (our evaluation)"] + [c[2] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in (paper_row, ours)]
    return "\n".join(lines)


# optional columns of the family table: shown when any row of the family reports them
_FAMILY_OPTIONAL_COLUMNS = (
    ("Pixel acc. (ss)", lambda p: p.pixel_accuracy),
    ("Pixel acc. (ms)", lambda p: p.pixel_accuracy_multi_scale),
    ("Overall (ss)", lambda p: p.overall_score_single_scale),
    ("Overall (ms)", lambda p: p.overall_score_multi_scale),
    ("Training time", lambda p: p.training_time or None),
)


def family_table(entry: ZooEntry, family_entries: Sequence[ZooEntry]) -> str:
    optional = [(h, get) for h, get in _FAMILY_OPTIONAL_COLUMNS
                if any(get(e.paper) is not None for e in family_entries)]
    header = ["Model", "Row in the original table", "Dataset", "Crop", "Test", "mIoU (ss)", "mIoU (ms)",
              *(h for h, _ in optional), "Params (M)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in family_entries:
        name = f"**{e.name}** (this model)" if e.name == entry.name else f"[{e.name}](https://huggingface.co/{e.hub_id})"
        extra = [get(e.paper) for _, get in optional]
        cells = [name, e.description, dataset_facts(e.dataset).name, _crop(e), e.test_mode,
                 fmt(e.paper.miou_single_scale), fmt(e.paper.miou_multi_scale),
                 *(v if isinstance(v, str) else fmt(v) for v in extra), fmt(e.paper.params_m)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def multi_scale_args(entry: ZooEntry) -> str | None:
    """``scripts/evaluate.py`` arguments for the row's multi-scale protocol, or None when it has none we can state."""
    if entry.paper.miou_multi_scale is None:
        return None
    short_sides = entry.extra.get("multi_scale_short_sides")
    short_side = entry.processor.get("short_side")
    flip = "" if _flips(entry) else " --no-flip"
    if short_sides and short_side:  # multi-scale over short sides (CSAIL): ratios to the single-scale size
        ratios = " ".join(f"{s / short_side:.4g}" for s in short_sides)
        return f"--aug-test{flip} --scales {ratios}"
    ratios = entry.extra.get("ms_flip_ratios")
    if ratios and [float(r) for r in ratios] != list(DEFAULT_TTA_SCALES):
        return f"--aug-test{flip} --scales " + " ".join(f"{float(r):g}" for r in ratios)
    return f"--aug-test{flip}"


def evaluate_command(entry: ZooEntry, multi_scale: bool = False) -> str:
    """The evaluation command (hf_seg.evaluation); whole/slide, crop and stride come from the stored config."""
    ds = dataset_facts(entry.dataset)
    cmd = (f"python scripts/evaluate.py --model {entry.hub_id} --dataset /path/to/{ds.name.replace(' ', '_')} "
           f"--split {ds.split}")
    if multi_scale:
        cmd += " " + (multi_scale_args(entry) or "--aug-test")
    return cmd + f" --output eval{'-ms' if multi_scale else ''}.json"


def _parity_section(entry: ZooEntry, parity: dict | None) -> str:
    how = ("`hf_seg.conversion` (`scripts/convert_original.py`, which `scripts/release.py` runs) reads the original "
           "config without executing it, maps every tensor of the original checkpoint to a model tensor or drops it "
           "with a stated reason, requires every model tensor to be produced and checks every shape")
    if entry.checkpoint_urls or parity:
        first = (f"The weights in this repository are the original checkpoint, converted: {how}. "
                 "`conversion_report.json` lists the mapping.")
    else:
        first = f"A checkpoint trained with the original code converts like the released ones: {how}."
    lines = [
        first,
        "",
        f"Parity of the port: `tests/test_{entry.family}.py` converts checkpoints written by the original code and "
        "compares the logits with the original implementation's outputs within 1e-4 relative (and the training "
        "loss where the fixtures record it).",
        "",
    ]
    if parity:
        status = "passed" if parity.get("passed") else "FAILED"
        lines.append(f"Release verification of these weights ({status}): {parity.get('method', 'unknown method')}; "
                     f"logits max abs diff {parity.get('max_abs_diff', float('nan')):.3g} "
                     f"(tolerance {parity.get('tolerance', float('nan')):.3g} = {parity.get('rtol', 1e-4):g} x "
                     f"max |expected| {parity.get('expected_scale', float('nan')):.3g}) on an input of shape "
                     f"{parity.get('input_shape')}.")
    else:
        lines.append("Release verification of these exact weights: not yet recorded (`scripts/release.py` writes "
                     "`parity.json` when it converts and checks a released checkpoint).")
    return "\n".join(lines)


def card_body(entry: ZooEntry, family_entries: Sequence[ZooEntry], measured: Sequence[MeasuredResult] = (),
              parity: dict | None = None) -> str:
    facts = family_facts(entry.family)
    ds = dataset_facts(entry.dataset)
    p = entry.paper
    title = entry.paper_title or (facts.citations[0].title if facts else "")
    paper_url = entry.paper_url or (facts.citations[0].url if facts else "")
    out = [f"# {entry.name}", ""]
    out.append(f"{entry.description}: a {facts.display if facts else entry.family} model for semantic segmentation "
               f"on {ds.name}, ported to `transformers` by `hf_seg` "
               f"(`{entry.family}` family, preset `{entry.name}`).")
    out.append("")
    if title:
        out.append(f"Paper: [{title}]({paper_url})" if paper_url else f"Paper: {title}")
    if facts:
        out.append(f"Original code: [{facts.repo}]({facts.repo}) (commit `{facts.commit[:7]}`)")
    if entry.original_name:
        out.append(f"Original row: `{entry.original_name}`")
    out.append("")

    out += ["## Results", ""]
    out.append(f"{ds.name} {ds.split} split, crop {_crop(entry)}, test protocol: {test_protocol(entry)}. "
               "The first row is copied from the original authors' table"
               + (f" ({entry.source_table})" if entry.source_table else "") + "; it is their "
               "measurement, not ours. The second row is our own evaluation of these converted weights with "
               + ("`scripts/evaluate.py` (listed below)." if measured else
                  f"`scripts/evaluate.py` and says \"{NOT_MEASURED}\" until one has been run and attached."))
    out += ["", results_table(entry, measured), ""]
    if p.multi_scale_note:
        out += [f"Multi-scale protocol and figures as reported: {p.multi_scale_note}.", ""]
    if measured:
        out.append("Our evaluations:")
        for m in measured:
            extra = f", {m.num_images} images" if m.num_images else ""
            acc = f", pixel accuracy {fmt(m.pixel_accuracy)}" if m.pixel_accuracy is not None else ""
            out.append(f"- {m.protocol} ({m.split or ds.split}{extra}): mIoU {fmt(m.miou)}{acc} "
                       f"(from `{m.source}`)")
        out.append("")
    if entry.notes:
        out += [f"Notes on this row: {entry.notes}", ""]

    out += [f"### The {facts.display if facts else entry.family} table (paper numbers)", "",
            family_table(entry, family_entries), ""]

    out += ["## How to use", "", "```python", "import hf_seg  # registers the model with the Auto classes",
            "from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation, pipeline", "",
            f'model = AutoModelForSemanticSegmentation.from_pretrained("{entry.hub_id}")',
            f'processor = AutoImageProcessor.from_pretrained("{entry.hub_id}")',
            "inputs = processor(images=image, return_tensors=\"pt\")",
            "outputs = model(**inputs)  # logits at the head's resolution",
            "segmentation = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]",
            "",
            f'segmenter = pipeline("image-segmentation", model="{entry.hub_id}", subtask="semantic")',
            "```", ""]
    out.append(f"Preprocessing (the paper's test pipeline, stored in `preprocessor_config.json`): "
               f"{_processor_summary(entry)}. `hf_seg.zoo.build_model(\"{entry.name}\")` builds the same "
               "architecture with random weights.")
    out += ["", f"Evaluate with the paper's test protocol ({test_protocol(entry)}; `test_mode`, `test_crop_size` "
            "and `test_stride` are stored in the config, so `scripts/evaluate.py` uses them by default):", "",
            "```bash", evaluate_command(entry)]
    if multi_scale_args(entry):
        out.append(evaluate_command(entry, multi_scale=True))
    out += ["```", ""]
    if p.miou_multi_scale is not None and not multi_scale_args(entry):
        out += [f"The paper's multi-scale protocol: {p.multi_scale_note}.", ""]
    out += ["Attach the JSON it writes to this card with "
            f"`python scripts/generate_model_cards.py --eval-json {entry.name}=eval.json`.", ""]

    out += ["## Conversion and parity", ""]
    if entry.checkpoint_urls:
        out.append("Original checkpoint: " + ", ".join(f"<{u}>" for u in entry.checkpoint_urls))
    else:
        out.append("The original authors released no checkpoint for this row: this card documents the preset "
                   "(architecture, test protocol and the paper's numbers).")
    out += ["", "Convert, verify and publish (a dry run unless `--push`):", "", "```bash",
            "python scripts/release.py --row " + entry.name + " --original-checkpoint CKPT [CKPT ...] "
            "--original-config ORIGINAL_CONFIG --output DIR",
            "```", "", _parity_section(entry, parity), ""]

    out += ["## License", ""]
    if facts:
        what = "The original code and checkpoints come" if entry.checkpoint_urls else "The original code comes"
        out.append(f"{what} from {facts.repo}, released under the "
                   f"[{facts.license_name}]({facts.license_url}). {facts.license_note}".rstrip())
    elif entry.license:
        out.append(f"The original repository's license: {entry.license}.")
    out.append("")
    if facts:
        out += ["## Citation", ""]
        for c in facts.citations:
            out += ["```bibtex", c.bibtex, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def build_card(entry: ZooEntry | str, family_entries: Sequence[ZooEntry] | None = None,
               measured: Sequence[MeasuredResult] = (), parity: dict | None = None):
    """The :class:`huggingface_hub.ModelCard` of one zoo row."""
    from huggingface_hub import ModelCard, ModelCardData

    entry = get_entry(entry) if isinstance(entry, str) else entry
    if family_entries is None:
        family_entries = list_models(entry.family)
    facts = family_facts(entry.family)
    ds = dataset_facts(entry.dataset)
    license_id = facts.license if facts else (entry.license.lower() or None)
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        license=license_id,
        datasets=[ds.hub_dataset] if ds.hub_dataset else None,
        tags=["semantic-segmentation", "hf_seg", entry.family, "vision"],
        model_name=entry.name,
        eval_results=_eval_results(entry, measured),
    )
    body = card_body(entry, family_entries, measured, parity)
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=body)


def card_text(entry: ZooEntry | str, **kwargs) -> str:
    text = str(build_card(entry, **kwargs))
    return text if text.endswith("\n") else text + "\n"
