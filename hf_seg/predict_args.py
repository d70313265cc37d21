"""The ``hf-seg predict`` command line (standard library only: ``--help`` needs no torch); :mod:`hf_seg.predict`
runs it."""

from __future__ import annotations

import argparse

from .argtypes import non_negative_int, positive_int

__all__ = ["build_parser"]


def build_parser(parser: argparse.ArgumentParser | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog=prog,
        description="Segment images with the model's test protocol and write one label PNG per image (and "
                    "optionally a coloured overlay with a legend of the classes present). Unreadable files are "
                    "skipped with a message and the exit status is then 1. Runs on N processes under "
                    "`accelerate launch [--num_processes N] -m hf_seg.predict ...`.")
    parser.add_argument("inputs", nargs="+",
                        help="image files, folders (searched recursively), globs ('photos/**/*.jpg'), or - to read "
                             "one path a line from stdin")
    parser.add_argument("--model", required=True,
                        help="converted/finetuned folder, zoo name (random weights) or hub id org/name")
    parser.add_argument("--out", required=True,
                        help="output folder: <out>/<name relative to its input>.png per image. (One image and an "
                             "--out ending in .png: the overlay is written there and the labels next to it as "
                             "*_labels.png.)")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <name>_overlay.png: the image blended with the class colours, with a legend")
    parser.add_argument("--overlay-dir", default=None, help="folder for the overlays (default: --out)")
    parser.add_argument("--no-legend", action="store_true", help="overlays without the colour legend")
    parser.add_argument("--labels-out", help="one-image form: label PNG to write (default: next to --out, "
                                             "*_labels.png)")
    parser.add_argument("--aug-test", action="store_true",
                        help="the model's multi-scale + flip test-time augmentation (config.test_scales)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="whole mode: images of one size per forward (default 1); slide mode: crops per forward")
    parser.add_argument("--num-workers", type=non_negative_int, default=None,
                        help="data-loading worker processes (default: 2 on CPU, up to 8 per GPU)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    parser.add_argument("--no-fuse", action="store_true",
                        help="run the model as loaded: no BatchNorm folding / channels_last rewrite for inference "
                             "(hf_seg.optimize_for_inference; also HF_SEG_NO_FUSE=1)")
    parser.add_argument("--no-progress", action="store_true")
    return parser
