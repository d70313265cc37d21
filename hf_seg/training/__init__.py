"""Finetuning: the seeds' training recipes, the ``transforms.v2`` augmentation pipeline and ``Trainer`` glue.

Entry point: ``scripts/finetune.py`` / :func:`hf_seg.training.finetune.main`. Not imported by ``import hf_seg``.
"""

from .recipes import (DATASET_TRAIN_SCALE, ParamRule, Pipeline, Recipe, ResolvedRecipe, Schedule, get_recipe,
                      list_recipes, override, recipe_for, scale_recipe)

__all__ = [
    "DATASET_TRAIN_SCALE",
    "ParamRule",
    "Pipeline",
    "Recipe",
    "ResolvedRecipe",
    "Schedule",
    "get_recipe",
    "list_recipes",
    "override",
    "recipe_for",
    "scale_recipe",
]
