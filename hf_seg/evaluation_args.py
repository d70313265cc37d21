"""The ``hf-seg evaluate`` / ``scripts/evaluate.py`` command line (standard library only: ``--help`` needs no torch);
:mod:`hf_seg.evaluation` runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["DTYPE_NAMES", "build_parser"]

# --dtype spellings -> torch dtype names
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}


def build_parser(parser: argparse.ArgumentParser | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog=prog, description="Evaluate a segmentation model (mIoU / mAcc / aAcc) with its paper's test protocol.")
    parser.add_argument("--model", required=True, help="zoo preset name, converted model folder or hub id")
    parser.add_argument("--dataset", required=True,
                        help="dataset folder (ADE20K, Cityscapes, Pascal-Context, COCO-Stuff, CamVid layouts), "
                             "save_to_disk folder or hub dataset name")
    parser.add_argument("--split", default="validation", help="split (aliases: val, training, ...)")
    parser.add_argument("--mode", choices=["whole", "slide"], default=None, help="default: config.test_mode")
    parser.add_argument("--crop-size", type=int, nargs="+", default=None, help="slide crop (H [W])")
    parser.add_argument("--stride", type=int, nargs="+", default=None, help="slide stride (H [W])")
    parser.add_argument("--aug-test", action="store_true", help="multi-scale + flip test-time augmentation")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="TTA scale ratios (default with --aug-test: the model's config.test_scales, else "
                             "hf_seg.inference.DEFAULT_TTA_SCALES)")
    parser.add_argument("--no-flip", action="store_true", help="with --aug-test: scales only")
    parser.add_argument("--batch-size", type=int, default=None, help="crops per forward in slide mode")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPE_NAMES))
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no per-class table")
    return parser
