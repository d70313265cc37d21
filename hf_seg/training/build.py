"""Everything a finetuning run is made of, built from the parsed arguments: the dataset splits and their label
conventions, the model (zoo preset, folder or hub id) with a classifier for the dataset's classes, the resolved recipe,
the augmenting datasets and the :class:`SegmentationTrainer`."""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from typing import Any

__all__ = ["build_trainer", "family_of", "load_model", "load_data", "label_function"]

EVAL_SPLIT_CANDIDATES = ("validation", "val", "test")


def family_of(config) -> tuple[str, Any]:
    from ..families import FAMILY_MODULES, family_module

    for name in FAMILY_MODULES:
        module = family_module(name)
        if getattr(module.CONFIG_CLASS, "model_type", None) == getattr(config, "model_type", None):
            return name, module
    raise ValueError(f"model type {getattr(config, 'model_type', None)!r} is not an hf_seg family "
                     f"({sorted(FAMILY_MODULES)})")


def load_model(args, id2label: dict[int, str], ignore_index: int):
    """(model, processor, zoo entry or None, note) with a classifier for ``id2label``'s classes: :func:`hf_seg.zoo.load`
    in finetune mode (a preset is built with the dataset's classes; a folder's classifier must match them or
    ``--ignore-mismatched-sizes`` re-initialises it; a folder without an image processor is refused)."""
    from .. import zoo
    from .model_inputs import DatasetCheckError

    try:
        loaded = zoo.load(args.model, mode="finetune", id2label=id2label, ignore_index=ignore_index,
                          ignore_mismatched_sizes=args.ignore_mismatched_sizes)
    except zoo.ModelLoadError as err:
        raise DatasetCheckError(str(err)) from None
    return loaded.model, loaded.processor, loaded.entry, "; ".join(loaded.notes)


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
            from .model_inputs import DatasetCheckError

            raise DatasetCheckError(f"no split {args.eval_split!r} in the dataset (splits: {sorted(splits)})")
        return args.eval_split
    return next((s for s in EVAL_SPLIT_CANDIDATES if s in splits and s != args.train_split), None)


def build_trainer(args, targs, callbacks=None):
    """Load the data and the model, check them, fit the recipe and build the :class:`SegmentationTrainer`.

    Returns a dict with ``trainer``, ``model``, ``processor``, ``train_dataset``, ``eval_dataset``, ``collator``,
    ``recipe`` (the :class:`ResolvedRecipe`), ``family``, ``dataset_name``, ``eval_name``, ``say`` and ``push``.
    """
    from transformers import set_seed

    import hf_seg  # noqa: F401 - registers the Auto classes

    from ..label_sets import get_label_set
    from ..metrics import make_compute_metrics
    from .model_inputs import (DatasetCheckError, EvalDataset, SegmentationCollator, TrainDataset, check_dataset,
                               eval_canvas)
    from .optim import BACKBONE_PREFIXES
    from .resolve import resolve_recipe
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

    # family-specific targets of the loss (e.g. boundary maps), computed per sample from its augmented labels
    from ..families import get_family

    training_targets = get_family(family).hook("training_targets")
    extra_targets = None if training_targets is None else functools.partial(training_targets, ignore_index=ignore_index)

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
