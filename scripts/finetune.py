#!/usr/bin/env python
"""Finetune an hf_seg model on a segmentation dataset: the same as ``hf-seg finetune`` (see its ``--help``).

    accelerate launch scripts/finetune.py --model setr-pup-ade20k-512 --dataset path/to/ADEChallengeData2016 \
        --output-dir runs/setr --recipe original
    accelerate launch --num_processes 2 --cpu scripts/finetune.py --model DIR --dataset ../data/camvid --max-steps 20
"""

import sys

from hf_seg.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("finetune", sys.argv[1:]))
