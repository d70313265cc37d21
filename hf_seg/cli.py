"""The ``hf-seg`` command line: convert, predict, models, kernels, demo."""

from __future__ import annotations

import argparse
import sys


def _convert(args) -> int:
    from .conversion import ConfigError, ConversionError, convert_original

    try:
        _, _, report = convert_original(args.config, args.checkpoint, args.output, family=args.family)
    except (ConfigError, ConversionError) as err:
        print(f"hf-seg convert: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def _predict(args) -> int:
    from .predict import predict_to_files

    written = predict_to_files(args.image, args.model, args.out, label_path=args.labels_out, device=args.device)
    for path in written:
        print(f"wrote {path}")
    return 0


def _models(args) -> int:
    from .model_cards import zoo_table_text
    from .zoo import list_models

    rows = list_models(args.family)
    if args.json:
        import json

        print(json.dumps([e.to_dict() for e in rows], indent=1))
        return 0
    print(zoo_table_text(rows))
    print(f"\n{len(rows)} models; paper numbers as the seeds report them (hub ids are where converted weights go)")
    return 0


def _kernels(args) -> int:
    from . import kernels

    try:
        built = kernels.build(verbose=True, cuda=args.cuda or None)
    except kernels.KernelUnavailableError as err:
        print(f"hf-seg kernels build: {err}", file=sys.stderr)
        return 1
    print(f"built {built}")
    return 0


def _demo(args) -> int:
    from .demo import main as demo_main

    return demo_main(args.demo_args)


def _evaluate(args) -> int:
    from .evaluation import main as evaluate_main

    return evaluate_main(args.evaluate_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-seg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an original config + checkpoint into a transformers folder")
    p.add_argument("--config", required=True, help="the original repository's config file (.py or .yaml)")
    p.add_argument("--checkpoint", required=True, nargs="+", help="original checkpoint file(s)")
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument("--family", help="refuse configs of any other family")
    p.set_defaults(func=_convert)

    p = sub.add_parser("predict", help="segment an image and write a coloured overlay and the label PNG")
    p.add_argument("image")
    p.add_argument("--model", required=True, help="zoo name, converted folder or hub id")
    p.add_argument("--out", required=True, help="overlay PNG to write")
    p.add_argument("--labels-out", help="label PNG to write (default: next to --out, *_labels.png)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_predict)

    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--family")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_models)

    p = sub.add_parser("kernels", help="compiled kernels")
    p.add_argument("action", choices=["build"])
    p.add_argument("--cuda", action="store_true", help="also build the CUDA kernel (default: when a GPU is present)")
    p.set_defaults(func=_kernels)

    p = sub.add_parser("demo", help="finetune a compact model on bundled CamVid images, evaluate it, draw predictions",
                       add_help=False)
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments of `hf-seg demo --help`")
    p.set_defaults(func=_demo)

    p = sub.add_parser("evaluate", help="mIoU with the paper's test protocol (scripts/evaluate.py)", add_help=False)
    p.add_argument("evaluate_args", nargs=argparse.REMAINDER, help="arguments of `hf-seg evaluate --help`")
    p.set_defaults(func=_evaluate)
    return parser


# subcommands that own their whole argument list (argparse's REMAINDER cannot pass a leading --flag through)
_PASS_THROUGH = {"demo": _demo, "evaluate": _evaluate}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASS_THROUGH:
        key = f"{argv[0]}_args"
        return _PASS_THROUGH[argv[0]](argparse.Namespace(**{key: argv[1:]}))
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
