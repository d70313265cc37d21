"""The fully resolved recipe of a run as JSON: what ``--dry-run`` prints and what ``recipe.json`` next to the
checkpoints holds. Scripts may read these top-level keys: ``optimizer``, ``param_groups``, ``max_grad_norm``,
``max_steps``, ``per_device_batch_size``, ``gradient_accumulation_steps``, ``num_processes``, ``lr_at_steps``,
``augmentation``, ``num_labels``, ``notes``.

Deliberate differences from the original code that apply to every recipe are listed once, in
:data:`GENERAL_DIFFERENCES`; a family's own are in its recipes' ``notes``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from .optim import lr_factor, param_groups
from .recipes import ResolvedRecipe

__all__ = ["GENERAL_DIFFERENCES", "recipe_report", "write_recipe_json", "report_steps"]

# every deliberate difference from the original training code that is not specific to one family
GENERAL_DIFFERENCES = (
    "batches are drawn with an epoch-seeded permutation and every sample's augmentation is seeded by (seed, epoch, "
    "index), so resumed runs repeat exactly; the originals draw from unseeded worker RNGs",
    "images are resized with torch's bilinear kernel (antialias as the model's processor says) and label maps with "
    "nearest neighbour; mmcv uses OpenCV (cv2.INTER_LINEAR / INTER_NEAREST), which rounds intermediate values "
    "differently (at most one grey level for bilinear)",
    "the photometric distortion reproduces mmseg's steps and OpenCV's 8-bit HSV arithmetic exactly (scalar path); "
    "recent OpenCV builds truncate in their vectorised HSV->RGB code, at most one level lower",
)


def report_steps(resolved: ResolvedRecipe) -> list[int]:
    """Steps shown in ``lr_at_steps``: 0, 1, 10, the end of the warm-up, 25 %, 50 % and the last step."""
    last = max(0, resolved.max_steps - 1)
    warmup = resolved.recipe.schedule.warmup_iters
    steps = [0, 1, 10, resolved.schedule_steps(warmup) if warmup else None, resolved.max_steps // 4,
             resolved.max_steps // 2, last]
    return sorted({s for s in steps if s is not None and 0 <= s <= last})


def _pipeline_json(pipeline) -> dict[str, Any]:
    out = {
        "img_scale": list(pipeline.scale) if pipeline.scale is not None else None,
        "crop_size": list(pipeline.crop_size) if pipeline.crop_size is not None else None,
        "cat_max_ratio": pipeline.cat_max_ratio if pipeline.crop_size is not None else None,
        "cat_max_checks": pipeline.cat_max_tries if pipeline.crop_size is not None else None,
        "flip_prob": pipeline.flip_prob,
        "photometric": ({"type": "PhotoMetricDistortion", "brightness_delta": 32, "contrast_range": [0.5, 1.5],
                         "saturation_range": [0.5, 1.5], "saturation_space": "HSV (OpenCV 8-bit)",
                         "hue_delta": 18, "each_with_probability": 0.5, "truncate_to_uint8": True}
                        if pipeline.photometric else None),
        "pad": {"size": list(pipeline.crop_size) if pipeline.crop_size is not None else None,
                "size_divisor": pipeline.size_divisor, "image_value": 0, "label_value": "ignore index"},
        "pad_small": pipeline.pad_small,
        "size_rounding": pipeline.size_rounding,
    }
    if pipeline.ratio_choices is not None:
        out["ratio_choices"] = list(pipeline.ratio_choices)
    else:
        out["ratio_range"] = list(pipeline.ratio_range) if pipeline.ratio_range is not None else None
    if pipeline.short_sides is not None:
        out.update(short_sides=list(pipeline.short_sides), max_size=pipeline.max_size)
    return out


def _optimizer_json(resolved: ResolvedRecipe) -> dict[str, Any]:
    recipe = resolved.recipe
    if recipe.optimizer == "sgd":
        return {"type": "SGD", "lr": resolved.lr, "momentum": recipe.momentum, "weight_decay": recipe.weight_decay,
                "nesterov": False}
    return {"type": "AdamW", "lr": resolved.lr, "betas": list(recipe.betas), "eps": recipe.eps,
            "weight_decay": recipe.weight_decay}


def recipe_report(resolved: ResolvedRecipe, model, *, origin: dict, family: str, model_name: str,
                  backbone_prefixes, dataset: str, num_labels: int, label_set: dict | None = None,
                  loss_weights: dict | None = None, batch_norm: dict | None = None, extra_targets=None,
                  flip_target_fixes: bool = False, max_grad_norm: float | None = None,
                  notes: list[str] | None = None) -> dict[str, Any]:
    recipe = resolved.recipe
    groups = param_groups(model, resolved, backbone_prefixes)
    steps = report_steps(resolved)
    lr_at_steps = {str(step): [group["lr"] * lr_factor(step, resolved, group["lr"]) for group in groups]
                   for step in steps}
    schedule = recipe.schedule
    schedule_json = {"policy": schedule.policy, "by": "optimizer step"}
    if schedule.policy == "poly":
        schedule_json.update(power=schedule.power, min_lr=schedule.min_lr)
    elif schedule.policy == "step":
        schedule_json.update(gamma=schedule.gamma, **({"step_every": resolved.schedule_steps(schedule.step_every)}
                                                      if schedule.step_every else
                                                      {"steps": [resolved.schedule_steps(s) for s in schedule.steps]}))
    elif schedule.policy == "cosine_restart":
        schedule_json.update(periods=[resolved.schedule_steps(p) for p in schedule.periods],
                             restart_weights=list(schedule.restart_weights), min_lr_ratio=schedule.min_lr_ratio)
    schedule_json["warmup"] = ({"type": "linear", "steps": resolved.schedule_steps(schedule.warmup_iters),
                                "ratio": schedule.warmup_ratio} if schedule.warmup_iters else None)
    all_notes = list(resolved.notes) + list(recipe.notes) + list(notes or []) + list(GENERAL_DIFFERENCES)
    return {
        "model": model_name,
        "family": family,
        "recipe": recipe.name,
        "description": recipe.description,
        "row": origin.get("row", ""),
        "original_config": origin.get("original_config", ""),
        "recipe_from": origin.get("how", ""),
        "source": recipe.source,
        "optimizer": _optimizer_json(resolved),
        "param_groups": [{"lr": g["lr"], "weight_decay": g["weight_decay"], "lr_mult": g["lr_mult"],
                          "decay_mult": g["decay_mult"], "rules": g["rules"], "num_params": len(g["names"]),
                          "params": g["names"]} for g in groups],
        "param_rules": [{"selector": r.selector, "lr_mult": r.lr_mult, "decay_mult": r.decay_mult}
                        for r in recipe.rules],
        "backbone_prefixes": list(backbone_prefixes),
        "original_param_rules": recipe.original_rules,
        "max_grad_norm": recipe.max_grad_norm if max_grad_norm is None else max_grad_norm,
        "schedule": schedule_json,
        "lr_at_steps": lr_at_steps,
        "max_steps": resolved.max_steps,
        "per_device_batch_size": resolved.per_device_batch_size,
        "gradient_accumulation_steps": resolved.gradient_accumulation_steps,
        "num_processes": resolved.num_processes,
        "effective_batch_size": resolved.effective_batch_size,
        "scaling": resolved.scaling,
        "original": {"iterations": recipe.iterations, "samples_per_gpu": recipe.samples_per_gpu, "gpus": recipe.gpus,
                     "batch_size": recipe.total_batch_size, "lr": recipe.lr, "dataset": recipe.dataset},
        "augmentation": _pipeline_json(recipe.pipeline),
        "dataset": dataset,
        "num_labels": num_labels,
        "labels": label_set or {},
        "loss_weights": loss_weights or {},
        "batch_norm": batch_norm or {},
        "extra_targets": ({"names": list(extra_targets.names), "pad_values": dict(extra_targets.fills),
                           "flip_fixes": sorted(extra_targets.on_flip) if flip_target_fixes else [],
                           "description": extra_targets.description} if extra_targets is not None else None),
        "notes": all_notes,
    }


def write_recipe_json(report: dict, output_dir: str, name: str = "recipe.json") -> str:
    """Write ``report`` atomically (temporary file, then rename) into ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=output_dir)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(report, handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
