"""Evaluate a segmentation model on a dataset with the paper's test protocol; used by ``scripts/evaluate.py``.

Protocol (mmsegmentation's test loop, which is what the seeds' tables report): each image is preprocessed by the
model's image processor (its test-time resize), run with the model's test mode (whole image or sliding window,
``config.test_mode``/``test_crop_size``/``test_stride``), optionally with multi-scale + flip TTA, the scores are
resized (bilinear) to the **original** image size and argmaxed, and compared with the original annotation turned
into training ids (the dataset's ``label_map`` and ``reduce_labels``). Mean IoU is accumulated in a confusion matrix
(:class:`hf_seg.metrics.MeanIoU`): the numbers are ``evaluate``'s mean_iou.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DatasetInfo, custom_info, info_for_num_labels, load_segmentation_dataset
from .evaluation_args import DTYPE_NAMES, build_parser
from .inference import DEFAULT_TTA_SCALES, num_windows, predict
from .metrics import MeanIoU

__all__ = ["EvaluationResult", "build_parser", "evaluate_segmentation", "load_model_and_processor", "main",
           "make_views", "format_report"]

DTYPES = {name: getattr(torch, dtype) for name, dtype in DTYPE_NAMES.items()}


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    per_category: list[dict[str, Any]]
    num_images: int
    protocol: dict[str, Any]
    timings: dict[str, Any]
    info: DatasetInfo
    confusion: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self, **extra) -> dict[str, Any]:
        out = {
            **extra,
            "dataset": self.info.name,
            "dataset_source": self.info.source,
            "layout": self.info.layout,
            "num_images": self.num_images,
            "test_mode": self.protocol.get("test_mode"),
            "aug_test": self.protocol.get("aug_test"),
            "protocol": self.protocol,
            "metrics": self.metrics,
            "per_category": self.per_category,
            "timings": self.timings,
            "notes": self.notes,
        }
        return _jsonable(out)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, torch.dtype):
        return str(obj).replace("torch.", "")
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------------------------- loading
def load_model_and_processor(name_or_path: str, device="cpu", dtype=torch.float32):
    """(model, processor, how) through :func:`hf_seg.zoo.load` (inference mode: missing tensors, NaN weights and a
    folder without an image processor are refused); model in eval mode."""
    from .zoo import load

    loaded = load(name_or_path)
    how = "zoo preset (random weights)" if loaded.random_weights else loaded.source
    return loaded.model.to(device=device, dtype=dtype).eval(), loaded.processor, how


# ----------------------------------------------------------------------------------------------- views
def make_views(processor, image, scales) -> list[tuple[torch.Tensor, tuple[int, int] | None]]:
    """The processor's preprocessing at each TTA scale ratio: mmseg's ``img_scale * ratio`` (truncated) for
    keep-ratio resizing, ``short_side * ratio`` for short-side resizing, ``size * ratio`` for fixed sizes. Returns
    (pixel_values [1, 3, h, w], valid (h, w) or None) per scale."""
    views = []
    mode = getattr(processor, "resize_mode", None)
    for ratio in scales:
        overrides = {}
        if ratio != 1.0:
            if mode == "keep_ratio":
                overrides["scale"] = [int(s * ratio) for s in processor.scale]
            elif mode == "short_side":
                overrides["short_side"] = int(processor.short_side * ratio)
                if processor.max_size is not None:
                    overrides["max_size"] = int(processor.max_size * ratio)
            elif mode == "fixed":
                overrides["size"] = {"height": int(processor.size["height"] * ratio),
                                     "width": int(processor.size["width"] * ratio)}
        inputs = processor(image, return_tensors="pt", **overrides) if overrides else processor(
            image, return_tensors="pt")
        pixel_values = inputs["pixel_values"]
        valid = tuple(int(v) for v in inputs["valid_sizes"][0]) if "valid_sizes" in inputs else None
        if ratio != 1.0 and mode not in ("keep_ratio", "short_side", "fixed"):
            from torch.nn import functional as F

            h, w = pixel_values.shape[-2:]
            size = (max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5)))
            pixel_values = F.interpolate(pixel_values, size=size, mode="bilinear", align_corners=False)
            valid = None
        views.append((pixel_values, valid))
    return views


# ----------------------------------------------------------------------------------------------- loop
def _resolve_info(info: DatasetInfo | None, model) -> DatasetInfo:
    config = model.config
    if info is None:
        info = custom_info(id2label=getattr(config, "id2label", None))
    if info.num_labels is None:
        id2label = getattr(config, "id2label", None) or {}
        info = info.replace(num_labels=config.num_labels, id2label={int(k): v for k, v in id2label.items()})
    if config.num_labels != info.num_labels and info_for_num_labels(info, config.num_labels) is not None:
        info = info_for_num_labels(info, config.num_labels)  # e.g. Pascal-Context 59 vs 60 classes
    if config.num_labels != info.num_labels:
        raise ValueError(f"the model predicts {config.num_labels} classes but the dataset ({info.name}) has "
                         f"{info.num_labels}: evaluate a model trained on this dataset")
    return info


def evaluate_segmentation(
    model,
    processor,
    dataset,
    info: DatasetInfo | None = None,
    mode: str | None = None,
    crop_size=None,
    stride=None,
    aug_test: bool = False,
    scales=None,
    flip: bool | None = None,
    batch_size: int | None = None,
    max_samples: int | None = None,
    device=None,
    dtype=None,
    progress: bool = True,
    image_column: str = "image",
    label_column: str = "annotation",
) -> EvaluationResult:
    """Run the test protocol over ``dataset`` (rows with a PIL ``image`` and ``annotation``, e.g. from
    :func:`hf_seg.data.load_segmentation_dataset`) and return the metrics.

    Args:
        mode, crop_size, stride: override ``model.config.test_mode``/``test_crop_size``/``test_stride``.
        aug_test: multi-scale + flip TTA (``scales`` default mmseg's 0.5..1.75, ``flip`` default True).
        batch_size: crops per forward in slide mode.
    """
    info = _resolve_info(info, model)
    config = model.config
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = dtype or next(model.parameters()).dtype
    mode = mode or getattr(config, "test_mode", None) or "whole"
    crop_size = crop_size or getattr(config, "test_crop_size", None)
    stride = stride or getattr(config, "test_stride", None)
    if mode == "slide" and crop_size is None:
        raise ValueError("slide mode needs a crop size (config.test_crop_size or --crop-size)")
    if mode == "slide" and stride is None:
        stride = crop_size
    if aug_test:
        scales = list(scales) if scales else list(getattr(config, "test_scales", None) or DEFAULT_TTA_SCALES)
        flip = True if flip is None else flip
    else:
        scales = list(scales) if scales else [1.0]
        flip = bool(flip)
    tta = flip or len(scales) > 1 or scales[0] != 1.0

    notes = list(info.notes)
    processor_reduce = bool(getattr(processor, "do_reduce_labels", info.reduce_labels))
    if processor_reduce != info.reduce_labels:
        notes.append(f"the processor's do_reduce_labels={processor_reduce} differs from the dataset's "
                     f"reduce_labels={info.reduce_labels}; the dataset's convention is used for the annotations")
    metric = MeanIoU(info.num_labels, ignore_index=info.ignore_index)
    total = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="evaluating", unit="img", dynamic_ncols=True)
    forward_times, data_times, windows = [], [], 0
    start = time.perf_counter()
    with torch.no_grad():
        for index in range(total):
            t0 = time.perf_counter()
            row = dataset[index]
            image = row[image_column]
            image = image.convert("RGB") if hasattr(image, "convert") else image
            labels = info.convert_labels(np.array(row[label_column]))
            height, width = labels.shape[-2:]
            if hasattr(image, "height") and (image.height, image.width) != (height, width):
                raise ValueError(f"image {index} is {image.height}x{image.width} but its annotation is "
                                 f"{height}x{width}")
            views = make_views(processor, image, scales)
            t1 = time.perf_counter()
            pixel_values = [v.to(device=device, dtype=dtype) for v, _ in views]
            valid = [vs for _, vs in views]
            if mode == "slide":
                windows += sum(num_windows(*v.shape[-2:], crop_size, stride) for v in pixel_values) * (2 if flip
                                                                                                        else 1)
            kwargs = dict(mode=mode, crop_size=crop_size, stride=stride, output_size=(height, width),
                          batch_size=batch_size)
            if tta:
                scores = predict(model, pixel_values, flip=flip,
                                 valid_size=valid if any(v is not None for v in valid) else None, **kwargs)
            else:
                scores = predict(model, pixel_values[0], scales=[1.0], flip=False, valid_size=valid[0], **kwargs)
            prediction = scores.argmax(dim=1)[0]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t2 = time.perf_counter()
            metric.update(prediction, torch.from_numpy(labels).to(prediction.device))
            data_times.append(t1 - t0)
            forward_times.append(t2 - t1)
            if bar is not None:
                bar.update(1)
                if (index + 1) % 10 == 0 or index + 1 == total:
                    bar.set_postfix(mIoU=f"{100 * float(metric.compute()['mean_iou']):.2f}")
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    out = metric.compute()
    metrics = {
        "mean_iou": out["mean_iou"], "mean_accuracy": out["mean_accuracy"], "overall_accuracy": out["overall_accuracy"],
        "mIoU": 100 * out["mean_iou"], "mAcc": 100 * out["mean_accuracy"], "aAcc": 100 * out["overall_accuracy"],
    }
    per_category = [{"id": i, "name": info.id2label.get(i, str(i)), "iou": out["per_category_iou"][i],
                     "accuracy": out["per_category_accuracy"][i]} for i in range(info.num_labels)]
    protocol = {
        "test_mode": mode, "crop_size": list(crop_size) if isinstance(crop_size, (list, tuple)) else crop_size,
        "stride": list(stride) if isinstance(stride, (list, tuple)) else stride, "aug_test": bool(aug_test),
        "scales": scales, "flip": flip, "slide_batch_size": batch_size,
        "pad_to_crop": bool(getattr(config, "test_pad_to_crop", True)),
        "resize": _processor_summary(processor), "evaluated_at": "original image size",
        "ignore_index": info.ignore_index, "reduce_labels": info.reduce_labels,
        "label_map": bool(info.label_map),
    }
    timings = {
        "total_s": elapsed,
        "model_s_per_image": float(np.mean(forward_times)) if forward_times else None,
        "model_s_median": float(np.median(forward_times)) if forward_times else None,
        "data_s_per_image": float(np.mean(data_times)) if data_times else None,
        "images_per_s": total / elapsed if elapsed > 0 else None,
        "windows": windows or None,
    }
    return EvaluationResult(metrics, per_category, total, protocol, timings, info, metric.confusion_matrix, notes)


def _processor_summary(processor) -> dict[str, Any]:
    keys = ("resize_mode", "size", "scale", "short_side", "max_size", "size_divisor", "pad_size_divisor",
            "do_reduce_labels", "channel_order", "image_mean", "image_std")
    return {k: getattr(processor, k) for k in keys if hasattr(processor, k)}


# ----------------------------------------------------------------------------------------------- report
def format_report(result: EvaluationResult, per_class: bool = True) -> str:
    m = result.metrics
    lines = []
    if per_class:
        width = max([len(c["name"]) for c in result.per_category] + [5])
        lines.append(f"{'id':>4}  {'class':<{width}}  {'IoU':>7}  {'Acc':>7}")
        for c in result.per_category:
            iou = "-" if c["iou"] is None or np.isnan(c["iou"]) else f"{100 * c['iou']:.2f}"
            acc = "-" if c["accuracy"] is None or np.isnan(c["accuracy"]) else f"{100 * c['accuracy']:.2f}"
            lines.append(f"{c['id']:>4}  {c['name']:<{width}}  {iou:>7}  {acc:>7}")
    p = result.protocol
    proto = p["test_mode"] + (f" crop {p['crop_size']} stride {p['stride']}" if p["test_mode"] == "slide" else "")
    if p["aug_test"] or p["flip"] or len(p["scales"]) > 1:
        proto += f", scales {p['scales']}" + (" + flip" if p["flip"] else "")
    lines.append(f"{result.info.name} ({result.num_images} images, {proto}): "
                 f"mIoU {m['mIoU']:.2f}  mAcc {m['mAcc']:.2f}  aAcc {m['aAcc']:.2f}")
    return "\n".join(lines)


def _environment(device, dtype) -> dict[str, Any]:
    import transformers

    try:
        from . import __version__ as hf_seg_version
    except ImportError:  # pragma: no cover
        hf_seg_version = None
    env = {"hf_seg": hf_seg_version, "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
           "threads": torch.get_num_threads(), "platform": platform.platform()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


# ----------------------------------------------------------------------------------------------- CLI
def _size_arg(values):
    if values is None:
        return None
    return [values[0], values[0]] if len(values) == 1 else list(values[:2])


def run(args) -> dict[str, Any]:
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = DTYPES[args.dtype]
    t0 = time.perf_counter()
    model, processor, how = load_model_and_processor(args.model, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = load_segmentation_dataset(args.dataset, split=args.split)
    split = next(iter(data))
    dataset, info = data[split], data.info
    data_s = time.perf_counter() - t0
    result = evaluate_segmentation(
        model, processor, dataset, info, mode=args.mode, crop_size=_size_arg(args.crop_size),
        stride=_size_arg(args.stride), aug_test=args.aug_test or bool(args.scales), scales=args.scales,
        flip=False if args.no_flip else None, batch_size=args.batch_size, max_samples=args.max_samples,
        device=device, dtype=dtype, progress=not args.no_progress)
    result.timings.update({"model_load_s": load_s, "dataset_index_s": data_s})
    if how == "zoo preset (random weights)":
        result.notes.append(f"{args.model!r} is a zoo preset: RANDOM weights, so these numbers measure an untrained "
                            f"model (evaluate a converted or finetuned folder for real ones)")
    config = model.config
    record = result.to_dict(
        model=args.model, model_type=getattr(config, "model_type", None), model_loaded_as=how,
        num_parameters=sum(p.numel() for p in model.parameters()), split=split,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        environment=_environment(device, dtype), command=" ".join(sys.argv),
    )
    print(format_report(result, per_class=not args.quiet))
    for note in result.notes:
        print(f"note: {note}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.output}")
    return record


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog=prog).parse_args(argv)
    run(args)
    return 0
