#!/usr/bin/env python
"""Evaluate a segmentation model on a dataset with its paper's test protocol (mIoU / mAcc / aAcc + per class).

    python scripts/evaluate.py --model <preset|folder|hub id> --dataset /data/ADEChallengeData2016 --split val \
        [--mode whole|slide] [--aug-test] [--batch-size 8] [--max-samples 100] [--device cuda] [--dtype bf16] \
        [--output results.json]

The same as ``hf-seg evaluate`` (pip installs have that command; this script is kept for checkouts); see ``--help``.
"""

import os
import sys

# this file is named like the `evaluate` library: keep its folder off sys.path so `import evaluate` finds the library
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from hf_seg.cli import run_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("evaluate", sys.argv[1:]))
