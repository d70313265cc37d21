"""How UN-EPT was trained (amazon-science/unified-ept at 48f74a6, mmsegmentation/mmcv 1.x runner): the recipes of
``configs/{res50,deit}_unept_ade20k.py`` and ``configs/deit_unept_pcontext.py``, the recipe of every zoo row
(``tests/data/original_recipes/unept.json`` holds the transcription with file and line) and the boundary targets its
loss needs.

AdamW lr 1e-4, wd 1e-4, betas (0.9, 0.999), eps 1e-8, ``custom_keys={'backbone': lr_mult 0.1}`` (only the ResNet /
DeiT backbone; the 1x1 pyramid convs are named ``layers`` in the original and train at the full lr),
``lr_config = dict(policy='step', step=126000)`` (an int: x0.1 every 126k iterations, i.e. once in 160k), 160k
iterations, 2 images x 8 GPUs (README), no gradient clipping; mmseg's pipeline with crop 480: ADE20K around
(2048, 512), Pascal-Context around (520, 520) with its 60 classes (background is class 0, no ``reduce_zero_label``).

Boundary targets: the original loads precomputed ``dt_offset`` maps (distance, direction) made on the full label map
and lists them as segmentation fields, so ``Resize`` (nearest), ``RandomCrop``, ``RandomFlip`` and ``Pad``
(``seg_pad_val=255``: padded pixels are far from any boundary) move them like the labels. :data:`TRAINING_TARGETS`
reproduces that order. The flip does not mirror the direction angles in the original; ``on_flip`` holds that fix,
applied only when a run asks for it.
"""

from __future__ import annotations

import numpy as np

from ...training.recipes import ParamRule, Pipeline, Recipe, RowRecipe, Schedule
from ...training.targets import ExtraTargets

REPO = "amazon-science/unified-ept@48f74a6"

_RULES = (ParamRule("backbone", lr_mult=0.1),)
_ADE20K = Pipeline(scale=(2048, 512), ratio_range=(0.5, 2.0), crop_size=(480, 480), cat_max_ratio=0.75)
_PASCAL_CONTEXT = Pipeline(scale=(520, 520), ratio_range=(0.5, 2.0), crop_size=(480, 480), cat_max_ratio=0.75)


def _recipe(name, dataset, pipeline, description, configs) -> Recipe:
    return Recipe(
        name=name, family="unept", dataset=dataset, description=description, optimizer="adamw", lr=1e-4,
        weight_decay=1e-4, betas=(0.9, 0.999), eps=1e-8, schedule=Schedule("step", step_every=126000, gamma=0.1),
        iterations=160000, samples_per_gpu=2, gpus=8, pipeline=pipeline, rules=_RULES,
        original_rules={"custom_keys": {"backbone": {"lr_mult": 0.1}}},
        source=f"{REPO} {configs}, README.md (8 GPUs, batch 16)",
    )


RECIPES = [
    _recipe("unept-ade20k", "ade20k", _ADE20K, "UN-EPT ADE20K 480x480, AdamW 1e-4 (backbone x0.1), step at 126k, "
            "bs 16, 160k", "configs/{res50,deit}_unept_ade20k.py"),
    _recipe("unept-pascal-context", "pascal_context_60", _PASCAL_CONTEXT, "UN-EPT Pascal-Context (60 classes) "
            "480x480, AdamW 1e-4 (backbone x0.1), step at 126k, bs 16, 160k", "configs/deit_unept_pcontext.py"),
]

ROWS = {
    "unept-res50-ade20k-480": RowRecipe("unept-ade20k", "configs/res50_unept_ade20k.py"),
    "unept-deit-ade20k-480": RowRecipe("unept-ade20k", "configs/deit_unept_ade20k.py"),
    "unept-deit-pcontext-480": RowRecipe("unept-pascal-context", "configs/deit_unept_pcontext.py"),
}


def recipe_for(config, dataset: str, entry=None) -> str:
    return "unept-pascal-context" if str(dataset).startswith("pascal_context") else "unept-ade20k"


def loss_weights(config) -> dict:
    return {"seg": config.seg_loss_weight, "boundary_mask": config.mask_loss_weight,
            "direction": config.direction_loss_weight, "refined_seg": config.refine_loss_weight}


# ------------------------------------------------------------------------------------------ boundary targets
PAD_VALUE = 255  # the original's Pad(seg_pad_val=255) for every segmentation field


def boundary_targets(labels: np.ndarray, ignore_index: int) -> dict[str, np.ndarray]:
    """``distance_map`` and ``angle_map`` (int64 [H, W]) of one full-size label map, as the original's loader reads
    the precomputed ``dt_offset`` files."""
    from .dt_offset import dt_offset_maps, maps_to_targets

    distance, angle = maps_to_targets(*dt_offset_maps(labels, ignore_index=ignore_index))
    return {"distance_map": distance.numpy(), "angle_map": angle.numpy()}


def mirror_angles(angle_map):
    """Direction angles (degrees in [-180, 180)) of a horizontally flipped map: atan2(gy, -gx) = 180 - angle."""
    mirrored = 180 - angle_map
    return mirrored - 360 * (mirrored >= 180)


TRAINING_TARGETS = ExtraTargets(
    compute=boundary_targets, fills={"distance_map": PAD_VALUE, "angle_map": PAD_VALUE},
    on_flip={"angle_map": mirror_angles},
    description="UN-EPT boundary targets (distance_map, angle_map): computed once on the full label map, then "
                "resized/cropped/flipped/padded (255) with the labels, as the original's precomputed dt_offset maps",
)
