"""The seeds' training schedules as named recipes, and how to scale them to the user's processes.

Every number here is a fact copied from the original configs (as recorded in the fixtures' ``zoo.json``): optimizer,
base learning rate, momentum/betas, weight decay and the parameters it skips, learning-rate multipliers, schedule
(poly power, warmup, steps, cosine restarts), iterations, images per GPU x GPUs and the data pipeline (mmseg's
``Resize(img_scale, ratio_range)`` -> ``RandomCrop(crop, cat_max_ratio)`` -> ``RandomFlip`` ->
``PhotoMetricDistortion`` -> ``Pad(ignore)``, or CSAIL's random short side). Only the ``finetune`` recipe and the
CamVid pipeline are ours (no seed trains on CamVid).

Parameter rules follow mmcv's ``paramwise_cfg.custom_keys``: the first rule (in mmcv's order: longer keys first)
that selects a parameter sets its lr/decay multipliers. Selectors are written in terms of what the mmseg keys meant,
not in terms of mmseg's module names, because the ported modules are named differently:

* ``"backbone"`` / ``"head"``: the model's backbone (its ``backbone``/``encoder`` module) / everything else
  (mmseg's ``decode_head`` and ``auxiliary_head``);
* ``"layer_norm"``: parameters of LayerNorm/GroupNorm modules (what mmseg's ``"norm"`` and ``".ln"`` keys hit: the
  transformer norms; mmcv names batch norms ``bn``, which those keys do not hit);
* ``"batch_norm"``, ``"bias"``: batch-norm parameters, biases (CSAIL decays conv/linear weights only);
* ``"name:<text>"``: parameters whose name contains ``<text>`` (``pos_embed``, ``cls_token``, ...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "ParamRule",
    "Pipeline",
    "Recipe",
    "ResolvedRecipe",
    "Schedule",
    "get_recipe",
    "list_recipes",
    "recipe_for",
    "scale_recipe",
    "DATASET_TRAIN_SCALE",
]


@dataclass(frozen=True)
class ParamRule:
    selector: str
    lr_mult: float = 1.0
    decay_mult: float = 1.0


@dataclass(frozen=True)
class Schedule:
    """Learning-rate policy over optimizer steps (mmcv's ``lr_config`` with ``by_epoch=False``)."""

    policy: str = "poly"  # poly | step | cosine_restart | constant
    power: float = 1.0
    min_lr: float = 0.0  # absolute (mmcv poly ``min_lr``)
    warmup_iters: int = 0
    warmup_ratio: float = 0.1  # linear warmup starts at ratio x the scheduled lr
    steps: tuple[int, ...] = ()  # step policy: iterations where lr *= gamma
    gamma: float = 0.1
    periods: tuple[int, ...] = ()  # cosine restarts: period lengths
    restart_weights: tuple[float, ...] = ()
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        if self.policy not in ("poly", "step", "cosine_restart", "constant"):
            raise ValueError(f"unknown schedule policy {self.policy!r}")
        if self.policy == "cosine_restart" and len(self.periods) != len(self.restart_weights):
            raise ValueError("cosine_restart needs as many restart_weights as periods")


@dataclass(frozen=True)
class Pipeline:
    """Training data pipeline; ``None`` fields switch a step off."""

    scale: tuple[int, int] | None = (2048, 512)  # mmseg img_scale (long, short); the image is fit inside scale x ratio
    ratio_range: tuple[float, float] | None = (0.5, 2.0)
    short_sides: tuple[int, ...] | None = None  # CSAIL: random short side from this list ...
    max_size: int | None = None  # ... with the long side capped here
    crop_size: tuple[int, int] | None = (512, 512)  # (height, width)
    cat_max_ratio: float = 0.75  # 1.0: plain random crop
    flip_prob: float = 0.5
    photometric: bool = True
    pad_small: bool = True  # crops smaller than crop_size are padded with the ignore index; False: refuse them
    size_divisor: int | None = None  # pad each batch to a multiple of this (CSAIL's padding_constant)


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str  # "" = any family
    dataset: str  # label-set name the seed trained on, "" = any
    description: str
    optimizer: str  # "sgd" | "adamw"
    lr: float
    weight_decay: float
    schedule: Schedule
    iterations: int
    samples_per_gpu: int
    gpus: int
    pipeline: Pipeline
    rules: tuple[ParamRule, ...] = ()
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    source: str = ""

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")

    @property
    def total_batch_size(self) -> int:
        return self.samples_per_gpu * self.gpus

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------- facts
# mmseg's dataset configs: train Resize img_scale (long, short) with ratio_range (0.5, 2.0)
DATASET_TRAIN_SCALE = {
    "ade20k": (2048, 512),
    "cityscapes": (2048, 1024),
    "pascal_context": (520, 520),
    "coco_stuff": (2048, 512),
    "camvid": (480, 360),  # ours: CamVid's native size (no seed trains on CamVid)
}

_HEAD_X10 = (ParamRule("head", lr_mult=10.0),)
_SETR_SCHEDULE = Schedule("poly", power=0.9, min_lr=1e-4)
_MMSEG_WARMUP_POLY = Schedule("poly", power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6)
_REGPROXY_RULES = (
    ParamRule("name:dist_token", decay_mult=0.0),
    ParamRule("name:cls_token", decay_mult=0.0),
    ParamRule("name:pos_embed", decay_mult=0.0),
    ParamRule("layer_norm", decay_mult=0.0),
)
_SEMASK_RULES = (
    ParamRule("name:relative_position_bias_table", decay_mult=0.0),
    ParamRule("name:absolute_pos_embed", decay_mult=0.0),
    ParamRule("layer_norm", decay_mult=0.0),
)
_CSAIL_RULES = (ParamRule("bias", decay_mult=0.0), ParamRule("batch_norm", decay_mult=0.0))


def _mmseg_pipeline(dataset: str, crop: int, **kwargs) -> Pipeline:
    return Pipeline(scale=DATASET_TRAIN_SCALE[dataset], crop_size=(crop, crop), **kwargs)


def _setr(name, dataset, lr, batch, per_gpu, iters, crop, description):
    return Recipe(
        name=name, family="setr", dataset=dataset, description=description, optimizer="sgd", lr=lr,
        weight_decay=0.0, schedule=_SETR_SCHEDULE, iterations=iters, samples_per_gpu=per_gpu, gpus=batch // per_gpu,
        pipeline=_mmseg_pipeline(dataset, crop), rules=_HEAD_X10, momentum=0.9,
        source="fudan-zvg/SETR configs/SETR/*.py (fixtures/setr/zoo.json 'train')",
    )


_RECIPES: list[Recipe] = [
    # ---- SETR: SGD momentum 0.9, no weight decay, heads x10 lr, poly 0.9 down to 1e-4
    _setr("setr-cityscapes", "cityscapes", 0.01, 8, 1, 80000, 768, "SETR-Naive/PUP Cityscapes 768x768, bs 8, 80k"),
    _setr("setr-mla-cityscapes", "cityscapes", 0.002, 8, 1, 80000, 768, "SETR-MLA Cityscapes 768x768, bs 8, 80k"),
    _setr("setr-naive-ade20k", "ade20k", 0.01, 16, 2, 160000, 512, "SETR-Naive ADE20K 512x512, bs 16, 160k"),
    _setr("setr-ade20k", "ade20k", 0.001, 16, 2, 160000, 512, "SETR-PUP/MLA ADE20K 512x512, bs 16, 160k"),
    _setr("setr-naive-pascal-context", "pascal_context", 0.01, 16, 4, 80000, 480,
          "SETR-Naive Pascal-Context 480x480, bs 16, 80k"),
    _setr("setr-pascal-context", "pascal_context", 0.001, 16, 2, 80000, 480,
          "SETR-PUP/MLA Pascal-Context 480x480, bs 16, 80k"),
    Recipe(
        name="setr-hlg-cityscapes", family="setr", dataset="cityscapes",
        description="SETR-PUP with HLG backbones, Cityscapes 768x768, bs 16, 40k", optimizer="adamw", lr=6e-5,
        weight_decay=0.0, schedule=_MMSEG_WARMUP_POLY, iterations=40000, samples_per_gpu=2, gpus=8,
        pipeline=_mmseg_pipeline("cityscapes", 768), rules=(ParamRule("head", lr_mult=10.0),
                                                            ParamRule("layer_norm", decay_mult=0.0)),
        source="fudan-zvg/SETR configs/hlg/*.py (fixtures/setr/zoo.json 'train')",
    ),
    # ---- RegionProxy: AdamW 6e-5, wd 0.01 except tokens/norms, warmup 1500, poly 1.0 or cosine restarts, bs 16
    Recipe(
        name="regproxy-poly-ade20k", family="regionproxy", dataset="ade20k",
        description="RegionProxy ViT-Ti/S/R26 ADE20K 512x512, AdamW + poly, bs 16, 160k", optimizer="adamw",
        lr=6e-5, weight_decay=0.01, schedule=_MMSEG_WARMUP_POLY, iterations=160000, samples_per_gpu=2, gpus=8,
        pipeline=_mmseg_pipeline("ade20k", 512), rules=_REGPROXY_RULES,
        source="YiF-Zhang/RegionProxy configs/regproxy_ade20k/*adamw-poly* (fixtures/regproxy/zoo.json 'schedule')",
    ),
    Recipe(
        name="regproxy-cr-ade20k", family="regionproxy", dataset="ade20k",
        description="RegionProxy ViT-B/L, R50-L ADE20K, AdamW + cosine restarts, bs 16, 160k", optimizer="adamw",
        lr=6e-5, weight_decay=0.01,
        schedule=Schedule("cosine_restart", warmup_iters=1500, warmup_ratio=1e-6, periods=(20000, 40000, 100000),
                          restart_weights=(1.0, 0.5, 0.25), min_lr_ratio=0.0),
        iterations=160000, samples_per_gpu=2, gpus=8, pipeline=_mmseg_pipeline("ade20k", 512),
        rules=_REGPROXY_RULES,
        source="YiF-Zhang/RegionProxy configs/regproxy_ade20k/*adamw-cr* (fixtures/regproxy/zoo.json 'schedule')",
    ),
    Recipe(
        name="regproxy-poly-cityscapes", family="regionproxy", dataset="cityscapes",
        description="RegionProxy ViT-Ti/S Cityscapes 768x768, AdamW + poly, bs 16, 80k", optimizer="adamw",
        lr=6e-5, weight_decay=0.01, schedule=_MMSEG_WARMUP_POLY, iterations=80000, samples_per_gpu=2, gpus=8,
        pipeline=_mmseg_pipeline("cityscapes", 768), rules=_REGPROXY_RULES,
        source="YiF-Zhang/RegionProxy configs/regproxy_cityscapes/*adamw-poly* (fixtures/regproxy/zoo.json)",
    ),
    Recipe(
        name="regproxy-cr-cityscapes", family="regionproxy", dataset="cityscapes",
        description="RegionProxy ViT-B/L Cityscapes 768x768, AdamW + cosine restarts, bs 16, 80k", optimizer="adamw",
        lr=6e-5, weight_decay=0.01,
        schedule=Schedule("cosine_restart", warmup_iters=1500, warmup_ratio=1e-6, periods=(10000, 20000, 50000),
                          restart_weights=(1.0, 0.5, 0.25), min_lr_ratio=0.0),
        iterations=80000, samples_per_gpu=2, gpus=8, pipeline=_mmseg_pipeline("cityscapes", 768),
        rules=_REGPROXY_RULES,
        source="YiF-Zhang/RegionProxy configs/regproxy_cityscapes/*adamw-cr* (fixtures/regproxy/zoo.json)",
    ),
    # ---- SeMask-FPN: AdamW, warmup 1500, poly 1.0, 80k
    Recipe(
        name="semask-ade20k", family="semask", dataset="ade20k",
        description="SeMask-FPN ADE20K 512x512 (640 for Swin-L), AdamW 1e-4, bs 16, 80k", optimizer="adamw",
        lr=1e-4, weight_decay=1e-4, schedule=_MMSEG_WARMUP_POLY, iterations=80000, samples_per_gpu=8, gpus=2,
        pipeline=_mmseg_pipeline("ade20k", 512), rules=_SEMASK_RULES,
        source="Picsart-AI-Research/SeMask-Segmentation SeMask-FPN/configs/semask_swin/ade20k (fixtures/semask/zoo.json)",
    ),
    Recipe(
        name="semask-cityscapes", family="semask", dataset="cityscapes",
        description="SeMask-FPN Cityscapes 768x768, AdamW 1e-3 wd 0.05, bs 8, 80k", optimizer="adamw",
        lr=1e-3, weight_decay=0.05,
        schedule=Schedule("poly", power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-5),
        iterations=80000, samples_per_gpu=4, gpus=2, pipeline=_mmseg_pipeline("cityscapes", 768),
        rules=_SEMASK_RULES,
        source="Picsart-AI-Research/SeMask-Segmentation SeMask-FPN/configs/semask_swin/cityscapes (fixtures/semask/zoo.json)",
    ),
    Recipe(
        name="semask-coco-stuff", family="semask", dataset="coco_stuff",
        description="SeMask-FPN COCO-Stuff 10k 512x512 (640 for Swin-L), AdamW 1e-4, bs 16, 80k", optimizer="adamw",
        lr=1e-4, weight_decay=1e-4, schedule=_MMSEG_WARMUP_POLY, iterations=80000, samples_per_gpu=4, gpus=4,
        pipeline=_mmseg_pipeline("coco_stuff", 512), rules=_SEMASK_RULES,
        source="Picsart-AI-Research/SeMask-Segmentation SeMask-FPN/configs/semask_swin/coco_stuff10k (fixtures/semask/zoo.json)",
    ),
    # ---- UN-EPT: AdamW 1e-4, backbone x0.1, one step at 126k, bs 16, 160k, 480 crops
    Recipe(
        name="unept-ade20k", family="unept", dataset="ade20k",
        description="UN-EPT ADE20K 480x480, AdamW 1e-4 (backbone x0.1), step at 126k, bs 16, 160k",
        optimizer="adamw", lr=1e-4, weight_decay=1e-4, schedule=Schedule("step", steps=(126000,), gamma=0.1),
        iterations=160000, samples_per_gpu=2, gpus=8, pipeline=_mmseg_pipeline("ade20k", 480),
        rules=(ParamRule("backbone", lr_mult=0.1),),
        source="amazon-science/unified-ept configs/*_ade20k.py (fixtures/unept/zoo.json 'train')",
    ),
    Recipe(
        name="unept-pascal-context", family="unept", dataset="pascal_context",
        description="UN-EPT Pascal-Context 480x480, AdamW 1e-4 (backbone x0.1), step at 126k, bs 16, 160k",
        optimizer="adamw", lr=1e-4, weight_decay=1e-4, schedule=Schedule("step", steps=(126000,), gamma=0.1),
        iterations=160000, samples_per_gpu=2, gpus=8, pipeline=_mmseg_pipeline("pascal_context", 480),
        rules=(ParamRule("backbone", lr_mult=0.1),),
        source="amazon-science/unified-ept configs/deit_unept_pcontext.py (fixtures/unept/zoo.json 'train')",
    ),
    # ---- CSAIL: SGD 0.02, momentum 0.9, wd 1e-4 on conv/linear weights, poly 0.9, epochs x 5000 iterations, 8 GPUs
    Recipe(
        name="csail-ade20k", family="csail", dataset="ade20k",
        description="CSAIL ADE20K: SGD 0.02, poly 0.9, 2 images x 8 GPUs, 20 epochs x 5000 iterations",
        optimizer="sgd", lr=0.02, weight_decay=1e-4, schedule=Schedule("poly", power=0.9), iterations=100000,
        samples_per_gpu=2, gpus=8,
        pipeline=Pipeline(scale=None, ratio_range=None, short_sides=(300, 375, 450, 525, 600), max_size=1000,
                          crop_size=None, cat_max_ratio=1.0, flip_prob=0.5, photometric=False, size_divisor=8),
        rules=_CSAIL_RULES, momentum=0.9,
        source="CSAILVision/semantic-segmentation-pytorch config/ade20k-*.yaml, README (8 GPUs) (fixtures/csail/zoo.json)",
    ),
    # ---- ours: a short finetuning recipe for small datasets and models that are not zoo presets
    Recipe(
        name="finetune", family="", dataset="",
        description="Finetuning on a small dataset: AdamW 1e-4 (heads x10), wd 0.01 except norms/biases/tokens, "
                    "linear warmup then poly 1.0, 2000 steps of 8 images",
        optimizer="adamw", lr=1e-4, weight_decay=0.01,
        schedule=Schedule("poly", power=1.0, warmup_iters=100, warmup_ratio=1e-3), iterations=2000,
        samples_per_gpu=8, gpus=1, pipeline=Pipeline(scale=None, crop_size=(512, 512)),
        rules=(ParamRule("name:pos_embed", decay_mult=0.0), ParamRule("name:cls_token", decay_mult=0.0),
               ParamRule("name:relative_position_bias_table", decay_mult=0.0), ParamRule("head", lr_mult=10.0),
               ParamRule("layer_norm", decay_mult=0.0), ParamRule("batch_norm", decay_mult=0.0),
               ParamRule("bias", decay_mult=0.0)),
        source="hf_seg (not a seed recipe)",
    ),
]
_BY_NAME = {r.name: r for r in _RECIPES}
if len(_BY_NAME) != len(_RECIPES):  # pragma: no cover - guarded by tests
    raise RuntimeError("duplicate recipe names")

# CSAIL rows that differ from the common schedule (README/configs: images per GPU, epochs)
_CSAIL_ROWS = {
    ("mobilenetv2dilated", "c1_deepsup"): dict(samples_per_gpu=3, epochs=20),
    ("resnet101dilated", "ppm_deepsup"): dict(samples_per_gpu=2, epochs=25),
    ("resnet50", "upernet"): dict(samples_per_gpu=2, epochs=30, size_divisor=32),
    ("resnet101", "upernet"): dict(samples_per_gpu=2, epochs=40, size_divisor=32),
    ("hrnetv2", "c1"): dict(samples_per_gpu=2, epochs=30, size_divisor=32),
}


def list_recipes(family: str | None = None) -> list[Recipe]:
    return [r for r in _RECIPES if family is None or r.family in (family, "")]


def get_recipe(name: str) -> Recipe:
    if name not in _BY_NAME:
        import difflib

        close = difflib.get_close_matches(name, _BY_NAME, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no training recipe named {name!r}{hint}; known: {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def _family_recipes(family: str, dataset: str) -> list[Recipe]:
    return [r for r in _RECIPES if r.family == family and r.dataset == dataset]


def recipe_for(family: str, config=None, dataset: str | None = None, entry=None) -> Recipe:
    """The seed's recipe for a model: from its zoo entry (``extra['recipe']`` / ``extra['train']``) when given,
    else from the family, the architecture in ``config`` and the dataset it was trained on.

    A dataset the family never trained on gets the family's ADE20K (or first) recipe, i.e. the paper's optimizer and
    schedule; the data pipeline is adapted to the dataset by :func:`resolve` later.
    """
    extra = dict(getattr(entry, "extra", None) or {})
    original = str(getattr(entry, "original_name", "") or "")
    text = " ".join(str(x) for x in (getattr(entry, "name", ""), getattr(entry, "description", ""), original)).lower()
    dataset = dataset or getattr(entry, "dataset", None) or ""
    if extra.get("recipe"):
        recipe = get_recipe(extra["recipe"])
    elif family == "csail":
        recipe = _csail_recipe(config)
    else:
        candidates = _family_recipes(family, dataset) or _family_recipes(family, "ade20k") or [
            r for r in _RECIPES if r.family == family]
        if not candidates:
            return get_recipe("finetune")
        recipe = _pick_variant(family, candidates, config, text)
    if entry is not None and getattr(entry, "crop_size", None) and recipe.pipeline.crop_size is not None:
        recipe = replace(recipe, pipeline=replace(recipe.pipeline, crop_size=tuple(entry.crop_size)))
    train = dict(_row_facts(original, recipe))
    train.update(extra.get("train") or {})
    if train:
        recipe = override(recipe, **train)
    return recipe


def _row_facts(original_name: str, recipe: Recipe) -> dict:
    """Iterations and batch size that mmseg-style config names state (``..._80k_..._bs_8``)."""
    import re

    facts = {}
    if recipe.family == "csail" or not original_name:
        return facts
    iters = re.search(r"[_+-](\d+)k[_+-]", original_name)
    if iters:
        facts["iterations"] = int(iters.group(1)) * 1000
    batch = re.search(r"bs_?(\d+)", original_name)
    if batch:
        images = int(batch.group(1))
        if recipe.family == "setr" and images < recipe.total_batch_size:  # SETR's bs-8 rows: 1 image x 8 GPUs
            facts["samples_per_gpu"], facts["gpus"] = 1, images
        elif images % recipe.samples_per_gpu == 0:
            facts["gpus"] = images // recipe.samples_per_gpu
    return facts


def _pick_variant(family, candidates, config, text) -> Recipe:
    def named(word):
        return [r for r in candidates if word in r.name]

    if family == "setr":
        decoder = str(_get(config, "decode_head", {}).get("type", "") if isinstance(
            _get(config, "decode_head", None), dict) else "").lower()
        backbone = str(_get(config, "backbone", "")).lower()
        if "hlg" in backbone or "hlg" in text:
            return (named("hlg") or candidates)[0]
        if "mla" in decoder or "mla" in backbone or "mla" in text:
            return (named("mla") or [r for r in candidates if "naive" not in r.name and "hlg" not in r.name]
                    or candidates)[0]
        if "naive" in decoder or "naive" in text:
            return (named("naive") or candidates)[0]
        plain = [r for r in candidates if not any(w in r.name for w in ("naive", "mla", "hlg"))]
        return (plain or candidates)[0]
    if family == "regionproxy":
        # the ViT-B/L and R50-L rows train with cosine restarts, the others with poly
        hidden = _get(config, "hidden_size", None) or _get(config, "embed_dim", None) or 0
        large = "-cr" in text or "cosine" in text or (isinstance(hidden, int) and hidden >= 768)
        return (named("-cr-" if large else "-poly-") or candidates)[0]
    return candidates[0]


def _csail_recipe(config) -> Recipe:
    base = get_recipe("csail-ade20k")
    row = _CSAIL_ROWS.get((_get(config, "encoder", ""), _get(config, "decoder", "")), {})
    if not row:
        return base
    pipeline = replace(base.pipeline, size_divisor=row.get("size_divisor", base.pipeline.size_divisor))
    return replace(base, samples_per_gpu=row["samples_per_gpu"], iterations=row["epochs"] * 5000, pipeline=pipeline,
                   description=f"CSAIL ADE20K: SGD 0.02, poly 0.9, {row['samples_per_gpu']} images x 8 GPUs, "
                               f"{row['epochs']} epochs x 5000 iterations")


def _get(config, key, default):
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def override(recipe: Recipe, **changes) -> Recipe:
    """A copy with recipe fields (``lr``, ``iterations``, ...) or pipeline fields (``crop_size``, ...) replaced."""
    pipeline_fields = {f.name for f in dataclasses.fields(Pipeline)}
    schedule_fields = {f.name for f in dataclasses.fields(Schedule)}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    pipe = {k: v for k, v in changes.items() if k in pipeline_fields}
    sched = {k: v for k, v in changes.items() if k in schedule_fields and k not in recipe_fields}
    rest = {k: v for k, v in changes.items() if k in recipe_fields}
    unknown = set(changes) - set(pipe) - set(sched) - set(rest)
    if unknown:
        raise ValueError(f"unknown recipe fields {sorted(unknown)}")
    for key in ("crop_size", "scale", "ratio_range"):
        if pipe.get(key) is not None:
            pipe[key] = tuple(pipe[key])
    if pipe:
        rest["pipeline"] = replace(recipe.pipeline, **pipe)
    if sched:
        rest["schedule"] = replace(recipe.schedule, **sched)
    return replace(recipe, **rest)


# ---------------------------------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class ResolvedRecipe:
    """A recipe fitted to this run: per-device batch, accumulation and steps for ``num_processes`` processes."""

    recipe: Recipe
    num_processes: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    max_steps: int
    lr: float
    scaling: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.num_processes * self.gradient_accumulation_steps

    def schedule_steps(self, value: int) -> int:
        """An iteration count of the original schedule (warmup, step milestones) in this run's optimizer steps."""
        return int(round(value * self.max_steps / self.recipe.iterations)) if self.recipe.iterations else value

    def summary(self) -> str:
        r = self.recipe
        lines = [
            f"recipe {r.name}: {r.description}",
            f"  original: {r.optimizer} lr {r.lr:g}, {r.samples_per_gpu} images x {r.gpus} GPUs = "
            f"{r.total_batch_size} per step, {r.iterations} steps, schedule {r.schedule.policy}",
            f"  this run ({self.scaling}): {self.num_processes} process(es) x {self.per_device_batch_size} images x "
            f"{self.gradient_accumulation_steps} accumulation = {self.effective_batch_size} per step, lr {self.lr:g}, "
            f"{self.max_steps} steps",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def scale_recipe(
    recipe: Recipe,
    num_processes: int,
    scaling: str = "accumulate",
    per_device_batch_size: int | None = None,
    gradient_accumulation_steps: int | None = None,
    max_steps: int | None = None,
    lr: float | None = None,
) -> ResolvedRecipe:
    """Fit ``recipe`` to ``num_processes`` processes.

    * ``"accumulate"`` (default, the paper's schedule): keep the original images per step with gradient accumulation
      (``ceil(total / (per_device x processes))``), same lr and number of steps.
    * ``"linear"``: no accumulation; lr scaled by (images per step / original images per step) and the number of
      steps scaled so the run sees as many images as the original (the linear scaling rule).
    * ``"none"``: the per-device batch as given, no accumulation, same lr and steps.

    Explicit ``per_device_batch_size``, ``gradient_accumulation_steps``, ``max_steps`` and ``lr`` always win.
    """
    if num_processes < 1:
        raise ValueError("num_processes must be >= 1")
    if scaling not in ("accumulate", "linear", "none"):
        raise ValueError(f"scaling must be 'accumulate', 'linear' or 'none', got {scaling!r}")
    notes = []
    per_device = per_device_batch_size or recipe.samples_per_gpu
    total = recipe.total_batch_size
    if gradient_accumulation_steps is not None:
        accumulation = gradient_accumulation_steps
    elif scaling == "accumulate":
        accumulation = max(1, math.ceil(total / (per_device * num_processes)))
    else:
        accumulation = 1
    effective = per_device * num_processes * accumulation
    if scaling == "accumulate" and effective != total:
        notes.append(f"{effective} images per step instead of the original {total} "
                     f"({per_device} x {num_processes} does not divide it)")
    new_lr = recipe.lr
    steps = recipe.iterations
    if scaling == "linear":
        new_lr = recipe.lr * effective / total
        steps = max(1, int(round(recipe.iterations * total / effective)))
    if lr is not None:
        new_lr = lr
    if max_steps is not None and max_steps > 0:
        if max_steps != steps:
            notes.append(f"--max-steps {max_steps}: the schedule is compressed from {steps} steps")
        steps = max_steps
    return ResolvedRecipe(recipe=recipe, num_processes=num_processes, per_device_batch_size=per_device,
                          gradient_accumulation_steps=accumulation, max_steps=steps, lr=new_lr, scaling=scaling,
                          notes=tuple(notes))
