#!/usr/bin/env python
"""Convert an original checkpoint of any hf_seg family into a transformers folder.

    python scripts/convert_original.py --config ORIGINAL_CONFIG --checkpoint CKPT [CKPT ...] --output DIR

ORIGINAL_CONFIG is the original repository's own config (CSAIL: yacs .yaml; SETR/RegionProxy/SeMask/UN-EPT:
mmseg-style .py, ``_base_`` resolved relative to the file). Exits non-zero, listing every problem, when a source
tensor is unknown, a model tensor is missing, or shapes disagree.
"""

import sys

from hf_seg.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
