"""The finetune command line: ``FinetuneArguments`` (ours) next to transformers' ``TrainingArguments``.

:func:`parse_args` turns ``argv`` into both dataclasses and remembers which ``TrainingArguments`` flags the user
gave explicitly (the recipe fills in the others).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

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


def build_parser(prog: str | None = None, trainer_arguments: bool = True):
    """The finetune parser: ``FinetuneArguments`` + ``TrainingArguments``, or (``trainer_arguments=False``, what
    ``--help`` shows) ours alone, which imports transformers' argument parser but not torch."""
    from transformers import HfArgumentParser

    if trainer_arguments:
        from transformers import TrainingArguments

        return HfArgumentParser((FinetuneArguments, TrainingArguments), prog=prog, description=DESCRIPTION)
    epilog = (f"Every transformers TrainingArguments flag is accepted as well ({', '.join(COMMON_TRAINER_FLAGS)}, "
              f"...); explicit batch size / accumulation / learning rate / steps override the recipe's. "
              f"--help-all lists them all (it imports torch: a few seconds).")
    return HfArgumentParser(FinetuneArguments, prog=prog, description=DESCRIPTION, epilog=epilog)


def parse_args(argv=None, prog: str | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    if not _explicit(argv, "output_dir"):
        argv += ["--output_dir", os.path.join("runs", "finetune")]
    args, targs = parser.parse_args_into_dataclasses(argv)
    if not args.dataset and not args.dry_run:
        parser.error("--dataset is required (unless --dry-run)")
    args._explicit = {name for name in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                        "learning_rate", "max_steps", "num_train_epochs", "logging_steps",
                                        "per_device_eval_batch_size", "save_strategy", "dataloader_num_workers",
                                        "max_grad_norm")
                      if _explicit(argv, name)}
    return args, targs
