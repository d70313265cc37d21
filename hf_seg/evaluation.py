"""Evaluate a segmentation model on a dataset with the paper's test protocol; used by ``scripts/evaluate.py``.

Protocol (mmsegmentation's test loop, which is what the seeds' tables report): each image is preprocessed by the
model's image processor (its test-time resize), run with the model's test mode (whole image or sliding window,
``config.test_mode``/``test_crop_size``/``test_stride``), optionally with multi-scale + flip TTA, the scores are
resized (bilinear) to the **original** image size and argmaxed, and compared with the original annotation turned
into training ids (the dataset's ``label_map`` and ``reduce_labels``). Mean IoU is accumulated in a confusion matrix
(:class:`hf_seg.metrics.ConfusionMatrix`): the numbers are ``evaluate``'s mean_iou.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DatasetInfo, custom_info, info_for_num_labels, load_segmentation_dataset
from .data.inference_data import (
    InferenceDataset,
    LabelCheck,
    header_size_of,
    image_names,
    make_loader,
    make_views,
    plan_batches,
    undecoded,
)
from .distributed import Processes, command_argv, default_num_workers, init_processes
from .evaluation_args import DTYPE_NAMES, build_parser
from .inference import TestProtocol, num_windows
from .metrics import ConfusionMatrix
from .predict import PredictionWriter, label_id_table, prediction_paths, relative_names

__all__ = ["EvaluationError", "EvaluationResult", "build_parser", "evaluate_segmentation", "load_model_and_processor",
           "main", "make_views", "format_report"]

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
    num_processes: int = 1

    def to_dict(self, **extra) -> dict[str, Any]:
        out = {
            **extra,
            "dataset": self.info.name,
            "dataset_source": self.info.source,
            "layout": self.info.layout,
            "num_images": self.num_images,
            "num_processes": self.num_processes,
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
        raise EvaluationError(f"the model predicts {config.num_labels} classes but the dataset ({info.name}) has "
                         f"{info.num_labels}: evaluate a model trained on this dataset")
    return info


class EvaluationError(ValueError):
    """A dataset the model cannot be evaluated on, or images that could not be evaluated (unreadable, mismatched or
    out-of-range annotations); the message names them. Raised on every process after the others finished, so no
    process waits forever."""


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
    num_workers: int = 0,
    processes: Processes | None = None,
    save_predictions: str | os.PathLike | None = None,
    prediction_ids: str = "dataset",
    allow_out_of_range_labels: bool = False,
    names: list[str] | None = None,
) -> EvaluationResult:
    """Run the test protocol over ``dataset`` (rows with an ``image`` and an ``annotation``: paths, bytes, PIL
    images or arrays, e.g. from :func:`hf_seg.data.load_segmentation_dataset`) and return the metrics.

    Args:
        mode, crop_size, stride: override ``model.config.test_mode``/``test_crop_size``/``test_stride``.
        aug_test: multi-scale + flip TTA (``scales`` default ``config.test_scales`` or mmseg's 0.5..1.75, ``flip``
            default True).
        batch_size: images per forward in whole mode (images of the same size are grouped), crops per forward in
            slide mode.
        num_workers: ``DataLoader`` worker processes decoding and preprocessing (0: in this process).
        processes: this process's place in a distributed run (:func:`hf_seg.distributed.init_processes`); each
            process evaluates its share of the images and the confusion matrices are summed once at the end.
        save_predictions: folder for one label PNG per image (names relative to the images' common folder), in the
            dataset's stored ids (``prediction_ids="dataset"``: Cityscapes labelIds, ADE20K 1..150, as the
            benchmark servers take them) or class indices (``"train"``).
        allow_out_of_range_labels: count annotation values outside the classes as ``evaluate``'s mean_iou does
            (with a note) instead of refusing the file.
    """
    info = _resolve_info(info, model)
    processes = processes or Processes(device=torch.device(device) if device is not None else
                                       next(model.parameters()).device)
    device = processes.device
    dtype = dtype or next(model.parameters()).dtype
    protocol = TestProtocol.resolve(model.config, mode=mode, crop_size=crop_size, stride=stride, aug_test=aug_test,
                                    scales=scales, flip=flip)
    notes = list(info.notes)
    processor_reduce = bool(getattr(processor, "do_reduce_labels", info.reduce_labels))
    if processor_reduce != info.reduce_labels:
        notes.append(f"the processor's do_reduce_labels={processor_reduce} differs from the dataset's "
                     f"reduce_labels={info.reduce_labels}; the dataset's convention is used for the annotations")

    count = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    rows = undecoded(dataset, [image_column, label_column])
    names = names if names is not None else image_names(rows, image_column)
    images_per_batch = batch_size if protocol.mode == "whole" and batch_size else 1
    plan = plan_batches(count, images_per_batch, header_size_of(rows, image_column) if images_per_batch > 1
                        else None)
    mine = processes.shard(plan)
    data = InferenceDataset(rows, processor, protocol.scales, label_fn=info.convert_labels,
                            label_check=LabelCheck(info.num_labels, info.ignore_index, allow_out_of_range_labels),
                            names=names, image_column=image_column, label_column=label_column)
    loader = make_loader(data, mine, num_workers=num_workers, pin_memory=device.type == "cuda")
    writer = None
    if save_predictions is not None:
        writer = PredictionWriter(prediction_paths(save_predictions, relative_names(names, count)),
                                  id_table=label_id_table(info, prediction_ids))
    metric = ConfusionMatrix(info.num_labels, ignore_index=info.ignore_index)
    my_images = sum(len(b) for b in mine)
    bar = None
    if progress and processes.is_main:
        from tqdm.auto import tqdm

        desc = "evaluating" + (f" (process 0 of {processes.world_size})" if processes.distributed else "")
        bar = tqdm(total=my_images, desc=desc, unit="img", dynamic_ncols=True)
    failures: list[str] = []
    images = windows = out_of_range = missing = 0
    wait = 0.0
    start = time.perf_counter()
    with torch.no_grad():
        iterator = iter(loader)
        while True:
            t0 = time.perf_counter()
            batch = next(iterator, None)
            wait += time.perf_counter() - t0
            if batch is None:
                break
            for name, message in batch["errors"]:
                failures.append(message)
                print(f"evaluate: error: {message}", file=sys.stderr, flush=True)
            if failures:
                break  # this process stops; the others finish and every process raises below
            missing += len(batch.get("missing", ()))
            if "views" not in batch:
                continue
            views = [v.to(device=device, dtype=dtype, non_blocking=True) for v in batch["views"]]
            if protocol.mode == "slide":
                windows += sum(num_windows(*v.shape[-2:], protocol.crop_size, protocol.stride) for v in views) * (
                    len(batch["indices"]) * (2 if protocol.flip else 1))
            prediction = protocol.labels(model, views, batch["size"], batch["valid"],
                                         batch_size=batch_size if protocol.mode == "slide" else None)
            metric.update(prediction, batch["labels"].to(device=device, non_blocking=True))
            out_of_range += batch["out_of_range"]
            if writer is not None:
                writer.submit(batch["indices"], prediction.cpu().numpy())
            images += len(batch["indices"])
            if bar is not None:
                bar.update(len(batch["indices"]))
                if not processes.distributed and (images % 10 == 0 or images == my_images):
                    bar.set_postfix(mIoU=f"{100 * float(metric.compute()['mean_iou']):.2f}")
        del iterator
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if writer is not None:
        try:
            writer.close()
        except OSError as err:
            failures.append(f"writing predictions: {err}")
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()

    # one sum of the per-process figures, one of the confusion matrices
    stats = torch.zeros((processes.world_size, 7), dtype=torch.float64)
    stats[processes.rank] = torch.tensor([images, windows, wall, wait, len(failures), out_of_range, missing],
                                         dtype=torch.float64)
    processes.sum(stats)
    if int(stats[:, 4].sum()) > 0:
        where = "" if failures else " (in another process: see its messages above)"
        raise EvaluationError(f"{int(stats[:, 4].sum())} image(s) could not be evaluated{where}"
                              + (f"; first: {failures[0]}" if failures else ""))
    if processes.distributed:
        metric.all_reduce()
    total_images = int(stats[:, 0].sum())
    total_out_of_range, total_missing = int(stats[:, 5].sum()), int(stats[:, 6].sum())
    if total_out_of_range:
        notes.append(f"{total_out_of_range} annotated pixels hold values outside the {info.num_labels} classes and "
                     "the ignore index; counted as `evaluate`'s mean_iou does (--allow-out-of-range-labels)")
    if total_missing:
        notes.append(f"{total_missing} image(s) without an annotation were not evaluated")

    out = metric.compute()
    metrics = {
        "mean_iou": out["mean_iou"], "mean_accuracy": out["mean_accuracy"], "overall_accuracy": out["overall_accuracy"],
        "mIoU": 100 * out["mean_iou"], "mAcc": 100 * out["mean_accuracy"], "aAcc": 100 * out["overall_accuracy"],
    }
    per_category = [{"id": i, "name": info.id2label.get(i, str(i)), "iou": out["per_category_iou"][i],
                     "accuracy": out["per_category_accuracy"][i]} for i in range(info.num_labels)]
    protocol_record = {
        "test_mode": protocol.mode, "crop_size": _listed(protocol.crop_size), "stride": _listed(protocol.stride),
        "aug_test": bool(aug_test), "scales": list(protocol.scales), "flip": protocol.flip,
        "batch_size": batch_size, "pad_to_crop": protocol.pad_to_crop,
        "resize": _processor_summary(processor), "evaluated_at": "original image size",
        "ignore_index": info.ignore_index, "reduce_labels": info.reduce_labels,
        "label_map": bool(info.label_map), "align_corners": protocol.align_corners,
    }
    walls = stats[:, 2].clamp_min(1e-9)
    longest = float(stats[:, 2].max())
    compute = float((stats[:, 2] - stats[:, 3]).sum())
    timings = {
        "total_s": longest,
        "images_per_s": total_images / longest if longest > 0 else None,
        "model_s_per_image": compute / total_images if total_images else None,
        "data_s_per_image": float(stats[:, 3].sum()) / total_images if total_images else None,
        "windows": int(stats[:, 1].sum()) or None,
        "num_workers": num_workers,
        "per_process": [{"rank": r, "images": int(stats[r, 0]), "images_per_s": float(stats[r, 0] / walls[r]),
                         "data_wait_fraction": float(stats[r, 3] / walls[r])} for r in range(processes.world_size)],
    }
    return EvaluationResult(metrics, per_category, total_images, protocol_record, timings, info,
                            metric.confusion_matrix, notes, num_processes=processes.world_size)


def _listed(value):
    return list(value) if isinstance(value, (list, tuple)) else value


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


def _optimization(model) -> dict[str, Any] | None:
    """What ``optimize_for_inference`` did (None: the model ran as loaded)."""
    report = getattr(model, "hf_seg_inference_optimization", None)
    return None if report is None else report.to_dict()


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
    if len(values) > 2:
        raise ValueError(f"expected H [W], got {len(values)} values")
    return [values[0], values[0]] if len(values) == 1 else list(values[:2])


def run(args) -> dict[str, Any]:
    """``hf-seg evaluate``: evaluate, print the report and write the files (process 0). Under
    ``accelerate launch --cpu --num_processes N`` when accelerate started a single process, the N processes are
    started here (``hf_seg.training.launch``) and this process exits with their status."""
    from .training.launch import relaunch_if_single_cpu_process

    status = relaunch_if_single_cpu_process("hf_seg.evaluation", command_argv("evaluate"))
    if status is not None:
        raise SystemExit(status)
    processes = init_processes(args.device)
    device = processes.device
    dtype = DTYPES[args.dtype]
    t0 = time.perf_counter()
    model, processor, how = load_model_and_processor(args.model, device=device, dtype=dtype)
    num_parameters = sum(p.numel() for p in model.parameters())  # as loaded (folding removes the BatchNorms')
    if not args.no_fuse:  # the command owns the model: rewrite it for inference (the same on every process)
        from .fusion import example_input, optimize_for_inference

        optimize_for_inference(model, example_input(model, _size_arg(args.crop_size)))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = load_segmentation_dataset(args.dataset, split=args.split)
    split = next(iter(data))
    dataset, info = data[split], data.info
    data_s = time.perf_counter() - t0
    missing = data.missing_labels.get(split, [])
    if missing and processes.is_main:
        print(f"evaluate: {len(missing)} image(s) of {split} have no annotation and are not evaluated (e.g. "
              f"{missing[0]})", file=sys.stderr)
    num_workers = args.num_workers if args.num_workers is not None else default_num_workers(processes)
    result = evaluate_segmentation(
        model, processor, dataset, info, mode=args.mode, crop_size=_size_arg(args.crop_size),
        stride=_size_arg(args.stride), aug_test=args.aug_test or bool(args.scales), scales=args.scales,
        flip=False if args.no_flip else None, batch_size=args.batch_size, max_samples=args.max_samples,
        dtype=dtype, progress=not args.no_progress, num_workers=num_workers, processes=processes,
        save_predictions=args.save_predictions, prediction_ids=args.prediction_ids,
        allow_out_of_range_labels=args.allow_out_of_range_labels)
    if missing:
        result.notes.append(f"{len(missing)} image(s) of the split have no annotation file and were not evaluated")
    if how == "zoo preset (random weights)":
        result.notes.append(f"{args.model!r} is a zoo preset: RANDOM weights, so these numbers measure an untrained "
                            f"model (evaluate a converted or finetuned folder for real ones)")
    result.timings.update({"model_load_s": load_s, "dataset_index_s": data_s})
    config = model.config
    record = result.to_dict(
        model=args.model, model_type=getattr(config, "model_type", None), model_loaded_as=how,
        num_parameters=num_parameters, split=split,
        inference_optimization=_optimization(model),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        environment=_environment(device, dtype), command=" ".join(sys.argv),
    )
    if processes.is_main:
        print(format_report(result, per_class=not args.quiet))
        for note in result.notes:
            print(f"note: {note}")
        if args.output:
            _write_atomic(args.output, lambda path: path.write_text(json.dumps(record, indent=1) + "\n"))
            print(f"wrote {args.output}")
        if args.confusion_out:
            _write_atomic(args.confusion_out, lambda path: np.save(path, result.confusion, allow_pickle=False),
                          suffix=".npy")
            print(f"wrote {args.confusion_out}")
        if args.save_predictions:
            print(f"wrote {result.num_images} label maps to {args.save_predictions}")
    return record


def _write_atomic(path: Path, write, suffix: str = "") -> None:
    """``write(temporary)`` then rename to ``path``: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def main(argv=None, prog: str | None = None) -> int:
    """``scripts/evaluate.py`` / ``python -m hf_seg.evaluation``: the ``hf-seg evaluate`` command."""
    from .cli import run_command

    return run_command("evaluate", list(sys.argv[1:] if argv is None else argv), prog=prog)


if __name__ == "__main__":
    sys.exit(main())
