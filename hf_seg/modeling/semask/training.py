"""How SeMask-FPN was trained (Picsart-AI-Research/SeMask-Segmentation at 16539be, ``SeMask-FPN``, an mmsegmentation
0.11 fork): the recipes of ``SeMask-FPN/configs/semask_swin/*`` with their dataset configs, and the recipe of every zoo
row (``tests/data/original_recipes/semask.json`` holds the transcription with file and line).

AdamW (betas 0.9/0.999), ``custom_keys`` ``absolute_pos_embed``, ``relative_position_bias_table`` and ``norm`` with
decay 0 (the Swin norms and the semantic layers' norms; the FPN head's batch norms are named ``bn`` and keep their
decay), linear warm-up 1500 iterations, poly 1.0 to 0, 80k iterations, no gradient clipping.

* ADE20K: lr 1e-4, wd 1e-4, warm-up ratio 1e-6. Tiny: ``ade20k_tiny.py`` (ratio choice, ``cat_max_ratio`` 0.75);
  Small/Base: ``ade20k.py`` (ratio choice, ``cat_max_ratio`` 1); Large: ``ade20k_640x640.py`` ((2560, 640), crop 640).
  README: 2 GPUs x 8 images, Large 4 x 4.
* Cityscapes: lr 1e-3, wd 0.05, warm-up ratio 1e-5 (Base: 1e-6), ratio range 0.5-2.0 around (2048, 1024),
  ``cat_max_ratio`` 0.75, crop 768. README: 2 GPUs x 4 images, Large 4 x 2.
* COCO-Stuff 10k: lr 1e-4, wd 1e-4, warm-up ratio 1e-6, ratio choice, ``cat_max_ratio`` 1; Large (2560, 640) crop 640.
  README: 4 GPUs x 4 images, Base and Large 8 x 2.

The fork's ``Resize`` reads a *list* ``ratio_range`` as a random choice among its values (a tuple is a uniform range).
"""

from __future__ import annotations

from ...training.recipes import ParamRule, Pipeline, Recipe, RowRecipe, Schedule

REPO = "Picsart-AI-Research/SeMask-Segmentation@16539be"

_RULES = (
    ParamRule("name:relative_position_bias_table", decay_mult=0.0),
    ParamRule("name:absolute_pos_embed", decay_mult=0.0),
    ParamRule("layer_norm", decay_mult=0.0),
)
_ORIGINAL_RULES = {"custom_keys": {"absolute_pos_embed": {"decay_mult": 0.0},
                                   "relative_position_bias_table": {"decay_mult": 0.0}, "norm": {"decay_mult": 0.0}}}
_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
_ADE20K = Pipeline(scale=(2048, 512), ratio_range=None, ratio_choices=_RATIOS, crop_size=(512, 512), cat_max_ratio=1.0)
_CITYSCAPES = Pipeline(scale=(2048, 1024), ratio_range=(0.5, 2.0), crop_size=(768, 768), cat_max_ratio=0.75)
_COCO = Pipeline(scale=(2048, 512), ratio_range=None, ratio_choices=_RATIOS, crop_size=(512, 512), cat_max_ratio=1.0)
_DATASET_FILES = {"ade20k": "ade20k.py", "cityscapes": "cityscapes_768x768.py", "coco_stuff": "coco_stuff10k.py"}


def _recipe(name, dataset, lr, weight_decay, warmup_ratio, per_gpu, gpus, pipeline, description) -> Recipe:
    return Recipe(
        name=name, family="semask", dataset=dataset, description=description, optimizer="adamw", lr=lr,
        weight_decay=weight_decay, betas=(0.9, 0.999),
        schedule=Schedule("poly", power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=warmup_ratio),
        iterations=80000, samples_per_gpu=per_gpu, gpus=gpus, pipeline=pipeline, rules=_RULES,
        original_rules=_ORIGINAL_RULES,
        source=f"{REPO} SeMask-FPN/configs/semask_swin/{'coco_stuff10k' if dataset == 'coco_stuff' else dataset}/*.py, "
               f"SeMask-FPN/configs/_base_/datasets/semask/{_DATASET_FILES[dataset]}, SeMask-FPN/README.md",
    )


RECIPES = [
    _recipe("semask-ade20k", "ade20k", 1e-4, 1e-4, 1e-6, 8, 2, _ADE20K,
            "SeMask-FPN ADE20K 512x512, AdamW 1e-4, 8 images x 2 GPUs, 80k"),
    _recipe("semask-cityscapes", "cityscapes", 1e-3, 0.05, 1e-5, 4, 2, _CITYSCAPES,
            "SeMask-FPN Cityscapes 768x768, AdamW 1e-3 wd 0.05, 4 images x 2 GPUs, 80k"),
    _recipe("semask-coco-stuff", "coco_stuff", 1e-4, 1e-4, 1e-6, 4, 4, _COCO,
            "SeMask-FPN COCO-Stuff 10k 512x512, AdamW 1e-4, 4 images x 4 GPUs, 80k"),
]

_CONFIGS = "SeMask-FPN/configs/semask_swin"
_LARGE_640 = {"scale": (2560, 640), "crop_size": (640, 640)}
_SIZES = {"t": "tiny_patch4_window7", "s": "small_patch4_window7", "b": "base_patch4_window12",
          "l": "large_patch4_window12"}


def _rows():
    rows = {}
    for size, stem in _SIZES.items():
        crop = 640 if size == "l" else 512
        ade = {"t": {"cat_max_ratio": 0.75},  # ade20k_tiny.py
               "l": {**_LARGE_640, "samples_per_gpu": 4, "gpus": 4}}.get(size, {})
        rows[f"semask-{size}-fpn-ade20k-{crop}"] = RowRecipe(
            "semask-ade20k", f"{_CONFIGS}/ade20k/semfpn_semask_swin_{stem}_{crop}x{crop}_80k_ade20k.py", ade)
        city = {"b": {"warmup_ratio": 1e-6}, "l": {"samples_per_gpu": 2, "gpus": 4}}.get(size, {})
        rows[f"semask-{size}-fpn-cityscapes-768"] = RowRecipe(
            "semask-cityscapes", f"{_CONFIGS}/cityscapes/semfpn_semask_swin_{stem}_768x768_80k_cityscapes.py", city)
        coco = {"b": {"samples_per_gpu": 2, "gpus": 8},
                "l": {**_LARGE_640, "samples_per_gpu": 2, "gpus": 8}}.get(size, {})
        rows[f"semask-{size}-fpn-coco-stuff10k-{crop}"] = RowRecipe(
            "semask-coco-stuff", f"{_CONFIGS}/coco_stuff10k/semfpn_semask_swin_{stem}_{crop}x{crop}_80k_coco10k.py",
            coco)
    return rows


ROWS = _rows()


def recipe_for(config, dataset: str, entry=None) -> str:
    if dataset == "cityscapes":
        return "semask-cityscapes"
    return "semask-coco-stuff" if dataset == "coco_stuff" else "semask-ade20k"


def loss_weights(config) -> dict:
    return {"decode_head": float(getattr(config, "loss_weight", 1.0)),
            "class_prior (cate_w)": float(getattr(config, "prior_loss_weight", 0.4))}
