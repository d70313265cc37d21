#!/usr/bin/env python
"""Regenerate model_cards/<name>/README.md for every row of the hf_seg model zoo.

    python scripts/generate_model_cards.py                 # rewrite the cards whose text changed
    python scripts/generate_model_cards.py --check         # exit 1 if a card is stale/missing or has no zoo row
    python scripts/generate_model_cards.py --eval-json NAME=eval.json [...]   # attach our evaluation, then regenerate

Cards are built from the zoo (hf_seg.zoo) with huggingface_hub's ModelCard/ModelCardData/EvalResult. Files attached
next to a card are kept across regenerations: eval*.json (our evaluation, written by scripts/evaluate.py) fills the
"our evaluation" column; parity.json (written by scripts/release.py) records the release verification.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import hf_seg  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(ROOT / "model_cards"), help="cards folder (default: model_cards/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any card is stale")
    parser.add_argument("--eval-json", action="append", default=[], metavar="NAME=FILE",
                        help="attach an evaluation JSON from scripts/evaluate.py to the card of zoo row NAME")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="regenerate these rows only")
    args = parser.parse_args(argv)

    from hf_seg.model_cards import attach_eval_json, generate_cards
    from hf_seg.zoo import list_models

    if args.check and args.eval_json:
        parser.error("--check and --eval-json exclude each other")
    for item in args.eval_json:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--eval-json wants NAME=FILE, got {item!r}")
        try:
            target = attach_eval_json(args.output, name, path)
        except (KeyError, ValueError) as err:
            print(f"generate_model_cards: {err}", file=sys.stderr)
            return 2
        print(f"attached {path} as {target}")

    result = generate_cards(args.output, check=args.check, names=args.only)
    families: dict[str, int] = {}
    for entry in list_models():
        families[entry.family] = families.get(entry.family, 0) + 1
    summary = ", ".join(f"{f}: {n}" for f, n in families.items()) or "none"
    if args.check:
        for name in result.stale:
            print(f"stale: {name}")
        for name in result.orphans:
            print(f"no zoo row: {name}")
        if result.stale or result.orphans:
            print(f"{len(result.stale)} stale, {len(result.orphans)} orphan card(s); run "
                  "python scripts/generate_model_cards.py", file=sys.stderr)
            return 1
        print(f"{len(result.unchanged)} files up to date: {len(list_models())} cards and the index ({summary})")
        return 0
    for name in result.written:
        print(f"wrote {Path(args.output) / name if name == 'README.md' else Path(args.output) / name / 'README.md'}")
    for name in result.orphans:
        print(f"warning: {name} has a card but no zoo row", file=sys.stderr)
    print(f"{len(result.written)} written, {len(result.unchanged)} unchanged ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
