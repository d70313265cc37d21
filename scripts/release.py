#!/usr/bin/env python
"""Release one zoo row to the hub: convert, verify against the original outputs, write the folder, push on request.

    python scripts/release.py --row NAME --original-checkpoint CKPT [CKPT ...] --original-config CFG --output DIR \
        [--expected EXPECTED.safetensors --input INPUT.safetensors] [--eval-json EVAL.json] [--push]

Without --push this is a dry run: the folder is written and the files that would be uploaded are listed. Parity:
--expected/--input (safetensors with 'logits' / 'pixel_values') compare the converted model's logits with stored
original outputs within 1e-4 relative; without them the original code recomputes them when it is importable
(CSAIL: mit_semseg). The converted config must be the row's preset architecture, otherwise nothing is written.
"""

import sys
from pathlib import Path

try:
    import hf_seg  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_seg.release import main

if __name__ == "__main__":
    sys.exit(main())
