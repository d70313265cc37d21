#!/usr/bin/env python
"""Evaluation throughput: the model alone vs the whole evaluate loop on the same images, in one run.

    python scripts/benchmark_evaluate.py --model semask-t-fpn-ade20k-512 --images 16 --repeats 3 --workers 2

Three ways through the same ``--images`` images (CamVid photos, 480x360, read from disk; the zoo preset's random
weights -- the architecture is what is timed), interleaved repeat by repeat (the order rotates) so that a change in
machine load hits all three alike:

  model only   the test protocol's forwards (whole: forward + resize to the input; slide: the windows) on tensors
               preprocessed before timing starts
  evaluate     ``hf_seg.evaluation.evaluate_segmentation`` with ``--workers`` DataLoader workers: read, decode,
               resize, normalise, labels, forward, upsample + argmax at the original size, confusion matrix
  serial       the loop evaluate ran before it had workers: the same steps one image at a time in this process
               (rows decoded by ``datasets``, the processor called per image, full-resolution scores, then argmax)

It prints images/s of each (median over repeats), ``evaluate / model only`` (1.0 = data loading and post-processing
cost nothing) and ``evaluate / serial`` (the speed-up over the old loop). The annotations are CamVid's, read with
ADE20K's conventions (values 0..11 are valid ADE20K ids); they only feed the metric, which is not what is measured.
The machine load (``os.getloadavg``) is printed before and after: figures from a busy machine are not comparable with
a quiet one's, their ratios are more robust.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CAMVID_CANDIDATES = (Path("/work/shared/data/camvid"), ROOT / "demo_data" / "camvid", ROOT / "tests" / "data" / "camvid")


def camvid_pairs(root: Path | None, count: int) -> list[tuple[str, str]]:
    roots = [root] if root is not None else [r for r in CAMVID_CANDIDATES if r.is_dir()]
    pairs = []
    for base in roots:
        for split in ("test", "val", "train"):
            images = base / split
            if not images.is_dir():
                continue
            for image in sorted(images.glob("*.png")):
                label = base / f"{split}annot" / image.name
                if label.is_file():
                    pairs.append((str(image), str(label)))
        if len(pairs) >= count:
            break
    if len(pairs) < count:
        sys.exit(f"only {len(pairs)} CamVid images found (looked in {[str(r) for r in roots]}); pass --images "
                 f"{len(pairs)} or --data")
    return pairs[:count]


# --------------------------------------------------------------------------------------------------- the three
def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(model, protocol, inputs) -> int:
    """The protocol's forwards on ready tensors (already on the model's device)."""
    from hf_seg.inference import slide_inference, whole_inference

    with torch.no_grad():
        for pixel_values in inputs:
            if protocol.mode == "slide":
                slide_inference(model, pixel_values, protocol.crop_size, protocol.stride,
                                pad_to_crop=protocol.pad_to_crop, align_corners=protocol.align_corners)
            else:
                whole_inference(model, pixel_values, protocol.align_corners)
    _sync(pixel_values.device)
    return len(inputs)


def end_to_end(model, processor, dataset, info, workers: int) -> int:
    from hf_seg.evaluation import evaluate_segmentation

    result = evaluate_segmentation(model, processor, dataset, info, progress=False, num_workers=workers)
    return result.num_images


def serial_loop(model, processor, dataset, info) -> int:
    """The evaluate loop as it was before workers: everything in this process, one image after the other."""
    from hf_seg.data.inference_data import make_views
    from hf_seg.inference import predict
    from hf_seg.metrics import MeanIoU

    device = next(model.parameters()).device
    metric = MeanIoU(info.num_labels, ignore_index=info.ignore_index)
    with torch.no_grad():
        for index in range(len(dataset)):
            row = dataset[index]
            image = row["image"].convert("RGB")
            labels = info.convert_labels(np.array(row["annotation"]))
            (pixel_values, valid), = make_views(processor, image, [1.0])
            scores = predict(model, pixel_values.to(device), scales=[1.0], flip=False, valid_size=valid,
                             output_size=labels.shape[-2:])
            metric.update(scores.argmax(dim=1)[0], torch.from_numpy(labels).to(device))
    metric.compute()
    return len(dataset)


# --------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="semask-t-fpn-ade20k-512", help="zoo preset, folder or hub id")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the evaluate run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--data", type=Path, default=None, help="a CamVid folder (default: the bundled copies)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    from hf_seg.data import dataset_info, pairs_to_dataset
    from hf_seg.data.inference_data import make_views
    from hf_seg.evaluation import load_model_and_processor
    from hf_seg.image_io import decode_image
    from hf_seg.inference import TestProtocol

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a preset's "random weights" note
        model, processor, how = load_model_and_processor(args.model, device=args.device)
    pairs = camvid_pairs(args.data, args.images)
    dataset = pairs_to_dataset(pairs)
    info = dataset_info("ade20k") if model.config.num_labels == 150 else dataset_info("camvid")
    if model.config.num_labels != info.num_labels:
        sys.exit(f"{args.model} has {model.config.num_labels} classes: use an ADE20K (150) or CamVid (11) model")
    protocol = TestProtocol.resolve(model.config)
    inputs = [make_views(processor, decode_image(image), [1.0])[0][0].to(args.device) for image, _ in pairs]
    print(f"{args.model} ({how}, {protocol.mode}), {len(pairs)} CamVid images 480x360 -> "
          f"{tuple(inputs[0].shape[-2:])}, {args.device}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"evaluate with {args.workers} workers; load average before {load_before[0]:.2f}")

    runs = {
        "model only": lambda: model_only(model, protocol, inputs),
        "evaluate": lambda: end_to_end(model, processor, dataset, info, args.workers),
        "serial": lambda: serial_loop(model, processor, dataset, info),
    }
    model_only(model, protocol, inputs[:1])  # warm-up (allocator, kernels)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        for name in order:
            start = time.perf_counter()
            count = runs[name]()
            rates[name].append(count / (time.perf_counter() - start))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{n} {rates[n][-1]:.3f} img/s" for n in names), flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    load_after = os.getloadavg()
    print()
    for name in names:
        print(f"{name:>11}: {median[name]:.3f} images/s (median of {args.repeats}; "
              f"{', '.join(f'{v:.3f}' for v in rates[name])})")
    print(f"evaluate / model only: {median['evaluate'] / median['model only']:.2f}x   (goal >= 0.90)")
    print(f"evaluate / serial:     {median['evaluate'] / median['serial']:.2f}x   (goal >= 1.5)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
