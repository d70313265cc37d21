"""How SETR and SETR-HLG were trained (fudan-zvg/SETR at 1361561, an mmsegmentation 0.6 fork): the recipes of the
released configs and the recipe of every zoo row. Every number is a fact of ``configs/SETR/*.py``,
``configs/setr_hlg/*.py`` and their ``_base_`` files; ``tests/data/original_recipes/setr.json`` holds the transcription
with file and line that the tests compare against.

* SETR: SGD momentum 0.9, weight decay 0, ``custom_keys={'head': lr_mult 10}`` (decode and auxiliary heads), poly 0.9
  down to ``min_lr`` 1e-4, no warm-up, no gradient clipping (``optimizer_config = dict()``).
* SETR-HLG: AdamW 6e-5, weight decay 0, ``custom_keys={'norm': decay 0, 'head': lr 10}``, linear warm-up 1500
  iterations from 1e-6, then poly 1.0 down to 0. mmcv checks the keys longest first and alphabetically among equal
  lengths, so ``head`` wins over ``norm`` for the heads' norms.
"""

from __future__ import annotations

from ...training.recipes import ParamRule, Pipeline, Recipe, RowRecipe, Schedule

REPO = "fudan-zvg/SETR@1361561"

_CITYSCAPES = Pipeline(scale=(2049, 1025), ratio_range=(0.5, 2.0), crop_size=(768, 768), cat_max_ratio=0.75)
_ADE20K = Pipeline(scale=(2048, 512), ratio_range=(0.5, 2.0), crop_size=(512, 512), cat_max_ratio=0.75)
_PASCAL_CONTEXT = Pipeline(scale=(520, 520), ratio_range=(0.5, 2.0), crop_size=(480, 480), cat_max_ratio=0.75)
_PIPELINES = {"cityscapes": _CITYSCAPES, "ade20k": _ADE20K, "pascal_context_60": _PASCAL_CONTEXT}
_SOURCES = {"cityscapes": "configs/_base_/datasets/cityscapes_768x768.py", "ade20k": "configs/_base_/datasets/ade20k.py",
            "pascal_context_60": "configs/_base_/datasets/pascal_context.py"}


def _setr(name, dataset, lr, per_gpu, gpus, iterations, description) -> Recipe:
    return Recipe(
        name=name, family="setr", dataset=dataset, description=description, optimizer="sgd", lr=lr,
        weight_decay=0.0, momentum=0.9, schedule=Schedule("poly", power=0.9, min_lr=1e-4), iterations=iterations,
        samples_per_gpu=per_gpu, gpus=gpus, pipeline=_PIPELINES[dataset], rules=(ParamRule("head", lr_mult=10.0),),
        original_rules={"custom_keys": {"head": {"lr_mult": 10.0}}},
        source=f"{REPO} configs/SETR/*.py, configs/_base_/schedules/schedule_*k.py, {_SOURCES[dataset]}",
    )


def _hlg(name, dataset, iterations, description) -> Recipe:
    return Recipe(
        name=name, family="setr", dataset=dataset, description=description, optimizer="adamw", lr=6e-5,
        weight_decay=0.0, betas=(0.9, 0.999),
        schedule=Schedule("poly", power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6),
        iterations=iterations, samples_per_gpu=2, gpus=8, pipeline=_PIPELINES[dataset],
        # 'head' before 'norm' (mmcv: longest key first, ties alphabetically). 'norm' also hits the HLG MLPs'
        # BatchNorms (named norm1/norm2); with weight decay 0 no decay multiplier changes anything
        rules=(ParamRule("head", lr_mult=10.0), ParamRule("layer_norm", decay_mult=0.0)),
        original_rules={"custom_keys": {"norm": {"decay_mult": 0.0}, "head": {"lr_mult": 10.0}}},
        source=f"{REPO} configs/setr_hlg/*.py, {_SOURCES[dataset]}",
    )


RECIPES = [
    _setr("setr-cityscapes", "cityscapes", 0.01, 1, 8, 80000, "SETR-Naive/PUP Cityscapes 768x768, bs 8, 80k"),
    _setr("setr-mla-cityscapes", "cityscapes", 0.002, 1, 8, 80000, "SETR-MLA Cityscapes 768x768, bs 8, 80k"),
    _setr("setr-naive-ade20k", "ade20k", 0.01, 2, 8, 160000, "SETR-Naive ADE20K 512x512, bs 16, 160k"),
    _setr("setr-ade20k", "ade20k", 0.001, 2, 8, 160000, "SETR-PUP/MLA ADE20K 512x512, bs 16, 160k"),
    _setr("setr-naive-pascal-context", "pascal_context_60", 0.01, 4, 4, 80000,
          "SETR-Naive Pascal-Context (60 classes) 480x480, bs 16, 80k"),
    _setr("setr-pascal-context", "pascal_context_60", 0.001, 2, 8, 80000,
          "SETR-PUP/MLA Pascal-Context (60 classes) 480x480, bs 16, 80k"),
    _hlg("setr-hlg-cityscapes", "cityscapes", 40000, "SETR-HLG Cityscapes 768x768, AdamW 6e-5, bs 16, 40k"),
    _hlg("setr-hlg-ade20k", "ade20k", 160000, "SETR-HLG ADE20K 512x512, AdamW 6e-5, bs 16, 160k"),
]

_BS8 = {"samples_per_gpu": 1, "gpus": 8}
_40K = {"iterations": 40000}


def _rows():
    rows = {}
    for arch, stem, recipe in (("naive", "Naive", "setr-cityscapes"), ("mla", "MLA", "setr-mla-cityscapes"),
                               ("pup", "PUP", "setr-cityscapes"), ("naive-base", "Naive_Base", "setr-cityscapes"),
                               ("naive-deit", "Naive_DeiT", "setr-cityscapes"),
                               ("mla-deit", "MLA_DeiT", "setr-mla-cityscapes"),
                               ("pup-deit", "PUP_DeiT", "setr-cityscapes")):
        for iters in (40, 80):
            config = f"configs/SETR/SETR_{stem}_768x768_{iters}k_cityscapes_bs_8.py"
            rows[f"setr-{arch}-cityscapes-768-{iters}k"] = RowRecipe(recipe, config, _40K if iters == 40 else {})
    ade = "configs/SETR/SETR_{}_512x512_160k_ade20k_bs_{}.py"
    rows["setr-naive-ade20k-512"] = RowRecipe("setr-naive-ade20k", ade.format("Naive", 16))
    rows["setr-mla-ade20k-512-bs8"] = RowRecipe("setr-ade20k", ade.format("MLA", 8), _BS8)
    rows["setr-mla-ade20k-512-bs16"] = RowRecipe("setr-ade20k", ade.format("MLA", 16))
    rows["setr-mla-deit-ade20k-512"] = RowRecipe("setr-ade20k", ade.format("MLA_DeiT", 16))
    rows["setr-pup-ade20k-512"] = RowRecipe("setr-ade20k", ade.format("PUP", 16))
    rows["setr-pup-deit-ade20k-512"] = RowRecipe("setr-ade20k", ade.format("PUP_DeiT", 16))
    pc = "configs/SETR/SETR_{}_480x480_80k_pascal_context_bs_{}.py"
    rows["setr-naive-pascal-context-480"] = RowRecipe("setr-naive-pascal-context", pc.format("Naive", 16))
    rows["setr-mla-pascal-context-480-bs8"] = RowRecipe("setr-pascal-context", pc.format("MLA", 8), _BS8)
    rows["setr-mla-pascal-context-480-bs16"] = RowRecipe("setr-pascal-context", pc.format("MLA", 16))
    rows["setr-mla-deit-pascal-context-480"] = RowRecipe("setr-pascal-context", pc.format("MLA_DeiT", 16))
    rows["setr-pup-pascal-context-480"] = RowRecipe("setr-pascal-context", pc.format("PUP", 16))
    rows["setr-pup-deit-pascal-context-480"] = RowRecipe("setr-pascal-context", pc.format("PUP_DeiT", 16))
    for size in ("small", "medium", "large"):
        rows[f"setr-hlg-{size}-cityscapes"] = RowRecipe(
            "setr-hlg-cityscapes", f"configs/setr_hlg/setr_pup_hlg_{size}_768x768_40k_cityscapes_bs_16.py")
        # the large ADE20K config is a RetinaNet detection config by mistake; its README row trained like its siblings
        rows[f"setr-hlg-{size}-ade20k"] = RowRecipe(
            "setr-hlg-ade20k", f"configs/setr_hlg/setr_pup_hlg_{size}_512x512_160k_ade20k_bs_16.py",
            {"notes": ("the released large ADE20K config is a RetinaNet/COCO detection config; the recipe of "
                       "setr_pup_hlg_{small,medium}_512x512_160k_ade20k_bs_16.py is used",)} if size == "large" else {})
    return rows


ROWS = _rows()


def _kind(config) -> str:
    if getattr(config, "backbone", None) == "hlg":
        return "hlg"
    if getattr(config, "backbone", None) == "vit_mla":
        return "mla"
    head = getattr(config, "decode_head", None) or {}
    return "pup" if int(head.get("num_upsample_layers", 1)) > 1 else "naive"


_DEFAULTS = {
    ("naive", "cityscapes"): "setr-cityscapes", ("pup", "cityscapes"): "setr-cityscapes",
    ("mla", "cityscapes"): "setr-mla-cityscapes", ("hlg", "cityscapes"): "setr-hlg-cityscapes",
    ("naive", "ade20k"): "setr-naive-ade20k", ("pup", "ade20k"): "setr-ade20k", ("mla", "ade20k"): "setr-ade20k",
    ("hlg", "ade20k"): "setr-hlg-ade20k",
    ("naive", "pascal_context"): "setr-naive-pascal-context", ("pup", "pascal_context"): "setr-pascal-context",
    ("mla", "pascal_context"): "setr-pascal-context", ("hlg", "pascal_context"): "setr-hlg-ade20k",
}


def recipe_for(config, dataset: str, entry=None) -> str:
    """The recipe of a SETR model that does not carry one: by head (Naive / PUP / MLA / HLG backbone) and dataset;
    another dataset gets the head's ADE20K recipe (the pipeline is then adapted to the dataset)."""
    base = "pascal_context" if str(dataset).startswith("pascal_context") else str(dataset)
    kind = _kind(config)
    return _DEFAULTS.get((kind, base), _DEFAULTS[(kind, "ade20k")])


def loss_weights(config) -> dict:
    heads = [getattr(config, "decode_head", None) or {}] + list(getattr(config, "auxiliary_heads", None) or [])
    return {("decode_head" if i == 0 else f"auxiliary_heads.{i - 1}"): float(h.get("loss_weight", 1.0))
            for i, h in enumerate(heads)}
