"""Model cards for the zoo: one hub README per released row, generated from :mod:`hf_seg.zoo`.

A card carries ``model-index`` metadata (``huggingface_hub``'s ``ModelCardData``/``EvalResult``, which the hub renders
as an evaluation table) and a body with the seed's table row, the family's whole table for context, how to use and
evaluate the model, how it was converted and the parity evidence, the license and the citation.

What a card may claim:

* paper numbers are the ones the zoo copied from the seed's README/paper and are labelled as reported there;
* our own column says "not yet measured" until an evaluation JSON written by ``scripts/evaluate.py`` is attached
  (``model_cards/<name>/eval*.json``, or ``--eval-json`` of ``scripts/generate_model_cards.py`` /
  ``scripts/release.py``);
* release verification numbers come only from a ``parity.json`` written by ``scripts/release.py``.

``generate_cards(root)`` rewrites only the cards whose text changed, so regenerating is idempotent and cheap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .zoo import ZooEntry, get_entry, list_models

CARD_FILE = "README.md"
PARITY_FILE = "parity.json"
EVAL_GLOB = "eval*.json"
NOT_MEASURED = "not yet measured"
REPRODUCTION_SOURCE = "hf_seg reproduction (scripts/evaluate.py)"
REPRODUCTION_CONFIG = "hf_seg-evaluation"
MMSEG_TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # scripts/evaluate.py --aug-test's default


# ---------------------------------------------------------------------------------------------------------------
# facts per family (licenses as stated in each original repository's LICENSE/README; citations from the READMEs)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Citation:
    title: str
    url: str
    bibtex: str


@dataclass(frozen=True)
class FamilyFacts:
    display: str
    repo: str
    commit: str
    license: str  # hub license id (lower-case SPDX)
    license_name: str  # as the original states it
    license_url: str
    citations: tuple[Citation, ...]
    fixtures: str  # folder name under the shared fixtures
    license_note: str = ""


_SETR_BIB = """@inproceedings{SETR,
    title={Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with Transformers},
    author={Zheng, Sixiao and Lu, Jiachen and Zhao, Hengshuang and Zhu, Xiatian and Luo, Zekun and Wang, Yabiao and Fu, Yanwei and Feng, Jianfeng and Xiang, Tao and Torr, Philip H.S. and Zhang, Li},
    booktitle={CVPR},
    year={2021}
}"""
_SETR_HLG_BIB = """@article{SETR-HLG,
  title={Vision transformers: From semantic segmentation to dense prediction},
  author={Zhang, Li and Lu, Jiachen and Zheng, Sixiao and Zhao, Xinxuan and Zhu, Xiatian and Fu, Yanwei and Xiang, Tao and Feng, Jianfeng and Torr, Philip HS},
  journal={International Journal of Computer Vision},
  pages={1--21},
  year={2024},
  publisher={Springer}
}"""
_ADE_BIB_2018 = """@article{zhou2018semantic,
  title={Semantic understanding of scenes through the ade20k dataset},
  author={Zhou, Bolei and Zhao, Hang and Puig, Xavier and Xiao, Tete and Fidler, Sanja and Barriuso, Adela and Torralba, Antonio},
  journal={International Journal on Computer Vision},
  year={2018}
}"""
_ADE_BIB_2017 = """@inproceedings{zhou2017scene,
  title={Scene Parsing through ADE20K Dataset},
  author={Zhou, Bolei and Zhao, Hang and Puig, Xavier and Fidler, Sanja and Barriuso, Adela and Torralba, Antonio},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
  year={2017}
}"""
_REGPROXY_BIB = """@article{zhang2022semantic,
  title={Semantic Segmentation by Early Region Proxy},
  author={Zhang, Yifan and Pang, Bo and Lu, Cewu},
  journal={arXiv preprint arXiv:2203.14043},
  year={2022}
}"""
_SEMASK_BIB = """@inproceedings{jain2023semask,
  title={SeMask: Semantically Masked Transformers for Semantic Segmentation},
  author={Jitesh Jain and Anukriti Singh and Nikita Orlov and Zilong Huang and Jiachen Li and Steven Walton and Humphrey Shi},
  year={2023},
  booktitle={ICCV Workshops 2023},
}"""
_UNEPT_BIB = """@article{zhu2021unified,
  title={A Unified Efficient Pyramid Transformer for Semantic Segmentation},
  author={Zhu, Fangrui and Zhu, Yi and Zhang, Li and Wu, Chongruo and Fu, Yanwei and Li, Mu},
  journal={arXiv preprint arXiv:2107.14209},
  year={2021}
}"""

_REGPROXY = FamilyFacts(
    display="RegionProxy",
    repo="https://github.com/YiF-Zhang/RegionProxy",
    commit="76fea9b732af22f73aca129f1a2284d6e0fc2953",
    license="mit", license_name="MIT License",
    license_url="https://github.com/YiF-Zhang/RegionProxy/blob/main/LICENSE",
    citations=(Citation("Semantic Segmentation by Early Region Proxy", "https://arxiv.org/abs/2203.14043", _REGPROXY_BIB),),
    fixtures="regproxy",
)

FAMILIES: dict[str, FamilyFacts] = {
    "csail": FamilyFacts(
        display="MIT CSAIL semantic-segmentation-pytorch",
        repo="https://github.com/CSAILVision/semantic-segmentation-pytorch",
        commit="8f27c9b97d2ca7c6e05333d5766d144bf7d8c31b",
        license="bsd-3-clause", license_name="BSD 3-Clause License",
        license_url="https://github.com/CSAILVision/semantic-segmentation-pytorch/blob/master/LICENSE",
        citations=(
            Citation("Semantic Understanding of Scenes through the ADE20K Dataset", "https://arxiv.org/abs/1608.05442",
                     _ADE_BIB_2018),
            Citation("Scene Parsing through ADE20K Dataset",
                     "http://people.csail.mit.edu/bzhou/publication/scene-parse-camera-ready.pdf", _ADE_BIB_2017),
        ),
        fixtures="csail",
    ),
    "setr": FamilyFacts(
        display="SETR",
        repo="https://github.com/fudan-zvg/SETR",
        commit="1361561ffde90e07ed1b4f9cdbc10b88ce27e2f3",
        license="mit", license_name="MIT License",
        license_url="https://github.com/fudan-zvg/SETR/blob/main/LICENSE",
        citations=(
            Citation("Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with Transformers",
                     "https://arxiv.org/abs/2012.15840", _SETR_BIB),
            Citation("Vision Transformers: From Semantic Segmentation to Dense Prediction",
                     "https://arxiv.org/abs/2207.09339", _SETR_HLG_BIB),
        ),
        fixtures="setr",
    ),
    "regionproxy": _REGPROXY,
    "regproxy": _REGPROXY,
    "semask": FamilyFacts(
        display="SeMask",
        repo="https://github.com/Picsart-AI-Research/SeMask-Segmentation",
        commit="16539be7df1e33a469da508091156e791e90ca2d",
        license="apache-2.0", license_name="Apache License 2.0",
        license_url="https://github.com/Picsart-AI-Research/SeMask-Segmentation/blob/main/LICENSE",
        license_note="The repository's LICENSE grants Apache-2.0 for SeMask except for the third-party components "
                     "it lists separately.",
        citations=(Citation("SeMask: Semantically Masked Transformers for Semantic Segmentation",
                            "https://arxiv.org/abs/2112.12782", _SEMASK_BIB),),
        fixtures="semask",
    ),
    "unept": FamilyFacts(
        display="UN-EPT (Unified-EPT)",
        repo="https://github.com/amazon-science/unified-ept",
        commit="48f74a6decc6d4321f9652e428ca2bd209a6e2cc",
        license="apache-2.0", license_name="Apache License 2.0",
        license_url="https://github.com/amazon-science/unified-ept/blob/main/LICENSE",
        citations=(Citation("A Unified Efficient Pyramid Transformer for Semantic Segmentation",
                            "https://arxiv.org/abs/2107.14209", _UNEPT_BIB),),
        fixtures="unept",
    ),
}


@dataclass(frozen=True)
class DatasetFacts:
    name: str  # display name
    hub_type: str  # EvalResult.dataset_type
    split: str
    hub_dataset: str | None = None  # a hub dataset id for ModelCardData.datasets, where one is well known


DATASETS: dict[str, DatasetFacts] = {
    "ade20k": DatasetFacts("ADE20K", "scene_parse_150", "validation", "scene_parse_150"),
    "cityscapes": DatasetFacts("Cityscapes", "cityscapes", "validation"),
    "pascal_context": DatasetFacts("PASCAL-Context", "pascal_context", "validation"),
    "pascal_context_60": DatasetFacts("PASCAL-Context", "pascal_context", "validation"),  # background included
    # SeMask's COCO-Stuff 10k configs evaluate on images/test2014 (the 1k test images)
    "coco_stuff": DatasetFacts("COCO-Stuff 10k", "coco_stuff_10k", "test"),
    "camvid": DatasetFacts("CamVid", "camvid", "test"),
}


def family_facts(family: str) -> FamilyFacts | None:
    return FAMILIES.get(family)


def dataset_facts(dataset: str) -> DatasetFacts:
    return DATASETS.get(dataset, DatasetFacts(dataset, dataset, "validation"))


# ---------------------------------------------------------------------------------------------------------------
# measured results (evaluation JSONs from scripts/evaluate.py) and release verification (parity.json)
# ---------------------------------------------------------------------------------------------------------------


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
            norm = lambda s: s.lower().replace("-", "").replace("_", "").replace(" ", "")  # noqa: E731
            if norm(entry.dataset) not in norm(dataset) and norm(dataset) not in norm(entry.dataset) and \
                    norm(dataset_facts(entry.dataset).hub_type) != norm(dataset):
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


# ---------------------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------------------


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
    if ratios and [float(r) for r in ratios] != list(MMSEG_TTA_RATIOS):
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


# ---------------------------------------------------------------------------------------------------------------
# the zoo as one table (model_cards/README.md; `hf-seg models` can print the same columns)
# ---------------------------------------------------------------------------------------------------------------

ZOO_COLUMNS = ("name", "hub id", "family", "dataset", "crop", "test", "mIoU ss", "mIoU ms", "pixel acc",
               "params M", "FLOPs G", "FPS", "original checkpoint")
INDEX_FILE = "README.md"


def zoo_table_rows(entries: Sequence[ZooEntry] | None = None) -> list[tuple[str, ...]]:
    """One tuple of strings per row, in :data:`ZOO_COLUMNS` order; all numbers are the paper's."""
    rows = []
    for e in list_models() if entries is None else entries:
        p = e.paper
        ckpt = e.checkpoint_urls[0] if e.checkpoint_urls else "-"
        if len(e.checkpoint_urls) > 1:
            ckpt += f" (+{len(e.checkpoint_urls) - 1})"
        rows.append((e.name, e.hub_id, e.family, e.dataset, _crop(e), e.test_mode, fmt(p.miou_single_scale),
                     fmt(p.miou_multi_scale), fmt(p.pixel_accuracy), fmt(p.params_m), fmt(p.flops_g), fmt(p.fps),
                     ckpt))
    return rows


def zoo_table_text(entries: Sequence[ZooEntry] | None = None, columns: Sequence[str] = ZOO_COLUMNS) -> str:
    """A plain-text table (for ``hf-seg models``) of the chosen :data:`ZOO_COLUMNS`."""
    index = [ZOO_COLUMNS.index(c) for c in columns]
    table = [tuple(columns)] + [tuple(r[i] for i in index) for r in zoo_table_rows(entries)]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def zoo_index_markdown(entries: Sequence[ZooEntry] | None = None) -> str:
    entries = list_models() if entries is None else list(entries)
    families: dict[str, int] = {}
    for e in entries:
        families[e.family] = families.get(e.family, 0) + 1
    lines = ["# hf_seg model zoo", "",
             f"{len(entries)} rows ({', '.join(f'{f}: {n}' for f, n in families.items())}). Every number is the one "
             "reported by the original authors (paper/README tables); our own evaluations are in each card. "
             "Generated by `python scripts/generate_model_cards.py` from `hf_seg.zoo`; do not edit.", "",
             "| " + " | ".join(ZOO_COLUMNS) + " |", "|" + "---|" * len(ZOO_COLUMNS)]
    for e, row in zip(entries, zoo_table_rows(entries)):
        cells = [f"[{e.name}]({e.name}/README.md)", *row[1:-1],
                 f"[link]({e.checkpoint_urls[0]})" if e.checkpoint_urls else "none released"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# the model_cards/ folder
# ---------------------------------------------------------------------------------------------------------------


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
