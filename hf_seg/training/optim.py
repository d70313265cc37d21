"""Optimizer parameter groups and learning-rate schedules of the recipes (mmcv semantics, by optimizer step)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .recipes import ParamRule, ResolvedRecipe, Schedule

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "lr_factor"]

_LAYER_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def _kind_of_params(model: nn.Module) -> dict[str, str]:
    kinds = {}
    for module_name, module in model.named_modules():
        is_layer_norm = isinstance(module, _LAYER_NORMS) or "layernorm" in type(module).__name__.lower()
        kind = "layer_norm" if is_layer_norm else "batch_norm" if isinstance(module, _BATCH_NORMS) else None
        if kind is None:
            continue
        for param_name, _ in module.named_parameters(recurse=False):
            kinds[f"{module_name}.{param_name}" if module_name else param_name] = kind
    return kinds


def _selects(rule: ParamRule, name: str, role: str, kind: str | None) -> bool:
    sel = rule.selector
    if sel in ("backbone", "head"):
        return role == sel
    if sel in ("layer_norm", "batch_norm"):
        return kind == sel
    if sel == "bias":
        return name.endswith(".bias") or name == "bias"
    if sel.startswith("name:"):
        return sel[5:] in name
    raise ValueError(f"unknown parameter selector {sel!r}")


def param_groups(model: nn.Module, resolved: ResolvedRecipe, backbone_prefixes=None) -> list[dict]:
    """Parameter groups with the recipe's lr/decay multipliers (first matching rule wins, as in mmcv).

    Each group carries ``lr`` (= scaled base lr x lr_mult), ``weight_decay`` and ``initial_lr_mult`` for the schedule.
    ``backbone_prefixes`` (the top-level modules the "backbone" rules select) default to the model's family's.
    """
    if backbone_prefixes is None:
        from ..families import family_of_config

        backbone_prefixes = family_of_config(model.config).backbone_prefixes
    recipe = resolved.recipe
    kinds = _kind_of_params(model)
    groups: OrderedDict[tuple[float, float], dict] = OrderedDict()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        clean = name.removeprefix("module.")
        role = "backbone" if clean.split(".", 1)[0] in backbone_prefixes else "head"
        lr_mult, decay_mult, selector = 1.0, 1.0, "default"
        for rule in recipe.rules:
            if _selects(rule, clean, role, kinds.get(name)):
                lr_mult, decay_mult, selector = rule.lr_mult, rule.decay_mult, rule.selector
                break
        key = (lr_mult, decay_mult)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "rules": [], "lr": resolved.lr * lr_mult, "lr_mult": lr_mult,
                           "weight_decay": recipe.weight_decay * decay_mult, "decay_mult": decay_mult}
        groups[key]["params"].append(param)
        groups[key]["names"].append(clean)
        if selector not in groups[key]["rules"]:
            groups[key]["rules"].append(selector)
    return list(groups.values())


def build_optimizer(model: nn.Module, resolved: ResolvedRecipe, backbone_prefixes=None):
    recipe = resolved.recipe
    groups = param_groups(model, resolved, backbone_prefixes)
    for g in groups:
        g.pop("names")
        g.pop("rules")
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=resolved.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(groups, lr=resolved.lr, betas=tuple(recipe.betas), eps=recipe.eps,
                             weight_decay=recipe.weight_decay)


def lr_factor(step: int, resolved: ResolvedRecipe, base_lr: float, horizon: int | None = None) -> float:
    """lr(step) / base_lr for a group whose base lr is ``base_lr`` (mmcv's LrUpdater hooks, ``by_epoch=False``).

    The original schedule's milestones (warmup, steps, restart periods) are stretched onto ``resolved.max_steps``
    (or ``horizon``, when a time budget shortened the run).
    """
    sched: Schedule = resolved.recipe.schedule
    if horizon is not None and horizon != resolved.max_steps:
        import dataclasses

        resolved = dataclasses.replace(resolved, max_steps=horizon)
    total = max(1, resolved.max_steps)
    progress = min(step, total)
    if sched.policy == "constant":
        factor = 1.0
    elif sched.policy == "poly":
        min_ratio = min(1.0, sched.min_lr / base_lr) if base_lr > 0 else 0.0
        factor = (1 - min_ratio) * (1 - progress / total) ** sched.power + min_ratio
    elif sched.policy == "step":
        if sched.step_every:  # mmcv ``step=<int>``: decay every that many iterations
            passed = progress // max(1, resolved.schedule_steps(sched.step_every))
        else:
            passed = sum(progress >= resolved.schedule_steps(s) for s in sched.steps)
        factor = sched.gamma ** passed
    else:  # cosine_restart
        boundaries = [resolved.schedule_steps(p) for p in sched.periods]
        start, factor = 0, sched.min_lr_ratio
        for length, weight in zip(boundaries, sched.restart_weights):
            if progress < start + length or length == 0:
                alpha = (progress - start) / max(1, length)
                factor = sched.min_lr_ratio + 0.5 * weight * (1 - sched.min_lr_ratio) * (math.cos(math.pi * alpha) + 1)
                break
            start += length
    warmup = resolved.schedule_steps(sched.warmup_iters) if sched.warmup_iters else 0
    if warmup and step < warmup:
        factor *= 1 - (1 - step / warmup) * (1 - sched.warmup_ratio)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, resolved: ResolvedRecipe, horizon: dict | None = None):
    """LambdaLR over the recipe's schedule; ``horizon['max_steps']`` (mutable) may shorten it during training."""
    horizon = horizon if horizon is not None else {"max_steps": resolved.max_steps}
    lambdas = [(lambda step, base=group["lr"]: lr_factor(step, resolved, base, horizon["max_steps"]))
               for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
