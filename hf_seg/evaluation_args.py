"""The ``hf-seg evaluate`` / ``scripts/evaluate.py`` command line (standard library only: ``--help`` needs no torch);
:mod:`hf_seg.evaluation` runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .argtypes import non_negative_int, positive_float, positive_int

__all__ = ["DTYPE_NAMES", "build_parser"]

# --dtype spellings -> torch dtype names
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}


def build_parser(parser: argparse.ArgumentParser | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog=prog,
        description="Evaluate a segmentation model (mIoU / mAcc / aAcc) with its paper's test protocol. Runs on N "
                    "processes under `accelerate launch [--num_processes N] scripts/evaluate.py ...` (or `... -m "
                    "hf_seg.evaluation ...`): each process takes a share of the images, the confusion matrices are "
                    "summed once, process 0 prints the table and writes the files.")
    parser.add_argument("--model", required=True, help="zoo preset name, converted model folder or hub id")
    parser.add_argument("--dataset", required=True,
                        help="dataset folder (ADE20K, Cityscapes, Pascal-Context, COCO-Stuff, CamVid layouts), "
                             "save_to_disk folder or hub dataset name")
    parser.add_argument("--split", default="validation", help="split (aliases: val, training, ...)")
    parser.add_argument("--mode", choices=["whole", "slide"], default=None, help="default: config.test_mode")
    parser.add_argument("--crop-size", type=positive_int, nargs="+", default=None, help="slide crop (H [W])")
    parser.add_argument("--stride", type=positive_int, nargs="+", default=None, help="slide stride (H [W])")
    parser.add_argument("--aug-test", action="store_true", help="multi-scale + flip test-time augmentation")
    parser.add_argument("--scales", type=positive_float, nargs="+", default=None,
                        help="TTA scale ratios (default with --aug-test: the model's config.test_scales, else "
                             "hf_seg.inference.DEFAULT_TTA_SCALES)")
    parser.add_argument("--no-flip", action="store_true", help="with --aug-test: scales only")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="whole mode: images per forward (images of one size are batched; default 1); slide "
                             "mode: crops per forward (default: 1 on the CPU, all windows of an image on a GPU)")
    parser.add_argument("--num-workers", type=non_negative_int, default=None,
                        help="data-loading worker processes per process (decode, resize, normalise, labels); "
                             "default: 2 on CPU, up to 8 per GPU; 0 loads in the main process")
    parser.add_argument("--max-samples", type=positive_int, default=None, help="evaluate the first N images only")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:1, ... (auto: cuda when available; under a launcher each process "
                             "uses the GPU of its local rank)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPE_NAMES))
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--confusion-out", type=Path, default=None, metavar="FILE.npy",
                        help="write the confusion matrix (rows: annotation, columns: prediction; int64) as .npy")
    parser.add_argument("--save-predictions", type=Path, default=None, metavar="DIR",
                        help="write one label PNG per image (same relative names as the images)")
    parser.add_argument("--prediction-ids", choices=["dataset", "train"], default="dataset",
                        help="ids in the saved PNGs: the dataset's stored ids as benchmark servers take them "
                             "(Cityscapes labelIds, ADE20K 1..150; default) or the class indices 0..N-1")
    parser.add_argument("--allow-out-of-range-labels", action="store_true",
                        help="count annotation values outside the classes as `evaluate`'s mean_iou does (a note is "
                             "added) instead of refusing the file")
    parser.add_argument("--no-fuse", action="store_true",
                        help="run the model as loaded: no BatchNorm folding / channels_last rewrite for inference "
                             "(hf_seg.optimize_for_inference; also HF_SEG_NO_FUSE=1)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no per-class table")
    return parser
