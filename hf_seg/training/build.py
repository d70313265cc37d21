"""Everything a finetuning run is made of, built from the parsed arguments: the dataset splits and their label
conventions, the model (zoo preset, folder or hub id) with a classifier for the dataset's classes, the resolved recipe,
the augmenting datasets and the :class:`SegmentationTrainer`."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any

__all__ = ["build_trainer", "dry_run", "family_of", "load_model", "model_config", "load_data", "label_function"]

EVAL_SPLIT_CANDIDATES = ("validation", "val", "test")


def family_of(config) -> tuple[str, Any]:
    """(family name, its :class:`hf_seg.families.Family` declaration) of a config."""
    from ..families import family_of_config

    family = family_of_config(config)
    return family.name, family


def model_config(args):
    """(config, zoo entry or None) of ``--model`` without loading weights, resolved like :func:`hf_seg.zoo.load`
    resolves names (folder, preset, hub id)."""
    from transformers import AutoConfig

    import hf_seg  # noqa: F401 - registers the Auto configs

    from .. import zoo
    from ..model_loading import _resolve, _saved_num_labels
    from .model_inputs import DatasetCheckError

    try:
        kind, where = _resolve(args.model)
    except zoo.ModelLoadError as err:
        raise DatasetCheckError(str(err)) from None
    if kind == "preset":
        return zoo.build_config(where), zoo.get_entry(where)
    config = AutoConfig.from_pretrained(where)
    saved = _saved_num_labels(where)
    if saved and saved != config.num_labels:  # a config class whose num_labels default beats the saved id2label
        config = AutoConfig.from_pretrained(where, num_labels=saved)
    return config, None


def adapt_info_to_model(info, num_labels: int):
    """The dataset read with the class convention of the model when its files support one (Pascal-Context: 59
    classes, background ignored, or 60 with background as class 0); otherwise unchanged."""
    from ..data import info_for_num_labels

    adapted = info_for_num_labels(info, num_labels) if info.num_labels != num_labels else None
    return adapted if adapted is not None else info


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
    """({split: datasets.Dataset with image/annotation columns}, DatasetInfo, {split: images without an annotation
    file}) through :mod:`hf_seg.data` (folder layouts leave such images out of the split; the run says how many)."""
    from ..data import load_segmentation_dataset

    columns = {}
    if args.image_column != "image" or args.label_column != "annotation":
        columns = {"image_column": args.image_column, "label_column": args.label_column}
    data = load_segmentation_dataset(args.dataset, **columns)
    return dict(data.splits), data.info, {k: list(v) for k, v in data.missing_labels.items() if v}


def _pick_eval_split(args, splits) -> str | None:
    if args.eval_split is not None:
        if args.eval_split.lower() == "none":
            return None
        if args.eval_split not in splits:
            from .model_inputs import DatasetCheckError

            raise DatasetCheckError(f"no split {args.eval_split!r} in the dataset (splits: {sorted(splits)})")
        return args.eval_split
    return next((s for s in EVAL_SPLIT_CANDIDATES if s in splits and s != args.train_split), None)


def _read_dataset(args):
    """(splits, info, notes) of ``--dataset``; clear errors for what cannot be read. The notes count the images of
    the splits used that have no annotation file (left out, never dropped without a word)."""
    from .model_inputs import DatasetCheckError

    try:
        splits, info, missing = load_data(args)
    except (FileNotFoundError, ValueError) as err:  # DatasetLayoutError is a ValueError
        raise DatasetCheckError(f"cannot read the dataset {args.dataset!r}: {err}") from err
    if args.train_split not in splits:
        raise DatasetCheckError(f"the dataset has no {args.train_split!r} split (splits: {sorted(splits)}); "
                                f"check the path and its folder layout")
    used = {args.train_split, _pick_eval_split(args, splits)}
    notes = [f"{len(files)} image(s) of the {split} split have no annotation file and are left out (e.g. {files[0]})"
             for split, files in missing.items() if split in used]
    return splits, info, notes


def _labels_of(info):
    from ..label_sets import get_label_set
    from .model_inputs import DatasetCheckError

    dataset_name = info.name if info.name and info.name != "custom" else ""
    id2label = info.id2label or (get_label_set(dataset_name).id2label if dataset_name else None)
    if not id2label:
        raise DatasetCheckError("the dataset does not say its classes: put an id2label.json next to it")
    return dataset_name, {int(k): str(v) for k, v in id2label.items()}


def _label_set_json(info, num_labels: int) -> dict:
    return {"name": info.name, "num_labels": num_labels, "reduce_labels": bool(info.reduce_labels),
            "ignore_index": int(info.ignore_index), "label_map": bool(info.label_map)}


def _batchnorm_json(model, resolved, args, synced: bool) -> dict:
    from .batchnorm import batchnorm_modules

    recipe = resolved.recipe
    count = len(batchnorm_modules(model))
    if not count:
        return {"layers": 0}
    per_process = resolved.per_device_batch_size
    out = {"layers": count, "frozen": bool(args.freeze_batchnorm), "sync_across_processes": synced,
           "momentum": recipe.bn_momentum if recipe.bn_momentum is not None else "model default (0.1)",
           "bias_corrected_running_average": recipe.bn_bias_corrected,
           "normalised_over_images": per_process * (resolved.num_processes if synced else 1),
           "original_normalised_over_images": recipe.total_batch_size}
    return out


def _batchnorm_notes(bn: dict) -> list[str]:
    if not bn.get("layers") or bn.get("frozen"):
        return []
    if bn["normalised_over_images"] >= bn["original_normalised_over_images"]:
        return []
    return [f"BatchNorm normalises over {bn['normalised_over_images']} image(s) per forward pass; the original "
            f"synchronised its statistics over {bn['original_normalised_over_images']} (SyncBN across GPUs). "
            f"Gradient accumulation does not change that. Alternatives: a larger --per-device-train-batch-size (the "
            f"accumulation shrinks to keep the original images per step; --recipe-scaling linear/none trains with "
            f"that batch and no accumulation), several GPUs (SyncBatchNorm under DDP), or --freeze-batchnorm"]


def _extra_targets(declared, args):
    targets = declared.hook("training_targets")
    return targets, (targets.on_flip if targets is not None and args.flip_target_fixes else {})


def _loss_weights(declared, config) -> dict:
    weights = declared.hook("loss_weights")
    return weights(config) if weights is not None else {}


def dry_run(args, targs) -> dict:
    """The resolved recipe as :func:`hf_seg.training.report.recipe_report` writes it, without loading weights or
    training: the model is built on the meta device (parameter names and shapes only)."""
    import torch

    import hf_seg  # noqa: F401 - registers the Auto classes

    from .report import recipe_report
    from .resolve import resolve_recipe

    config, entry = model_config(args)
    family, declared = family_of(config)
    info, notes, train_size = None, [], None
    if args.dataset:
        splits, info, notes = _read_dataset(args)
        info = adapt_info_to_model(info, config.num_labels)
        dataset_name, id2label = _labels_of(info)
        train_size = len(splits[args.train_split])
        if len(id2label) != config.num_labels:
            if entry is None and not args.ignore_mismatched_sizes:
                notes.append(f"the model has {config.num_labels} classes and the dataset {len(id2label)}: a run "
                             f"needs --ignore-mismatched-sizes")
            config.num_labels = len(id2label)
            config.id2label = id2label
            config.label2id = {v: k for k, v in id2label.items()}
    else:
        dataset_name = entry.dataset if entry is not None else ""
    _ = targs.world_size  # sets up the distributed state
    resolved, origin = resolve_recipe(args, targs, family, config, entry, dataset_name, train_size=train_size)
    with torch.device("meta"):
        model = declared.model_class(config)
    if args.freeze_batchnorm:
        from .batchnorm import freeze_batchnorm

        freeze_batchnorm(model)
    bn = _batchnorm_json(model, resolved, args, synced=args.sync_batchnorm and targs.world_size > 1
                         and targs.device.type == "cuda")
    targets, _ = _extra_targets(declared, args)
    max_grad_norm = targs.max_grad_norm if "max_grad_norm" in args._explicit else resolved.recipe.max_grad_norm
    return recipe_report(
        resolved, model, origin=origin, family=family, model_name=args.model,
        backbone_prefixes=declared.backbone_prefixes, dataset=dataset_name or resolved.recipe.dataset,
        num_labels=config.num_labels, label_set=_label_set_json(info, config.num_labels) if info else {},
        loss_weights=_loss_weights(declared, config), batch_norm=bn, extra_targets=targets,
        flip_target_fixes=args.flip_target_fixes, max_grad_norm=max_grad_norm,
        notes=notes + _batchnorm_notes(bn))


def _with_processor_settings(processor, text: str):
    """A new processor with ``--processor-kwargs``' settings, built through its constructor so that its checks run
    (``pad_size_divisor: -8`` is refused now, not after training as a model predict cannot load)."""
    from .model_inputs import DatasetCheckError

    try:
        changes = json.loads(text)
    except ValueError as err:
        raise DatasetCheckError(f"--processor-kwargs is not JSON: {err}") from err
    if not isinstance(changes, dict):
        raise DatasetCheckError(f"--processor-kwargs must be a JSON object, got {text!r}")
    settings = processor.to_dict()
    unknown = sorted(key for key in changes if not hasattr(processor, key))
    if unknown:
        raise DatasetCheckError(f"--processor-kwargs: the image processor has no setting {unknown[0]!r}")
    for key in ("image_processor_type", "processor_class", "auto_map", "_processor_class"):
        settings.pop(key, None)
    try:
        return type(processor)(**{**settings, **changes})
    except (TypeError, ValueError) as err:
        raise DatasetCheckError(f"--processor-kwargs: {err}") from err


def build_trainer(args, targs, callbacks=None):
    """Load the data and the model, check them, fit the recipe and build the :class:`SegmentationTrainer`.

    Returns a dict with ``trainer``, ``model``, ``processor``, ``train_dataset``, ``eval_dataset``, ``collator``,
    ``recipe`` (the :class:`ResolvedRecipe`), ``report`` (the recipe JSON), ``family``, ``dataset_name``,
    ``eval_name``, ``say`` and ``push``.
    """
    from transformers import set_seed

    import hf_seg  # noqa: F401 - registers the Auto classes

    from ..metrics import make_compute_metrics
    from .batchnorm import apply_batchnorm_recipe, freeze_batchnorm
    from .model_inputs import (DatasetCheckError, EvalDataset, SegmentationCollator, TrainDataset, check_dataset,
                               eval_canvas)
    from .report import recipe_report, write_recipe_json
    from .resolve import resolve_recipe
    from .trainer import SegmentationTrainer, TimeBudgetCallback, convert_sync_batchnorm_if_needed
    from .transforms import build_train_transforms

    _ = targs.device  # sets up the distributed state, so world_size / process_index are right
    is_main = targs.process_index == 0

    def say(message):
        if is_main:
            print(message, flush=True)

    set_seed(targs.seed)
    splits, info, data_notes = _read_dataset(args)
    for line in data_notes:
        say(f"note: {line}")
    config, entry = model_config(args)
    info = adapt_info_to_model(info, config.num_labels)  # e.g. Pascal-Context with the model's 59 or 60 classes
    dataset_name, id2label = _labels_of(info)
    ignore_index = int(info.ignore_index)

    model, processor, entry, note = load_model(args, id2label, ignore_index)
    if note:
        say(f"note: {note}")
    ignore_index = int(getattr(model.config, "semantic_loss_ignore_index", ignore_index))
    processor = _set_processor_labels(processor, info, ignore_index)
    if args.processor_kwargs:
        processor = _with_processor_settings(processor, args.processor_kwargs)
    family, declared = family_of(model.config)
    label_fn = label_function(info, ignore_index)

    train_split = splits[args.train_split]
    if args.max_train_samples:
        train_split = train_split.select(range(min(args.max_train_samples, len(train_split))))
    eval_name = _pick_eval_split(args, splits)
    eval_split = splits[eval_name] if eval_name else None
    if eval_split is not None and args.max_eval_samples:
        eval_split = eval_split.select(range(min(args.max_eval_samples, len(eval_split))))

    resolved, origin = resolve_recipe(args, targs, family, model.config, entry, dataset_name,
                                      train_size=len(train_split))
    recipe = resolved.recipe
    pipeline = recipe.pipeline
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
    if "max_grad_norm" not in explicit:
        targs.max_grad_norm = recipe.max_grad_norm  # 0: no clipping (Trainer clips to 1.0 by default)
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

    targets, flip_fixes = _extra_targets(declared, args)
    target_fills = dict(targets.fills) if targets is not None else {}
    if len(set(target_fills.values())) > 1:
        raise ValueError(f"extra training targets with different padding values are not supported: {target_fills}")
    transforms = build_train_transforms(pipeline, processor, ignore_index,
                                        target_fill=next(iter(target_fills.values()), ignore_index),
                                        flip_fixes=flip_fixes)
    train_dataset = TrainDataset(train_split, transforms, label_fn,
                                 seed=targs.data_seed if targs.data_seed is not None else targs.seed,
                                 extra_targets=targets, ignore_index=ignore_index)
    eval_dataset = EvalDataset(eval_split, processor, label_fn) if eval_split is not None else None
    collator = SegmentationCollator(ignore_index=ignore_index, fills=target_fills,
                                    size_divisor=pipeline.size_divisor or getattr(processor, "pad_size_divisor", None))
    eval_collator = collator
    if targs.world_size > 1 and eval_dataset is not None:
        # the Trainer gathers eval batches across processes: give them one shape
        eval_collator = dataclasses.replace(collator, canvas=eval_canvas(processor))

    model, synced = convert_sync_batchnorm_if_needed(model, targs) if args.sync_batchnorm else (model, False)
    if args.freeze_batchnorm:
        freeze_batchnorm(model)
    else:
        apply_batchnorm_recipe(model, recipe.bn_momentum, recipe.bn_bias_corrected)
    compute_metrics = make_compute_metrics(model.config.num_labels, ignore_index=ignore_index,
                                           id2label=model.config.id2label)
    trainer = SegmentationTrainer(
        model=model, args=targs, train_dataset=train_dataset, eval_dataset=eval_dataset, data_collator=collator,
        eval_collator=eval_collator,
        compute_metrics=compute_metrics, processing_class=processor, callbacks=callbacks, recipe=resolved,
        backbone_prefixes=declared.backbone_prefixes)

    if args.max_train_minutes:
        trainer.add_callback(TimeBudgetCallback(60 * args.max_train_minutes, trainer))
    bn = _batchnorm_json(model, resolved, args, synced)
    report = recipe_report(
        resolved, model, origin=origin, family=family, model_name=args.model,
        backbone_prefixes=declared.backbone_prefixes, dataset=dataset_name, num_labels=model.config.num_labels,
        label_set=_label_set_json(info, model.config.num_labels), loss_weights=_loss_weights(declared, model.config),
        batch_norm=bn, extra_targets=targets, flip_target_fixes=args.flip_target_fixes,
        max_grad_norm=targs.max_grad_norm, notes=data_notes + _batchnorm_notes(bn))
    if is_main:
        write_recipe_json(report, targs.output_dir)
    say(f"model: {args.model} ({family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{model.config.num_labels} classes); dataset: {args.dataset} ({dataset_name or 'unnamed'}, "
        f"{len(train_split)} {args.train_split}" + (f", {len(eval_split)} {eval_name}" if eval_split else "") + ")")
    say(resolved.summary())
    for line in _batchnorm_notes(bn):
        say(f"  note: {line}")
    say(f"  gradient clipping: {'max norm ' + format(targs.max_grad_norm, 'g') if targs.max_grad_norm else 'none'}; "
        f"full recipe: {os.path.join(targs.output_dir, 'recipe.json')}")
    if synced:
        say("SyncBatchNorm: on (multi-GPU)")
    return {"trainer": trainer, "model": model, "processor": processor, "train_dataset": train_dataset,
            "eval_dataset": eval_dataset, "collator": collator, "recipe": resolved, "report": report,
            "family": family, "dataset_name": dataset_name, "eval_name": eval_name, "say": say, "push": push,
            "is_main": is_main}
