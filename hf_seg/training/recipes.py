"""Training recipes as data: the shared dataclasses, the registry over the families' recipe tables, how a model finds
its recipe, and how a recipe is fitted to the processes of a run.

Each family lists the recipes of its original configs in ``hf_seg/modeling/<family>/training.py`` and says explicitly
which recipe every zoo row trains with (row name -> :class:`RowRecipe`: the original config file and the row's own
values such as 40k iterations or a batch of 8). A preset and a converted model carry the resolved recipe in
``config.training_recipe`` (see :func:`recipe_record`), so a folder, a hub copy and the preset resolve the same
recipe. Shared code names no family: it asks the family's declaration (:class:`hf_seg.families.Family`: ``recipes``,
``recipe_rows``, ``recipe_for``).

Parameter rules follow mmcv's ``paramwise_cfg.custom_keys`` semantics (the first rule that selects a parameter sets its
lr/decay multipliers), written in terms of what the original keys selected, because the ported modules are named
differently (the tests check every rule parameter by parameter through the converters' rename maps):

* ``"backbone"`` / ``"head"``: parameters under the family's ``backbone_prefixes`` / everything else;
* ``"layer_norm"``: parameters of LayerNorm/GroupNorm modules (what mmseg's ``"norm"`` and ``".ln"`` keys hit in the
  transformers; mmcv names batch norms ``bn``, which those keys do not hit);
* ``"batch_norm"``, ``"bias"``: batch-norm parameters, biases;
* ``"name:<text>"``: parameters whose name contains ``<text>`` (``pos_embed``, ``cls_token``, ...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

__all__ = [
    "DATASET_TRAIN_SCALE",
    "ParamRule",
    "Pipeline",
    "Recipe",
    "ResolvedRecipe",
    "RowRecipe",
    "Schedule",
    "family_rows",
    "get_recipe",
    "list_recipes",
    "override",
    "recipe_for",
    "recipe_record",
    "row_recipe",
    "scale_recipe",
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
    warmup_iters: int = 0  # linear warm-up (mmcv ``warmup='linear'``); 0 = none
    warmup_ratio: float = 0.1  # the warm-up starts at ratio x the scheduled lr
    steps: tuple[int, ...] = ()  # step policy: iterations where lr *= gamma
    step_every: int = 0  # step policy with an int ``step``: lr *= gamma every ``step_every`` iterations
    gamma: float = 0.1
    periods: tuple[int, ...] = ()  # cosine restarts: period lengths
    restart_weights: tuple[float, ...] = ()
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        if self.policy not in ("poly", "step", "cosine_restart", "constant"):
            raise ValueError(f"unknown schedule policy {self.policy!r}")
        if self.policy == "cosine_restart" and len(self.periods) != len(self.restart_weights):
            raise ValueError("cosine_restart needs as many restart_weights as periods")
        if self.warmup_iters and not 0 < self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {self.warmup_ratio}")


@dataclass(frozen=True)
class Pipeline:
    """Training data pipeline; ``None`` fields switch a step off.

    mmseg: ``Resize(img_scale, ratio_range | ratio list)`` -> ``RandomCrop(crop, cat_max_ratio)`` -> ``RandomFlip`` ->
    ``PhotoMetricDistortion`` -> ``Normalize`` -> ``Pad(crop, seg_pad_val=255)``; or a random short side from a list
    with the long side capped, a flip, no crop, batches padded to a multiple of ``size_divisor``.
    """

    scale: tuple[int, int] | None = (2048, 512)  # mmseg img_scale (long, short); the image is fit inside scale x ratio
    ratio_range: tuple[float, float] | None = (0.5, 2.0)  # ratio ~ U(lo, hi)
    ratio_choices: tuple[float, ...] | None = None  # ratio = a random choice (how some mmseg forks read a list)
    short_sides: tuple[int, ...] | None = None  # or a random short side from this list ...
    max_size: int | None = None  # ... with the long side capped here
    size_rounding: str = "round"  # rescaled size: "round" (mmcv) or "floor" (truncation)
    crop_size: tuple[int, int] | None = (512, 512)  # (height, width)
    cat_max_ratio: float = 0.75  # 1.0: plain random crop
    cat_max_tries: int = 10  # mmseg checks up to 10 crops
    flip_prob: float = 0.5
    photometric: bool = True  # mmseg PhotoMetricDistortion with its defaults
    pad_small: bool = True  # crops smaller than crop_size are padded with the ignore index; False: refuse them
    size_divisor: int | None = None  # pad each batch to a multiple of this

    def __post_init__(self):
        if self.ratio_range is not None and self.ratio_choices is not None:
            raise ValueError("give ratio_range or ratio_choices, not both")
        if self.size_rounding not in ("round", "floor"):
            raise ValueError(f"size_rounding must be 'round' or 'floor', got {self.size_rounding!r}")


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str  # "" = any family
    dataset: str  # label-set name the original trained on, "" = any
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
    max_grad_norm: float = 0.0  # 0: no gradient clipping (no original clips)
    bn_momentum: float | None = None  # BatchNorm running-average momentum while training (None: the model's)
    bn_bias_corrected: bool = False  # bias-corrected running average (hf_seg.training.batchnorm)
    original_rules: dict = field(default_factory=dict)  # the original's paramwise settings, as written
    source: str = ""
    notes: tuple[str, ...] = ()  # what differs from the original and why

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")

    @property
    def total_batch_size(self) -> int:
        return self.samples_per_gpu * self.gpus

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The inverse of :meth:`to_dict` (tuples restored); unknown keys are refused."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}")
        data["schedule"] = _dataclass_from_dict(Schedule, data.get("schedule", {}))
        data["pipeline"] = _dataclass_from_dict(Pipeline, data.get("pipeline", {}))
        data["rules"] = tuple(ParamRule(**r) for r in data.get("rules", ()))
        for key in ("betas", "notes"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _dataclass_from_dict(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class RowRecipe:
    """How one zoo row trains: a recipe of its family's table, the original config, and the row's own values."""

    recipe: str
    original_config: str = ""
    changes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- facts
# mmseg's dataset configs: train Resize img_scale (long, short) with ratio_range (0.5, 2.0); used when a recipe trains
# on a dataset other than its own
DATASET_TRAIN_SCALE = {
    "ade20k": (2048, 512),
    "cityscapes": (2048, 1024),
    "pascal_context": (520, 520),
    "pascal_context_60": (520, 520),
    "coco_stuff": (2048, 512),
    "camvid": (480, 360),  # ours: CamVid's native size (no original trains on CamVid)
}

# ours: a short finetuning recipe for small datasets and for models without an original recipe
FINETUNE = Recipe(
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
    source="hf_seg (not an original recipe)",
)


# ----------------------------------------------------------------------------------------------- registry
def family_rows(family: str) -> dict[str, RowRecipe]:
    """The zoo rows of ``family`` and how each trained (the family's ``recipe_rows`` hook)."""
    from ..families import get_family

    return dict(get_family(family).hook("recipe_rows") or {})


@lru_cache(maxsize=None)
def _registry() -> dict[str, Recipe]:
    from ..families import families

    recipes = {FINETUNE.name: FINETUNE}
    for name, family in families().items():
        for recipe in family.hook("recipes") or ():
            if recipe.name in recipes:
                raise ValueError(f"duplicate recipe name {recipe.name!r}")
            if recipe.family != name:
                raise ValueError(f"recipe {recipe.name!r} is listed by {name!r} but says family {recipe.family!r}")
            recipes[recipe.name] = recipe
    return recipes


def list_recipes(family: str | None = None) -> list[Recipe]:
    return [r for r in _registry().values() if family is None or r.family in (family, "")]


def get_recipe(name: str) -> Recipe:
    registry = _registry()
    if name not in registry:
        import difflib

        close = difflib.get_close_matches(name, registry, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no training recipe named {name!r}{hint}; known: {sorted(registry)}")
    return registry[name]


def _family_of_row(row: str, family: str | None = None) -> str | None:
    from ..families import families

    for name in ([family] if family else list(families())):
        if row in family_rows(name):
            return name
    return None


def row_recipe(row: str, family: str | None = None) -> Recipe:
    """The recipe zoo row ``row`` trained with (its family's recipe with the row's own values applied)."""
    owner = _family_of_row(row, family)
    if owner is None:
        raise KeyError(f"no training recipe for zoo row {row!r}")
    spec = family_rows(owner)[row]
    recipe = get_recipe(spec.recipe)
    recipe = override(recipe, **spec.changes) if spec.changes else recipe
    return replace(recipe, source=f"{recipe.source}; row {row}: {spec.original_config}".strip("; "))


def row_for_original_config(family: str, config_path: str) -> str | None:
    """The zoo row whose original config file has the name of ``config_path`` (``None`` if none or several)."""
    from pathlib import PurePath

    name = PurePath(str(config_path)).name
    matches = [row for row, spec in family_rows(family).items()
               if spec.original_config and PurePath(spec.original_config).name == name]
    return matches[0] if len(matches) == 1 else None


def recipe_record(recipe: Recipe, row: str = "", original_config: str = "", how: str = "") -> dict[str, Any]:
    """What a model carries in ``config.training_recipe`` to resolve its own recipe later."""
    return {"row": row, "original_config": original_config, "how": how, "recipe": recipe.to_dict()}


def record_for_row(row: str, family: str | None = None) -> dict[str, Any]:
    owner = _family_of_row(row, family)
    if owner is None:
        raise KeyError(f"no training recipe for zoo row {row!r}")
    return recipe_record(row_recipe(row, owner), row=row, original_config=family_rows(owner)[row].original_config,
                         how=f"zoo row {row}")


def recipe_for(family: str, config=None, dataset: str | None = None, entry=None) -> Recipe:
    """The original recipe of a model, in this order: the record the model carries (``config.training_recipe``,
    written by presets and converters), its zoo row (``entry``), the family's choice for the architecture and the
    dataset (its ``recipe_for`` hook), and :data:`FINETUNE` for a family without recipes."""
    return recipe_and_origin(family, config, dataset, entry)[0]


def recipe_and_origin(family: str, config=None, dataset: str | None = None, entry=None) -> tuple[Recipe, dict]:
    from ..families import get_family

    record = _get(config, "training_recipe", None)
    if isinstance(record, dict) and record.get("recipe"):
        origin = {k: record.get(k, "") for k in ("row", "original_config", "how")}
        origin["source"] = "config.training_recipe"
        return Recipe.from_dict(record["recipe"]), origin
    row = getattr(entry, "name", None)
    if row and _family_of_row(row, family):
        record = record_for_row(row, family)
        return Recipe.from_dict(record["recipe"]), {**{k: record[k] for k in ("row", "original_config", "how")},
                                                     "source": "zoo row"}
    choose = get_family(family).hook("recipe_for")
    name = choose(config, dataset or getattr(entry, "dataset", None) or "", entry) if choose is not None else None
    if name is None:
        return FINETUNE, {"row": "", "original_config": "", "how": "no original recipe", "source": "default"}
    if name in family_rows(family):
        record = record_for_row(name, family)
        return Recipe.from_dict(record["recipe"]), {
            **{k: record[k] for k in ("row", "original_config")}, "source": "default",
            "how": f"zoo row {name}, chosen from the architecture (the model carries no recipe)"}
    return get_recipe(name), {"row": "", "original_config": "", "source": "default",
                              "how": f"{name}, chosen from the architecture and dataset (the model carries no recipe)"}


def _get(config, key, default):
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def override(recipe: Recipe, **changes) -> Recipe:
    """A copy with recipe fields (``lr``, ``iterations``, ...), schedule fields (``warmup_ratio``, ...) or pipeline
    fields (``crop_size``, ...) replaced."""
    pipeline_fields = {f.name for f in dataclasses.fields(Pipeline)}
    schedule_fields = {f.name for f in dataclasses.fields(Schedule)}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    pipe = {k: v for k, v in changes.items() if k in pipeline_fields}
    sched = {k: v for k, v in changes.items() if k in schedule_fields and k not in recipe_fields}
    rest = {k: v for k, v in changes.items() if k in recipe_fields}
    unknown = set(changes) - set(pipe) - set(sched) - set(rest)
    if unknown:
        raise ValueError(f"unknown recipe fields {sorted(unknown)}")
    for key in ("crop_size", "scale", "ratio_range", "ratio_choices", "short_sides"):
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
