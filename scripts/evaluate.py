#!/usr/bin/env python
"""Evaluate a segmentation model on a dataset with its paper's test protocol (mIoU / mAcc / aAcc + per class).

    python scripts/evaluate.py --model <preset|folder|hub id> --dataset /data/ADEChallengeData2016 --split val \
        [--mode whole|slide] [--aug-test] [--batch-size 8] [--max-samples 100] [--device cuda] [--dtype bf16] \
        [--output results.json]

The logic lives in ``hf_seg.evaluation`` (also behind the ``hf-seg`` CLI); see ``--help``.
"""

import os
import sys

# this file is named like the `evaluate` library: keep its folder off sys.path so `import evaluate` finds the library
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from hf_seg.evaluation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
