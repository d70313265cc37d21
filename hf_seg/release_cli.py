"""The command line of a release (``scripts/release.py``): arguments in, :func:`hf_seg.release.release` run, what
was written (and would be or was uploaded) printed."""

from __future__ import annotations

from .release import DEFAULT_RTOL, ReleaseError, release


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="release.py",
        description="Convert an original checkpoint of a zoo row, verify it against the original outputs, write the "
                    "hub folder (weights, config, processor config, model card) and, with --push, upload it.")
    parser.add_argument("--row", required=True, help="zoo row name (`hf-seg models` lists them)")
    parser.add_argument("--original-checkpoint", required=True, nargs="+", help="original checkpoint file(s)")
    parser.add_argument("--original-config", required=True, help="the original repository's config file")
    parser.add_argument("--output", required=True, help="hub folder to write")
    parser.add_argument("--expected", help="safetensors with the original 'logits' on --input")
    parser.add_argument("--input", help="safetensors with the 'pixel_values' to verify on")
    parser.add_argument("--input-size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                        help="random input size when recomputing with the original code (default 128 128)")
    parser.add_argument("--window", type=int, nargs=4, metavar=("Y", "X", "H", "W"),
                        help="the --expected logits are of this window of --input (default: from a meta.json next to "
                             "--expected with a 'slide' entry, as the parity fixtures store it)")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="logits tolerance relative to max |expected|")
    parser.add_argument("--eval-json", action="append", default=[], help="evaluation JSON from scripts/evaluate.py")
    parser.add_argument("--no-verify", action="store_true", help="release without a parity check (the card says so)")
    parser.add_argument("--overwrite", action="store_true", help="replace the release files in a non-empty --output")
    parser.add_argument("--push", action="store_true", help="upload to the hub (network and a token needed)")
    parser.add_argument("--repo-id", help="hub repo (default: the row's hub id)")
    parser.add_argument("--token", help="hub token (default: HF_TOKEN / the stored login)")
    parser.add_argument("--private", action="store_true", help="create the hub repo private")
    return parser


def main(argv=None) -> int:
    import sys

    from .conversion import ConfigError, ConversionError

    args = build_parser().parse_args(argv)
    try:
        result = release(args.row, args.original_checkpoint, args.original_config, args.output,
                         expected=args.expected, input_path=args.input, eval_jsons=args.eval_json, push=args.push,
                         repo_id=args.repo_id, token=args.token, private=args.private, no_verify=args.no_verify,
                         overwrite=args.overwrite, input_size=args.input_size, rtol=args.rtol,
                         window=args.window)
    except (KeyError, ReleaseError, ConfigError, ConversionError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"release: {message}", file=sys.stderr)
        return 2
    for message in result.messages:
        print(message)
    if result.parity is not None:
        print(f"parity: {result.parity['method']}: logits max abs diff {result.parity['max_abs_diff']:.3g} "
              f"<= {result.parity['tolerance']:.3g} on {result.parity['input_shape']}")
    print(f"wrote {result.output}:")
    for name, size in result.files.items():
        print(f"  {name}  {_human(size)}")
    if result.pushed_url:
        print(f"pushed to {result.pushed_url}")
    else:
        print(f"dry run: would upload these {len(result.files)} files to https://huggingface.co/{result.repo_id} "
              "(pass --push; needs network and a token: HF_TOKEN or `hf auth login`)")
    return 0
