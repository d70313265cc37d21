"""How RegionProxy was trained (YiF-Zhang/RegionProxy at 76fea9b, mmsegmentation 0.17 / mmcv 1.3.13): the recipes of
``configs/_base_/schedules/adamw+{poly,cr}*.py`` with the dataset configs, and the recipe of every zoo row
(``tests/data/original_recipes/regionproxy.json`` holds the transcription with file and line).

AdamW 6e-5, betas (0.9, 0.999), weight decay 0.01 except ``custom_keys`` ``pos_embed``, ``cls_token``, ``dist_token``,
``.ln`` and ``norm`` (decay 0: the transformer's and the hybrid stem's norms; the head's batch norms are named ``bn``
and keep their decay), linear warm-up 1500 iterations from 1e-6, then poly 1.0 (ViT-Ti/S, R26+ViT-S/32) or cosine
restarts with periods (20k, 40k, 100k) / (10k, 20k, 50k) and weights (1, 0.5, 0.25) (ViT-B, ViT-L, R50+ViT-L/32);
2 images x 8 GPUs (README: "We train all models on 8 V100 GPUs"); no gradient clipping.
"""

from __future__ import annotations

from ...training.recipes import ParamRule, Pipeline, Recipe, RowRecipe, Schedule

REPO = "YiF-Zhang/RegionProxy@76fea9b"

_RULES = (
    ParamRule("name:dist_token", decay_mult=0.0),
    ParamRule("name:cls_token", decay_mult=0.0),
    ParamRule("name:pos_embed", decay_mult=0.0),
    ParamRule("layer_norm", decay_mult=0.0),
)
_ORIGINAL_RULES = {"custom_keys": {"pos_embed": {"decay_mult": 0.0}, "cls_token": {"decay_mult": 0.0},
                                   ".ln": {"decay_mult": 0.0}, "dist_token": {"decay_mult": 0.0},
                                   "norm": {"decay_mult": 0.0}}}
_ADE20K = Pipeline(scale=(2048, 512), ratio_range=(0.5, 2.0), crop_size=(512, 512), cat_max_ratio=0.75)
_CITYSCAPES = Pipeline(scale=(2048, 1024), ratio_range=(0.5, 2.0), crop_size=(768, 768), cat_max_ratio=0.75)
_POLY = Schedule("poly", power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6)


def _cosine(periods) -> Schedule:
    return Schedule("cosine_restart", warmup_iters=1500, warmup_ratio=1e-6, periods=periods,
                    restart_weights=(1.0, 0.5, 0.25), min_lr_ratio=0.0)


def _recipe(name, dataset, schedule, iterations, pipeline, description, schedule_file) -> Recipe:
    return Recipe(
        name=name, family="regionproxy", dataset=dataset, description=description, optimizer="adamw", lr=6e-5,
        weight_decay=0.01, betas=(0.9, 0.999), schedule=schedule, iterations=iterations, samples_per_gpu=2, gpus=8,
        pipeline=pipeline, rules=_RULES, original_rules=_ORIGINAL_RULES,
        source=f"{REPO} configs/_base_/schedules/{schedule_file}, configs/_base_/datasets/{dataset}.py",
    )


RECIPES = [
    _recipe("regproxy-poly-ade20k", "ade20k", _POLY, 160000, _ADE20K,
            "RegionProxy ADE20K 512x512, AdamW + poly, bs 16, 160k", "adamw+poly-power_1+lr_6e-5+wd_0.01+iter_160k.py"),
    _recipe("regproxy-cr-ade20k", "ade20k", _cosine((20000, 40000, 100000)), 160000, _ADE20K,
            "RegionProxy ADE20K 512x512, AdamW + cosine restarts, bs 16, 160k", "adamw+cr+lr_6e-5+wd_0.01+iter_160k.py"),
    _recipe("regproxy-poly-cityscapes", "cityscapes", _POLY, 80000, _CITYSCAPES,
            "RegionProxy Cityscapes 768x768, AdamW + poly, bs 16, 80k", "adamw+poly-power_1+lr_6e-5+wd_0.01+iter_80k.py"),
    _recipe("regproxy-cr-cityscapes", "cityscapes", _cosine((10000, 20000, 50000)), 80000, _CITYSCAPES,
            "RegionProxy Cityscapes 768x768, AdamW + cosine restarts, bs 16, 80k", "adamw+cr+lr_6e-5+wd_0.01+iter_80k.py"),
]

# configs/_base_/datasets/ade20k_640x640.py: the 640 rows rescale around (2048, 640) and crop 640
_ADE640 = {"scale": (2048, 640), "crop_size": (640, 640)}


def _row(recipe, stem, changes=None) -> RowRecipe:
    folder = "regproxy_ade20k" if stem.endswith("ade20k") else "regproxy_cityscapes"
    return RowRecipe(recipe, f"configs/{folder}/{stem}.py", changes or {})


ROWS = {
    "regionproxy-vit-ti16-ade20k-512": _row("regproxy-poly-ade20k",
                                            "regproxy-t16-sub4+implicit-mid-4+512x512+160k+adamw-poly+ade20k"),
    "regionproxy-vit-s16-ade20k-512": _row("regproxy-poly-ade20k",
                                           "regproxy-s16-sub4+implicit-mid-4+512x512+160k+adamw-poly+ade20k"),
    "regionproxy-r26-vit-s32-ade20k-512": _row("regproxy-poly-ade20k",
                                               "regproxy-r26-s32-sub4+implicit-mid-n1+512x512+160k+adamw-poly+ade20k"),
    "regionproxy-vit-b16-ade20k-512": _row("regproxy-cr-ade20k",
                                           "regproxy-b16-sub4+implicit-mid-4+512x512+160k+adamw-cr+ade20k"),
    "regionproxy-r50-vit-l32-ade20k-640": _row("regproxy-cr-ade20k",
                                               "regproxy-r50-l32-sub4+implicit-mid-n1+640x640+160k+adamw-cr+ade20k",
                                               _ADE640),
    "regionproxy-vit-l16-ade20k-640": _row("regproxy-cr-ade20k",
                                           "regproxy-l16-sub4+implicit-mid-9+640x640+160k+adamw-cr+ade20k", _ADE640),
    "regionproxy-vit-ti16-cityscapes-768": _row("regproxy-poly-cityscapes",
                                                "regproxy-t16-sub4+implicit-mid-2+768x768+80k+adamw-poly+cityscapes"),
    "regionproxy-vit-s16-cityscapes-768": _row("regproxy-poly-cityscapes",
                                               "regproxy-s16-sub4+implicit-mid-2+768x768+80k+adamw-poly+cityscapes"),
    "regionproxy-vit-b16-cityscapes-768": _row("regproxy-cr-cityscapes",
                                               "regproxy-b16-sub4+implicit-mid-2+768x768+80k+adamw-cr+cityscapes"),
    "regionproxy-vit-l16-cityscapes-768": _row("regproxy-cr-cityscapes",
                                               "regproxy-l16-sub4+implicit-mid-5+768x768+80k+adamw-cr+cityscapes"),
}


def recipe_for(config, dataset: str, entry=None) -> str:
    """ViT-B and wider train with cosine restarts, narrower ones with poly (every released row); Cityscapes has its
    own schedules, any other dataset gets the ADE20K schedule (the pipeline is adapted to the dataset)."""
    width = int(getattr(config, "hidden_size", 0) or 0)
    schedule = "cr" if width >= 768 else "poly"
    return f"regproxy-{schedule}-{'cityscapes' if dataset == 'cityscapes' else 'ade20k'}"


def loss_weights(config) -> dict:
    return {"decode_head": 1.0}
