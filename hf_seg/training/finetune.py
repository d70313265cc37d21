"""Finetune any hf_seg model on a segmentation dataset with ``transformers.Trainer`` (``accelerate`` underneath).

    accelerate launch scripts/finetune.py --model setr-pup-ade20k-512 --dataset ADEChallengeData2016 \\
        --output-dir runs/setr --recipe original
    accelerate launch --num_processes 2 --cpu scripts/finetune.py --model DIR --dataset data/camvid --max-steps 20

``--model``: a zoo preset (its architecture, random weights), a converted/pretrained folder or a hub id.
``--dataset``: a dataset folder (ADE20K, Cityscapes, Pascal-Context, COCO-Stuff, CamVid layouts) or a hub dataset
with image + annotation columns, read by :mod:`hf_seg.data`. ``--recipe original`` (default) is the seed's schedule for
the model (see :mod:`hf_seg.training.recipes`), scaled to the number of processes; ``--recipe NAME`` picks a named
recipe. Every ``TrainingArguments`` flag passes through (``--output-dir``, ``--max-steps``, ``--save-steps``,
``--resume-from-checkpoint``, ``--seed``, ``--bf16``, ``--gradient-checkpointing``, ``--push-to-hub`` ...); explicit
batch size / accumulation / learning rate flags override the recipe's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FinetuneArguments", "parse_args", "build_trainer", "run", "main", "family_of"]

EVAL_SPLIT_CANDIDATES = ("validation", "val", "test")


@dataclass
class FinetuneArguments:
    model: str = field(metadata={"help": "zoo preset name, converted/pretrained model folder or hub id"})
    dataset: str = field(metadata={"help": "dataset folder (ADE20K/Cityscapes/Pascal-Context/COCO-Stuff/CamVid layout) "
                                           "or hub dataset id with image + annotation columns"})
    recipe: str = field(default="original", metadata={
        "help": "'original' (the seed's schedule for this model), 'finetune' (short AdamW schedule) or a recipe name "
                "(hf_seg.training.list_recipes())"})
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
    max_train_minutes: float | None = field(default=None, metadata={
        "help": "wall-clock budget: the lr schedule is shortened to the steps that fit and training stops there"})
    processor_kwargs: str | None = field(default=None, metadata={
        "help": "JSON dict of image-processor settings to change (e.g. the test-time resize) before training; "
                "saved with the model"})


# ------------------------------------------------------------------------------------------------ arguments
def _explicit(argv: list[str], name: str) -> bool:
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(a in flags or a.split("=", 1)[0] in flags for a in argv)


def parse_args(argv=None):
    from transformers import HfArgumentParser, TrainingArguments

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((FinetuneArguments, TrainingArguments), description=__doc__.split("\n\n")[0])
    if not _explicit(argv, "output_dir"):
        argv += ["--output_dir", os.path.join("runs", "finetune")]
    args, targs = parser.parse_args_into_dataclasses(argv)
    args._explicit = {name for name in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                        "learning_rate", "max_steps", "num_train_epochs", "logging_steps",
                                        "per_device_eval_batch_size", "save_strategy", "dataloader_num_workers")
                      if _explicit(argv, name)}
    return args, targs


# ------------------------------------------------------------------------------------------------ models
def family_of(config) -> tuple[str, Any]:
    from ..families import FAMILY_MODULES, family_module

    for name in FAMILY_MODULES:
        module = family_module(name)
        if getattr(module.CONFIG_CLASS, "model_type", None) == getattr(config, "model_type", None):
            return name, module
    raise ValueError(f"model type {getattr(config, 'model_type', None)!r} is not an hf_seg family "
                     f"({sorted(FAMILY_MODULES)})")


def _label_names_match(config, names) -> bool:
    current = [str(config.id2label.get(i, config.id2label.get(str(i), ""))) for i in range(config.num_labels)]
    if all(n.startswith("LABEL_") for n in current):
        return True  # generic names carry no information
    return [n.lower() for n in current] == [str(n).lower() for n in names]


def load_model(args, id2label: dict[int, str], ignore_index: int):
    """(model, processor, zoo entry or None) with a classifier for ``id2label``'s classes."""
    from .. import zoo
    from .data import DatasetCheckError

    num_labels = len(id2label)
    label2id = {v: k for k, v in id2label.items()}
    is_preset = args.model in {e.name for e in zoo.list_models()} and not os.path.isdir(args.model)
    if is_preset:
        entry = zoo.get_entry(args.model)
        model = zoo.build_model(args.model, id2label=id2label, label2id=label2id, num_labels=num_labels,
                                semantic_loss_ignore_index=ignore_index)
        processor = zoo.build_processor(args.model)
        return model, processor, entry, (f"{args.model!r} is a zoo preset: its architecture is built with RANDOM "
                                         f"weights (no pretrained weights are downloaded); pass a converted folder or "
                                         f"{entry.hub_id!r} to start from trained ones")
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

    config = AutoConfig.from_pretrained(args.model)
    saved_labels = _saved_id2label(args.model)
    if saved_labels and len(saved_labels) != config.num_labels:
        # a config class whose num_labels default overrides the saved id2label: trust the saved id2label
        config = AutoConfig.from_pretrained(args.model, num_labels=len(saved_labels))
    mismatch = config.num_labels != num_labels
    if mismatch and not args.ignore_mismatched_sizes:
        raise DatasetCheckError(
            f"the model {args.model!r} has a classifier for {config.num_labels} classes but the dataset has "
            f"{num_labels} ({', '.join(list(id2label.values())[:6])}{', ...' if num_labels > 6 else ''}): pass "
            f"--ignore-mismatched-sizes to re-initialise the classifier for the dataset's classes")
    note = ""
    if not mismatch and not _label_names_match(config, id2label.values()):
        note = (f"the model's {config.num_labels} class names differ from the dataset's; its classifier is kept and "
                f"its labels renamed to the dataset's")
    model = AutoModelForSemanticSegmentation.from_pretrained(
        args.model, num_labels=num_labels, id2label=id2label, label2id=label2id,
        ignore_mismatched_sizes=args.ignore_mismatched_sizes)
    if mismatch:
        note = (f"classifier re-initialised for the dataset's {num_labels} classes (the model had "
                f"{config.num_labels})")
    try:
        processor = AutoImageProcessor.from_pretrained(args.model)
    except (OSError, ValueError):
        from ..image_processing import HfSegImageProcessor

        processor = HfSegImageProcessor(resize_mode="none")
        note = (note + "; " if note else "") + "no image processor saved with the model: ImageNet mean/std, no resize"
    return model, processor, None, note


def _saved_id2label(path: str) -> dict | None:
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return None
    with open(config_file) as handle:
        return json.load(handle).get("id2label")


def _model_label_map(info, ignore_index: int) -> dict[int, int] | None:
    label_map = dict(info.label_map or {}) or None
    if label_map and ignore_index != info.ignore_index:
        label_map = {int(k): (ignore_index if int(v) == info.ignore_index else int(v)) for k, v in label_map.items()}
    return label_map


def _set_processor_labels(processor, info, ignore_index: int):
    """Give the processor saved with the model the dataset's label conventions."""
    processor.do_reduce_labels = bool(info.reduce_labels)
    label_map = _model_label_map(info, ignore_index)
    processor.label_map = {int(k): int(v) for k, v in label_map.items()} if label_map else None
    processor.ignore_index = ignore_index
    return processor


def label_function(info, ignore_index: int):
    """Stored annotation -> training ids (the dataset's label map and reduction, the model's ignore index)."""
    from ..data import convert_labels

    label_map = _model_label_map(info, ignore_index)
    reduce_labels = bool(info.reduce_labels)

    def convert(raw):
        labels = convert_labels(raw, label_map, reduce_labels, ignore_index)
        if info.ignore_index != ignore_index and not label_map:
            labels[labels == info.ignore_index] = ignore_index
        return labels

    return convert


# ------------------------------------------------------------------------------------------------ data
def load_data(args):
    """({split: datasets.Dataset with image/annotation columns}, DatasetInfo) through :mod:`hf_seg.data`."""
    from ..data import load_segmentation_dataset

    columns = {}
    if args.image_column != "image" or args.label_column != "annotation":
        columns = {"image_column": args.image_column, "label_column": args.label_column}
    data = load_segmentation_dataset(args.dataset, **columns)
    return dict(data.splits), data.info


def _pick_eval_split(args, splits) -> str | None:
    if args.eval_split is not None:
        if args.eval_split.lower() == "none":
            return None
        if args.eval_split not in splits:
            from .data import DatasetCheckError

            raise DatasetCheckError(f"no split {args.eval_split!r} in the dataset (splits: {sorted(splits)})")
        return args.eval_split
    return next((s for s in EVAL_SPLIT_CANDIDATES if s in splits and s != args.train_split), None)


# ------------------------------------------------------------------------------------------------ recipe
def resolve_recipe(args, targs, family: str, model, entry, dataset_name: str, train_size: int | None = None):
    from .recipes import DATASET_TRAIN_SCALE, get_recipe, override, recipe_for, scale_recipe

    if args.recipe == "original":
        recipe = recipe_for(family, config=model.config, dataset=dataset_name, entry=entry)
    else:
        recipe = get_recipe(args.recipe)
    notes = []
    changes: dict[str, Any] = {}
    pipeline = recipe.pipeline
    if recipe.dataset and dataset_name and dataset_name != recipe.dataset and pipeline.scale is not None:
        if dataset_name in DATASET_TRAIN_SCALE:
            changes["scale"] = DATASET_TRAIN_SCALE[dataset_name]
            notes.append(f"recipe trained on {recipe.dataset}; rescaling around {dataset_name}'s size "
                         f"{DATASET_TRAIN_SCALE[dataset_name]} instead")
    if recipe.dataset == "" and pipeline.scale is None and pipeline.short_sides is None:
        changes["scale"] = DATASET_TRAIN_SCALE.get(dataset_name)
    if args.crop_size and args.crop_size[0] <= 0:
        changes["crop_size"] = None  # --crop-size 0: whole (rescaled) images, batches padded to a common size
    elif args.crop_size:
        crop = args.crop_size * 2 if len(args.crop_size) == 1 else args.crop_size[:2]
        changes["crop_size"] = tuple(crop)
    elif pipeline.crop_size is not None and getattr(model.config, "image_size", None) is not None and entry is None:
        size = model.config.image_size
        changes["crop_size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if args.train_scale:
        changes.update(scale=tuple(args.train_scale), short_sides=None, max_size=None)
        if pipeline.ratio_range is None and not args.ratio_range:
            changes["ratio_range"] = (0.5, 2.0)
    if args.ratio_range:
        changes["ratio_range"] = tuple(args.ratio_range)
    if not args.pad_small:
        changes["pad_small"] = False
    if args.no_augmentation:  # a fixed rescale (the scale itself, or the middle short side), no flip, no colour
        changes.update(ratio_range=None, flip_prob=0.0, photometric=False)
        sides = changes.get("short_sides", pipeline.short_sides)
        if sides:
            changes["short_sides"] = (sorted(sides)[len(sides) // 2],)
    if changes:
        recipe = override(recipe, **changes)
    explicit = args._explicit
    max_steps = targs.max_steps if "max_steps" in explicit and targs.max_steps > 0 else None
    resolved = scale_recipe(
        recipe, num_processes=max(1, targs.world_size), scaling=args.recipe_scaling,
        per_device_batch_size=targs.per_device_train_batch_size if "per_device_train_batch_size" in explicit else None,
        gradient_accumulation_steps=(targs.gradient_accumulation_steps
                                     if "gradient_accumulation_steps" in explicit else None),
        max_steps=max_steps, lr=targs.learning_rate if "learning_rate" in explicit else None)
    if max_steps is None and "num_train_epochs" in explicit and train_size:
        per_step = resolved.effective_batch_size
        steps = max(1, int(-(-train_size // per_step) * targs.num_train_epochs))
        notes.append(f"--num-train-epochs {targs.num_train_epochs:g}: {steps} steps of {per_step} images")
        resolved = dataclasses.replace(resolved, max_steps=steps)
    if notes:
        resolved = dataclasses.replace(resolved, notes=resolved.notes + tuple(notes))
    return resolved


# ------------------------------------------------------------------------------------------------ run
def build_trainer(args, targs, callbacks=None):
    """Load the data and the model, check them, fit the recipe and build the :class:`SegmentationTrainer`.

    Returns a dict with ``trainer``, ``model``, ``processor``, ``train_dataset``, ``eval_dataset``, ``collator``,
    ``recipe`` (the :class:`ResolvedRecipe`), ``family``, ``dataset_name``, ``eval_name``, ``say`` and ``push``.
    """
    from transformers import set_seed

    import hf_seg  # noqa: F401 - registers the Auto classes

    from ..label_sets import get_label_set
    from ..metrics import make_compute_metrics
    from .data import DatasetCheckError, EvalDataset, SegmentationCollator, TrainDataset, check_dataset, eval_canvas
    from .optim import BACKBONE_PREFIXES
    from .trainer import SegmentationTrainer, TimeBudgetCallback, convert_sync_batchnorm_if_needed
    from .transforms import build_train_transforms

    _ = targs.device  # sets up the distributed state, so world_size / process_index are right
    is_main = targs.process_index == 0

    def say(message):
        if is_main:
            print(message, flush=True)

    set_seed(targs.seed)
    try:
        splits, info = load_data(args)
    except (FileNotFoundError, ValueError) as err:  # DatasetLayoutError is a ValueError
        raise DatasetCheckError(f"cannot read the dataset {args.dataset!r}: {err}") from err
    if args.train_split not in splits:
        raise DatasetCheckError(f"the dataset has no {args.train_split!r} split (splits: {sorted(splits)}); "
                                f"check the path and its folder layout")
    dataset_name = info.name if info.name and info.name != "custom" else ""
    id2label = info.id2label or (get_label_set(dataset_name).id2label if dataset_name else None)
    if not id2label:
        raise DatasetCheckError("the dataset does not say its classes: put an id2label.json next to it")
    id2label = {int(k): str(v) for k, v in id2label.items()}
    ignore_index = int(info.ignore_index)

    model, processor, entry, note = load_model(args, id2label, ignore_index)
    if note:
        say(f"note: {note}")
    ignore_index = int(getattr(model.config, "semantic_loss_ignore_index", ignore_index))
    processor = _set_processor_labels(processor, info, ignore_index)
    if args.processor_kwargs:
        for key, value in json.loads(args.processor_kwargs).items():
            if not hasattr(processor, key):
                raise DatasetCheckError(f"--processor-kwargs: the image processor has no setting {key!r}")
            setattr(processor, key, value)
    family, family_module = family_of(model.config)
    label_fn = label_function(info, ignore_index)

    train_split = splits[args.train_split]
    if args.max_train_samples:
        train_split = train_split.select(range(min(args.max_train_samples, len(train_split))))
    eval_name = _pick_eval_split(args, splits)
    eval_split = splits[eval_name] if eval_name else None
    if eval_split is not None and args.max_eval_samples:
        eval_split = eval_split.select(range(min(args.max_eval_samples, len(eval_split))))

    resolved = resolve_recipe(args, targs, family, model, entry, dataset_name, train_size=len(train_split))
    pipeline = resolved.recipe.pipeline
    check_max = None if args.check_samples < 0 else args.check_samples
    check_dataset(train_split, label_fn, model.config.num_labels, ignore_index, split=args.train_split,
                  max_samples=check_max, pipeline=pipeline)
    if eval_split is not None:
        check_dataset(eval_split, label_fn, model.config.num_labels, ignore_index, split=eval_name,
                      max_samples=check_max)

    # ---- training arguments from the recipe (explicit flags win)
    explicit = args._explicit
    targs.per_device_train_batch_size = resolved.per_device_batch_size
    targs.gradient_accumulation_steps = resolved.gradient_accumulation_steps
    targs.max_steps = resolved.max_steps
    targs.learning_rate = resolved.lr
    targs.batch_eval_metrics = True
    targs.remove_unused_columns = False
    targs.label_names = ["labels"]
    if "logging_steps" not in explicit:
        targs.logging_steps = max(1, min(50, resolved.max_steps // 20))
    if "per_device_eval_batch_size" not in explicit:
        targs.per_device_eval_batch_size = 1 if targs.world_size > 1 else 2
    if targs.device.type == "cpu":
        targs.dataloader_pin_memory = False
    push = targs.push_to_hub
    targs.push_to_hub = False  # pushed once at the end, with our model card
    if targs.gradient_checkpointing and not getattr(model, "supports_gradient_checkpointing", False):
        warnings.warn(f"{type(model).__name__} does not support gradient checkpointing; training without it",
                      stacklevel=2)
        targs.gradient_checkpointing = False

    extra_targets = None
    if family == "unept":
        from ..modeling.unept.dt_offset import dt_offset_targets

        def extra_targets(labels, _ignore=ignore_index):
            distance, angle = dt_offset_targets(labels, ignore_index=_ignore)
            return {"distance_map": distance, "angle_map": angle}

    train_dataset = TrainDataset(train_split, build_train_transforms(pipeline, processor, ignore_index), label_fn,
                                 seed=targs.data_seed if targs.data_seed is not None else targs.seed,
                                 extra_targets=extra_targets)
    eval_dataset = EvalDataset(eval_split, processor, label_fn) if eval_split is not None else None
    collator = SegmentationCollator(ignore_index=ignore_index,
                                    size_divisor=pipeline.size_divisor or getattr(processor, "pad_size_divisor", None))
    eval_collator = collator
    if targs.world_size > 1 and eval_dataset is not None:
        # the Trainer gathers eval batches across processes: give them one shape
        eval_collator = dataclasses.replace(collator, canvas=eval_canvas(processor))

    model, synced = convert_sync_batchnorm_if_needed(model, targs) if args.sync_batchnorm else (model, False)
    compute_metrics = make_compute_metrics(model.config.num_labels, ignore_index=ignore_index,
                                           id2label=model.config.id2label)
    trainer = SegmentationTrainer(
        model=model, args=targs, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=collator,
        eval_collator=eval_collator,
        compute_metrics=compute_metrics, processing_class=processor, callbacks=callbacks, recipe=resolved,
        backbone_prefixes=getattr(family_module, "BACKBONE_PREFIXES", BACKBONE_PREFIXES))

    if args.max_train_minutes:
        trainer.add_callback(TimeBudgetCallback(60 * args.max_train_minutes, trainer))
    say(f"model: {args.model} ({family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{model.config.num_labels} classes); dataset: {args.dataset} ({dataset_name or 'unnamed'}, "
        f"{len(train_split)} {args.train_split}" + (f", {len(eval_split)} {eval_name}" if eval_split else "") + ")")
    say(resolved.summary())
    if synced:
        say("SyncBatchNorm: on (multi-GPU)")
    return {"trainer": trainer, "model": model, "processor": processor, "train_dataset": train_dataset,
            "eval_dataset": eval_dataset, "collator": collator, "recipe": resolved, "family": family,
            "dataset_name": dataset_name, "eval_name": eval_name, "say": say, "push": push, "is_main": is_main}


def run(args, targs, callbacks=None) -> dict:
    """Load, check, train, evaluate and save; returns the metrics and where everything is."""
    from transformers.trainer_utils import get_last_checkpoint

    from .data import DatasetCheckError
    from .hub import finetune_model_card, push_folder

    built = build_trainer(args, targs, callbacks)
    trainer, model, resolved = built["trainer"], built["model"], built["recipe"]
    eval_dataset, eval_name, say, is_main = built["eval_dataset"], built["eval_name"], built["say"], built["is_main"]
    dataset_name, push = built["dataset_name"], built["push"]

    resume = targs.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last", "latest"):
        resume = get_last_checkpoint(targs.output_dir)
        if resume is None:
            raise DatasetCheckError(f"--resume-from-checkpoint {targs.resume_from_checkpoint}: no checkpoint in "
                                    f"{targs.output_dir}")
    elif isinstance(resume, str) and resume.lower() in ("false", "none", ""):
        resume = None
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_state()
    metrics = {"train": train_result.metrics}
    if eval_dataset is not None:
        metrics["eval"] = trainer.evaluate()
        trainer.save_metrics("eval", metrics["eval"])
    trainer.save_metrics("train", train_result.metrics)
    if is_main:
        card = finetune_model_card(targs.hub_model_id or os.path.basename(os.path.abspath(targs.output_dir)),
                                   args.model, dataset_name or args.dataset, metrics.get("eval"),
                                   recipe_summary=resolved.summary(), num_labels=model.config.num_labels)
        card.save(os.path.join(targs.output_dir, "README.md"))
        with open(os.path.join(targs.output_dir, "recipe.json"), "w") as handle:
            json.dump({"recipe": resolved.recipe.to_dict(), "per_device_batch_size": resolved.per_device_batch_size,
                       "gradient_accumulation_steps": resolved.gradient_accumulation_steps,
                       "max_steps": resolved.max_steps, "lr": resolved.lr, "num_processes": resolved.num_processes,
                       "scaling": resolved.scaling}, handle, indent=1, default=str)
        if push:
            repo = targs.hub_model_id or os.path.basename(os.path.abspath(targs.output_dir))
            url = push_folder(targs.output_dir, repo, token=targs.hub_token, private=targs.hub_private_repo)
            say(f"pushed to {url}")
    if eval_dataset is not None and is_main:
        ev = metrics["eval"]
        say(f"eval on {eval_name}: mean IoU {ev.get('eval_mean_iou', float('nan')):.4f}, pixel accuracy "
            f"{ev.get('eval_overall_accuracy', float('nan')):.4f}")
    say(f"saved to {targs.output_dir}")
    metrics["output_dir"] = targs.output_dir
    metrics["recipe"] = resolved
    metrics["trainer"] = trainer
    return metrics


def main(argv=None, callbacks=None) -> int:
    from .data import DatasetCheckError
    from .launch import relaunch_if_single_cpu_process

    argv = list(sys.argv[1:] if argv is None else argv)
    status = relaunch_if_single_cpu_process("hf_seg.training.finetune", argv)
    if status is not None:
        return status
    args, targs = parse_args(argv)
    try:
        run(args, targs, callbacks=callbacks)
    except (DatasetCheckError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"finetune: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
