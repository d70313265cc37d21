"""The recipe a run trains with: the model's original recipe (or a named one), adapted to the dataset and the user's
flags, then fitted to the number of processes (:func:`hf_seg.training.recipes.scale_recipe`)."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["resolve_recipe", "choose_recipe"]


def _same_dataset(a: str, b: str) -> bool:
    """Label-set names of the same images (Pascal-Context's 59- and 60-class conventions are one dataset)."""
    def base(name):
        return "pascal_context" if name.startswith("pascal_context") else name
    return base(a) == base(b)


def choose_recipe(args, family: str, config, entry, dataset_name: str):
    """(recipe, origin): ``--recipe original`` asks the model (its record, zoo row, family default); ``--recipe NAME``
    takes a named recipe or the recipe of zoo row NAME."""
    from .recipes import get_recipe, recipe_and_origin, row_recipe

    if args.recipe == "original":
        return recipe_and_origin(family, config=config, dataset=dataset_name, entry=entry)
    try:
        return get_recipe(args.recipe), {"row": "", "original_config": "", "source": "--recipe",
                                         "how": f"--recipe {args.recipe}"}
    except KeyError as err:
        try:
            return row_recipe(args.recipe), {"row": args.recipe, "original_config": "", "source": "--recipe",
                                             "how": f"--recipe {args.recipe} (zoo row)"}
        except KeyError:
            raise err from None


def resolve_recipe(args, targs, family: str, config, entry, dataset_name: str, train_size: int | None = None):
    """(:class:`ResolvedRecipe`, origin dict) for this run."""
    from .recipes import DATASET_TRAIN_SCALE, override, scale_recipe

    recipe, origin = choose_recipe(args, family, config, entry, dataset_name)
    notes = []
    changes: dict[str, Any] = {}
    pipeline = recipe.pipeline
    if (recipe.dataset and dataset_name and not _same_dataset(dataset_name, recipe.dataset)
            and pipeline.scale is not None and dataset_name in DATASET_TRAIN_SCALE):
        changes["scale"] = DATASET_TRAIN_SCALE[dataset_name]
        notes.append(f"recipe trained on {recipe.dataset}; rescaling around {dataset_name}'s size "
                     f"{DATASET_TRAIN_SCALE[dataset_name]} instead of {pipeline.scale}")
    if recipe.dataset == "" and pipeline.scale is None and pipeline.short_sides is None:
        changes["scale"] = DATASET_TRAIN_SCALE.get(dataset_name)
    if args.crop_size and args.crop_size[0] <= 0:
        changes["crop_size"] = None  # --crop-size 0: whole (rescaled) images, batches padded to a common size
    elif args.crop_size:
        crop = args.crop_size * 2 if len(args.crop_size) == 1 else args.crop_size[:2]
        changes["crop_size"] = tuple(crop)
    elif recipe.dataset == "" and pipeline.crop_size is not None and getattr(config, "image_size", None) is not None:
        size = config.image_size  # the generic recipe crops at the size the model was built for
        changes["crop_size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if args.train_scale:
        changes.update(scale=tuple(args.train_scale), short_sides=None, max_size=None)
        if pipeline.ratio_range is None and pipeline.ratio_choices is None and not args.ratio_range:
            changes["ratio_range"] = (0.5, 2.0)
    if args.ratio_range:
        changes.update(ratio_range=tuple(args.ratio_range), ratio_choices=None)
    if not args.pad_small:
        changes["pad_small"] = False
    if args.no_augmentation:  # a fixed rescale (the scale itself, or the middle short side), no flip, no colour
        changes.update(ratio_range=None, ratio_choices=None, flip_prob=0.0, photometric=False)
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
    return resolved, origin
