"""The recipe of an original config that is being converted, so that the converted model carries it
(``config.training_recipe``).

In this order: the training sections of the config itself (mmseg/mmcv ``optimizer``, ``optimizer_config``,
``lr_config``, ``runner``/``total_iters``, ``data.samples_per_gpu``, ``train_pipeline``; a family may parse another
format with its ``recipe_from_original`` hook), completed by the zoo row whose original config file has the same name
(for the number of GPUs, which configs do not state); else that row's recipe; else nothing (finetune then chooses by
architecture). mmcv semantics: ``custom_keys`` are tried longest first (ties alphabetically), a ``step`` given as an
int decays every that many iterations, ``optimizer_config.grad_clip`` is the only gradient clipping.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePath
from typing import Any

from .recipes import (ParamRule, Recipe, Schedule, family_rows, get_recipe, override, recipe_record,
                      row_for_original_config, row_recipe)

__all__ = ["record_for_original", "recipe_from_mmseg", "rules_from_custom_keys"]

_POLICIES = {"poly": "poly", "step": "step", "cosinerestart": "cosine_restart", "fixed": "constant"}


def rules_from_custom_keys(custom_keys: dict) -> tuple[ParamRule, ...]:
    """mmcv ``custom_keys`` as parameter rules, in mmcv's matching order. ``head`` / ``backbone`` select the model's
    heads / backbone, ``norm`` and ``.ln`` its layer norms (what those keys hit in the released models), any other
    key the parameters whose name contains it."""
    rules = []
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        spec = custom_keys[key] or {}
        selector = {"head": "head", "backbone": "backbone", "norm": "layer_norm", ".ln": "layer_norm"}.get(
            key, f"name:{key}")
        rule = ParamRule(selector, lr_mult=float(spec.get("lr_mult", 1.0)), decay_mult=float(spec.get("decay_mult", 1.0)))
        earlier = [r for r in rules if r.selector == selector]
        if earlier and earlier[0] != rule:
            raise ValueError(f"custom_keys {custom_keys}: keys that select the same parameters ({selector}) with "
                             f"different multipliers are not supported")
        if not earlier:
            rules.append(rule)
    return tuple(rules)


def _has_training_sections(original: dict) -> bool:
    return isinstance(original.get("optimizer"), dict) and isinstance(original.get("lr_config"), dict)


def recipe_from_mmseg(original: dict[str, Any], base: Recipe) -> Recipe | None:
    """``base`` with every training fact the mmseg config states; ``None`` when it states none."""
    if not _has_training_sections(original):
        return None
    opt, lr_cfg = original["optimizer"], original["lr_config"]
    kind = str(opt.get("type", "SGD")).lower()
    if kind not in ("sgd", "adamw"):
        raise ValueError(f"optimizer type {opt.get('type')!r} is not supported (SGD, AdamW)")
    changes: dict[str, Any] = {"optimizer": kind, "lr": float(opt["lr"]),
                               "weight_decay": float(opt.get("weight_decay", 0.0))}
    if kind == "sgd":
        changes["momentum"] = float(opt.get("momentum", 0.0))
    else:
        changes["betas"] = tuple(float(b) for b in opt.get("betas", (0.9, 0.999)))
        changes["eps"] = float(opt.get("eps", 1e-8))
    custom = (opt.get("paramwise_cfg") or {}).get("custom_keys") or {}
    changes["rules"] = rules_from_custom_keys(custom)
    changes["original_rules"] = {"custom_keys": custom}
    clip = (original.get("optimizer_config") or {}).get("grad_clip")
    changes["max_grad_norm"] = float(clip["max_norm"]) if isinstance(clip, dict) and "max_norm" in clip else 0.0

    policy = _POLICIES.get(str(lr_cfg.get("policy", "")).lower())
    if policy is None:
        raise ValueError(f"lr_config policy {lr_cfg.get('policy')!r} is not supported")
    if lr_cfg.get("by_epoch", True) is not False:
        raise ValueError("only iteration-based schedules (by_epoch=False) are supported")
    if lr_cfg.get("warmup") not in (None, "linear"):
        raise ValueError(f"warm-up {lr_cfg.get('warmup')!r} is not supported (linear)")
    schedule = {"policy": policy, "warmup_iters": int(lr_cfg.get("warmup_iters", 0)) if lr_cfg.get("warmup") else 0,
                "warmup_ratio": float(lr_cfg.get("warmup_ratio", 0.1))}
    if policy == "poly":
        schedule.update(power=float(lr_cfg.get("power", 1.0)), min_lr=float(lr_cfg.get("min_lr", 0.0)))
    elif policy == "step":
        step = lr_cfg["step"]
        schedule.update(gamma=float(lr_cfg.get("gamma", 0.1)), steps=tuple(int(s) for s in step)
                        if isinstance(step, (list, tuple)) else (), step_every=0 if isinstance(step, (list, tuple))
                        else int(step))
    elif policy == "cosine_restart":
        if lr_cfg.get("min_lr_ratio") is None:
            raise ValueError("cosine restarts with an absolute min_lr are not supported (min_lr_ratio)")
        schedule.update(periods=tuple(int(p) for p in lr_cfg["periods"]),
                        restart_weights=tuple(float(w) for w in lr_cfg.get("restart_weights", [1])),
                        min_lr_ratio=float(lr_cfg["min_lr_ratio"]))
    changes["schedule"] = Schedule(**schedule)

    runner = original.get("runner") or {}
    iterations = runner.get("max_iters", original.get("total_iters"))
    if iterations is not None:
        changes["iterations"] = int(iterations)
    data = original.get("data") or {}
    if "samples_per_gpu" in data:
        changes["samples_per_gpu"] = int(data["samples_per_gpu"])
    pipeline = _pipeline_changes(original.get("train_pipeline") or [])
    recipe = override(replace(base, **changes), **pipeline)
    return recipe


def _pipeline_changes(steps: list) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    kinds = {step.get("type") for step in steps if isinstance(step, dict)}
    if not steps:
        return changes
    changes["photometric"] = "PhotoMetricDistortion" in kinds
    for step in steps:
        kind = step.get("type")
        if kind == "Resize":
            scale = step.get("img_scale")
            if isinstance(scale, list):  # several scales: not used by the released configs
                raise ValueError(f"Resize with several img_scale values is not supported: {scale}")
            changes["scale"] = tuple(int(s) for s in scale) if scale is not None else None
            ratio = step.get("ratio_range")
            if isinstance(ratio, list):  # some mmseg forks: a random choice among the listed ratios
                changes.update(ratio_range=None, ratio_choices=tuple(float(r) for r in ratio))
            else:
                changes.update(ratio_range=tuple(float(r) for r in ratio) if ratio is not None else None,
                               ratio_choices=None)
        elif kind == "RandomCrop":
            crop = step["crop_size"]
            changes["crop_size"] = (int(crop[0]), int(crop[1]))
            changes["cat_max_ratio"] = float(step.get("cat_max_ratio", 1.0))
        elif kind == "RandomFlip":
            changes["flip_prob"] = float(step.get("prob", step.get("flip_ratio", 0.0)) or 0.0)
    if "RandomCrop" not in kinds:
        changes["crop_size"] = None
    if "RandomFlip" not in kinds:
        changes["flip_prob"] = 0.0
    return changes


def record_for_original(family: str, original: dict[str, Any], config_path: str | PurePath, config=None):
    """``config.training_recipe`` for a model converted from ``config_path`` (``None`` when nothing is known)."""
    from ..families import get_family

    declared = get_family(family)
    row = row_for_original_config(family, str(config_path))
    base = row_recipe(row, family) if row else None
    choose = declared.hook("recipe_for")
    how_row = f"zoo row {row} (config file name)"
    if base is None and config is not None and choose is not None:
        name = choose(config, "", None)
        if name in family_rows(family):  # the only row of this architecture
            row, base, how_row = name, row_recipe(name, family), f"zoo row {name} (the only row of this architecture)"
        elif name:
            base = get_recipe(name)
    parse = declared.hook("recipe_from_original") or recipe_from_mmseg
    parsed = parse(original, base) if base is not None else None
    name = PurePath(str(config_path)).name
    if parsed is not None:
        how = f"training sections of {name}" + (f" (the rest from {how_row})" if row else
                                                 f" (GPUs as in the family's {base.name} recipe: not in the config)")
        return recipe_record(replace(parsed, source=f"{name} ({parsed.source})"), row=row or "",
                             original_config=name, how=how)
    if row:
        return recipe_record(base, row=row, original_config=name, how=how_row)
    return None
