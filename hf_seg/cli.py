"""The ``hf-seg`` command line: models, predict, evaluate, finetune, demo, convert, kernels.

Every command owns its parser (``hf-seg COMMAND --help``) and imports what it needs only once its arguments are
parsed; this module imports nothing but the standard library. The console script enters through :mod:`hf_seg_cli`,
before hf_seg's package ``__init__`` (torch, transformers, the Auto-class registration) has run, so ``--help``,
``--version`` and argument errors answer at once; :func:`_complete_import` runs that ``__init__`` before a command.
Warnings print as one line each (``hf-seg COMMAND: UserWarning: ...``), without the source line.
Mistakes the user can fix (a mistyped model or dataset, an incomplete model folder, no network, a broken config)
end in ``hf-seg COMMAND: error: ...`` (no traceback) and exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

from .families import family_names

__all__ = ["COMMANDS", "UsageError", "build_parser", "main", "run_command"]


def _complete_import() -> None:
    """Run hf_seg's package ``__init__`` if the console script deferred it (see :mod:`hf_seg_cli`)."""
    package = sys.modules.get("hf_seg")
    complete = package.__dict__.pop("_complete_deferred_init", None) if package is not None else None
    if complete is not None:
        complete()
    else:
        import hf_seg  # noqa: F401


class UsageError(Exception):
    """A command-line value that names nothing (an unknown family, a missing image)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is the whole story (raised by hf_seg for input the user can fix)."""
    from .conversion import ConfigError, ConversionError
    from .data import DatasetLayoutError
    from .evaluation import EvaluationError
    from .image_io import ImageReadError
    from .predict import PredictError
    from .training.model_inputs import DatasetCheckError
    from .zoo import ModelLoadError

    return (UsageError, ModelLoadError, DatasetLayoutError, DatasetCheckError, ConfigError, ConversionError,
            EvaluationError, PredictError, ImageReadError)


# ----------------------------------------------------------------------------------------------------- commands
def _models_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="List the model zoo: every released row of the seeds' tables "
                                                       "with paper numbers, crop, test protocol and hub id.")
    p.add_argument("--family", help="only this family's rows (the family column of `hf-seg models`)")
    p.add_argument("--json", action="store_true", help="every field of every row as JSON")
    return p


def _check_family(name: str) -> None:
    """A ``--family`` value must name a family: an unknown one is an error, never an empty result."""
    from .families import families

    known = sorted(families())
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(f"unknown family {name!r}; {hint}hf_seg's families: {', '.join(known)}")


def _models(args) -> int:
    from .model_cards import zoo_table_text
    from .zoo import list_models

    if args.family is not None:
        _check_family(args.family)
    rows = [e for e in list_models() if args.family is None or e.family == args.family]
    if args.json:
        import json

        print(json.dumps([e.to_dict() for e in rows], indent=1))
        return 0
    print(zoo_table_text(rows))
    print(f"\n{len(rows)} models; paper numbers as the seeds report them (hub ids are where converted weights go)")
    return 0


def _predict_parser(prog: str) -> argparse.ArgumentParser:
    from .predict_args import build_parser as predict_parser

    return predict_parser(prog=prog)


def _predict(args) -> int:
    from .predict import run

    return run(args)


def _convert_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Convert an original config + checkpoint into a transformers "
                                                       "folder (config.json, model.safetensors, "
                                                       "preprocessor_config.json, conversion_report.json).")
    p.add_argument("--config", required=True, help="the original repository's config file (.py or .yaml)")
    p.add_argument("--checkpoint", required=True, nargs="+", help="original checkpoint file(s)")
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument("--family", help="refuse configs of any other family")
    return p


def _convert(args) -> int:
    from .conversion import convert_original

    if args.family is not None:
        _check_family(args.family)
    _, _, report = convert_original(args.config, args.checkpoint, args.output, family=args.family)
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def _kernels_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Build the compiled multi-scale deformable-attention kernel "
                                                       "ahead of time; without it a pure-PyTorch fallback runs.")
    p.add_argument("action", choices=["build"])
    p.add_argument("--cuda", action="store_true", help="also build the CUDA kernel (default: when a GPU is present)")
    return p


def _kernels(args) -> int:
    from . import kernels

    try:
        built = kernels.build(verbose=True, cuda=args.cuda or None)
    except kernels.KernelUnavailableError as err:
        print(f"hf-seg kernels build: {err}", file=sys.stderr)
        return 1
    print(f"built {built}")
    return 0


def _evaluate_parser(prog: str) -> argparse.ArgumentParser:
    from .evaluation_args import build_parser as evaluate_parser

    return evaluate_parser(prog=prog)


def _evaluate(args) -> int:
    from .evaluation import run

    run(args)
    return 0


def _demo_parser(prog: str) -> argparse.ArgumentParser:
    from .demo import build_parser as demo_parser

    return demo_parser(prog=prog)


def _demo(args) -> int:
    from .demo import run

    return run(args)


def _check_model(name: str) -> None:
    """A mistyped ``--model`` is answered before the command's code (torch, timm, the Trainer) is imported."""
    from .model_loading import ModelLoadError, check_name

    try:
        check_name(name)
    except ModelLoadError as err:
        raise UsageError(str(err)) from None


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` written out in full (``--flag VALUE`` or ``--flag=VALUE``), else None."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _finetune(argv: list[str], prog: str) -> int:
    """Finetune parses its own arguments: ours and every ``TrainingArguments`` flag (which needs torch), so ``--help``
    shows ours and names the common Trainer flags; ``--help-all`` lists everything."""
    if "--help-all" in argv:
        _complete_import()
        from .training.arguments import build_parser as finetune_parser

        finetune_parser(prog).print_help()
        return 0
    if "-h" in argv or "--help" in argv:
        from .training.arguments import build_parser as finetune_parser

        finetune_parser(prog, trainer_arguments=False).print_help()
        return 0
    model = _flag_value(argv, "--model")  # its full parser needs transformers' TrainingArguments: check before that
    if model is not None:
        _check_model(model)
    _complete_import()
    from .training.finetune import main as finetune_main

    return finetune_main(argv, prog=prog)


@dataclass(frozen=True)
class Command:
    help: str
    parser: Callable[[str], argparse.ArgumentParser] | None  # None: the command parses argv itself (run_argv)
    run: Callable | None = None  # run(parsed args) -> exit status
    run_argv: Callable[[list[str], str], int] | None = None  # run_argv(argv, prog) -> exit status


COMMANDS: dict[str, Command] = {
    "models": Command("list the model zoo (paper numbers, crop, test protocol, hub id)", _models_parser, _models),
    "predict": Command("segment images (files, folders, globs, - for stdin): label PNGs, overlays with a legend",
                       _predict_parser, _predict),
    "evaluate": Command("mIoU / mAcc / aAcc on a dataset with the paper's test protocol", _evaluate_parser, _evaluate),
    "finetune": Command("finetune a model on a segmentation dataset (transformers.Trainer)", None, run_argv=_finetune),
    "demo": Command("finetune a compact model on the bundled CamVid images from scratch, evaluate it, draw predictions",
                    _demo_parser, _demo),
    "convert": Command("convert an original config + checkpoint into a transformers folder", _convert_parser,
                       _convert),
    "kernels": Command("build the compiled deformable-attention kernel ahead of time", _kernels_parser, _kernels),
}


def run_command(name: str, argv: list[str], prog: str | None = None) -> int:
    """Parse ``argv`` with command ``name``'s parser, then run it; user mistakes end in one line and status 2."""
    command, prog = COMMANDS[name], prog or f"hf-seg {name}"
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_, **__: f"{prog}: {category.__name__}: {message}\n"
    try:
        if command.run_argv is not None:
            return command.run_argv(argv, prog)
        args = command.parser(prog).parse_args(argv)
        if isinstance(getattr(args, "model", None), str):
            _check_model(args.model)
        _complete_import()
        return command.run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, UsageError) or isinstance(err, _user_errors()):
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
        raise
    finally:
        warnings.formatwarning = formatwarning


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="hf-seg", description=f"Semantic segmentation models ({', '.join(family_names())}) as Hugging Face "
                                   "transformers models. `hf-seg COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"hf-seg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    parser = build_parser()
    if argv and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        parser.error(f"unknown command {argv[0]!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                      f" (commands: {', '.join(COMMANDS)})"))
    parser.parse_args(argv)  # --help, --version, or the usage error of a missing command
    return 2


if __name__ == "__main__":
    sys.exit(main())
