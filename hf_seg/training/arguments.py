"""The finetune command line: ``FinetuneArguments`` (ours) next to transformers' ``TrainingArguments``.

:func:`parse_args` turns ``argv`` into both dataclasses and remembers which ``TrainingArguments`` flags the user
gave explicitly (the recipe fills in the others).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from ..argtypes import non_negative_int, positive_float, positive_int

__all__ = ["FinetuneArguments", "build_parser", "parse_args", "COMMON_TRAINER_FLAGS", "DESCRIPTION"]

DESCRIPTION = "Finetune any hf_seg model on a segmentation dataset with transformers.Trainer."


@dataclass
class FinetuneArguments:
    model: str = field(metadata={"help": "zoo preset name, converted/pretrained model folder or hub id"})
    dataset: str | None = field(default=None, metadata={
        "help": "dataset folder (ADE20K/Cityscapes/Pascal-Context/COCO-Stuff/CamVid layout) or hub dataset id with "
                "image + annotation columns (required unless --dry-run)"})
    recipe: str = field(default="original", metadata={
        "help": "'original' (the recipe the model was trained with: the one its config carries, its zoo row's, or "
                "its family's for the architecture), 'finetune' (short AdamW schedule), a recipe name "
                "(hf_seg.training.list_recipes()) or a zoo row name"})
    dry_run: bool = field(default=False, metadata={
        "help": "print the fully resolved recipe as JSON (optimizer groups, schedule, batch, augmentation, notes) and "
                "exit without training; the same JSON is written as recipe.json next to the checkpoints of a run"})
    recipe_scaling: str = field(default="accumulate", metadata={
        "help": "fit the recipe's images/step to this run: 'accumulate' (gradient accumulation, same lr/steps), "
                "'linear' (linear lr scaling, steps for the same epochs) or 'none'",
        "choices": ["accumulate", "linear", "none"]})
    crop_size: list[int] | None = field(default=None, metadata={
        "help": "training crop H [W] (0: no crop, whole rescaled images)", "nargs": "+"})
    train_scale: list[int] | None = field(default=None, metadata={
        "help": "mmseg img_scale LONG SHORT of the random rescale (default: the dataset's)", "nargs": 2})
    ratio_range: list[float] | None = field(default=None, metadata={"help": "random rescale ratio LO HI", "nargs": 2})
    no_augmentation: bool = field(default=False, metadata={
        "help": "no random rescale, flip or photometric distortion (crops stay random unless --crop-size is unset)"})
    pad_small: bool = field(default=True, metadata={
        "help": "pad rescaled images smaller than the crop with the ignore index (--no-pad-small: refuse them)"})
    train_split: str = field(default="train")
    eval_split: str | None = field(default=None, metadata={
        "help": "split to evaluate on (default: validation/val/test, whichever exists; 'none' to skip)"})
    image_column: str = field(default="image")
    label_column: str = field(default="annotation")
    ignore_mismatched_sizes: bool = field(default=False, metadata={
        "help": "re-initialise the classifier when the model's classes differ from the dataset's"})
    check_samples: int = field(default=100, metadata={
        "help": "rows per split checked before training (label range, sizes); -1 = all"})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    sync_batchnorm: bool = field(default=True, metadata={"help": "SyncBatchNorm when distributed on GPUs"})
    freeze_batchnorm: bool = field(default=False, metadata={
        "help": "BatchNorm layers normalise with their running statistics and their affine parameters are not "
                "trained (an alternative when the per-process batch is much smaller than the original's)"})
    flip_target_fixes: bool = field(default=False, metadata={
        "help": "apply the model family's corrections to horizontally flipped extra training targets (e.g. mirrored "
                "direction angles), which the original code did not apply"})
    max_train_minutes: float | None = field(default=None, metadata={
        "help": "wall-clock budget: the lr schedule is shortened to the steps that fit and training stops there"})
    processor_kwargs: str | None = field(default=None, metadata={
        "help": "JSON dict of image-processor settings to change (e.g. the test-time resize) before training; "
                "saved with the model"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "start a fresh run in an --output-dir that holds another run (its checkpoints are removed)"})
    force_resume: bool = field(default=False, metadata={
        "help": "resume from a checkpoint although it is incomplete or was written by a run with other settings"})
    skip_nonfinite_steps: bool = field(default=False, metadata={
        "help": "skip optimizer steps whose loss or gradients are NaN/inf instead of stopping with an error"})


def _explicit(argv: list[str], name: str) -> bool:
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(a in flags or a.split("=", 1)[0] in flags for a in argv)


# TrainingArguments flags most runs set, named in the short --help (listing all of them needs torch: --help-all)
COMMON_TRAINER_FLAGS = ("--output-dir", "--max-steps", "--num-train-epochs", "--per-device-train-batch-size",
                        "--gradient-accumulation-steps", "--learning-rate", "--save-steps", "--resume-from-checkpoint",
                        "--seed", "--bf16", "--report-to", "--push-to-hub")


def _minus_one_or(smallest: int, what: str):
    """An argparse type: -1 (all / unset) or an integer >= ``smallest``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (value != -1 and value < smallest):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


# argparse types that refuse impossible values at parse time (HfArgumentParser sets each type from the field's
# annotation, so they are put on the parser's actions afterwards)
ARGUMENT_TYPES = {
    "per_device_train_batch_size": positive_int, "per_device_eval_batch_size": positive_int,
    "gradient_accumulation_steps": positive_int, "max_steps": _minus_one_or(1, "-1 or a positive integer"),
    "num_train_epochs": positive_float, "learning_rate": positive_float, "save_steps": positive_float,
    "logging_steps": positive_float, "eval_steps": positive_float, "save_total_limit": positive_int,
    "dataloader_num_workers": non_negative_int, "crop_size": non_negative_int, "train_scale": positive_int,
    "ratio_range": positive_float, "check_samples": _minus_one_or(0, "-1 (all) or an integer >= 0"),
    "max_train_samples": positive_int, "max_eval_samples": positive_int, "max_train_minutes": positive_float,
}


def _with_argument_types(parser):
    for action in parser._actions:
        if action.dest in ARGUMENT_TYPES:
            action.type = ARGUMENT_TYPES[action.dest]
    return parser


def build_parser(prog: str | None = None, trainer_arguments: bool = True):
    """The finetune parser: ``FinetuneArguments`` + ``TrainingArguments``, or (``trainer_arguments=False``, what
    ``--help`` shows) ours alone, which imports transformers' argument parser but not torch."""
    from transformers import HfArgumentParser

    if trainer_arguments:
        from transformers import TrainingArguments

        return _with_argument_types(HfArgumentParser((FinetuneArguments, TrainingArguments), prog=prog,
                                                     description=DESCRIPTION))
    epilog = (f"Every transformers TrainingArguments flag is accepted as well ({', '.join(COMMON_TRAINER_FLAGS)}, "
              f"...); explicit batch size / accumulation / learning rate / steps override the recipe's. "
              f"--help-all lists them all (it imports torch: a few seconds).")
    return _with_argument_types(HfArgumentParser(FinetuneArguments, prog=prog, description=DESCRIPTION,
                                                 epilog=epilog))


def parse_args(argv=None, prog: str | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    if not _explicit(argv, "output_dir"):
        argv += ["--output_dir", os.path.join("runs", "finetune")]
    try:
        args, targs = parser.parse_args_into_dataclasses(argv)
    except ValueError as err:  # TrainingArguments' own checks of combinations
        parser.error(str(err))
    if not args.dataset and not args.dry_run:
        parser.error("--dataset is required (unless --dry-run)")
    if args.ratio_range and args.ratio_range[0] > args.ratio_range[1]:
        parser.error(f"argument --ratio-range: {args.ratio_range[0]:g} > {args.ratio_range[1]:g} (LO HI)")
    args._explicit = {name for name in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                        "learning_rate", "max_steps", "num_train_epochs", "logging_steps",
                                        "per_device_eval_batch_size", "save_strategy", "dataloader_num_workers",
                                        "max_grad_norm")
                      if _explicit(argv, name)}
    return args, targs
