"""Finetuning: the originals' training recipes, the ``transforms.v2`` augmentation pipeline and ``Trainer`` glue.

Entry point: ``scripts/finetune.py`` / :func:`hf_seg.training.finetune.main` (``--dry-run`` prints the resolved recipe).
Layout: :mod:`.arguments` (the command line), :mod:`.build` (data, model, recipe and trainer of a run),
:mod:`.resolve` (which recipe, adapted to the run), :mod:`.recipes` (recipe dataclasses and registry; the tables live
in ``hf_seg/modeling/<family>/training.py``), :mod:`.original_recipe` (the recipe of a converted config),
:mod:`.report` (the recipe JSON), :mod:`.optim`, :mod:`.transforms`, :mod:`.model_inputs` (rows -> tensors),
:mod:`.targets`, :mod:`.batchnorm`, :mod:`.trainer`, :mod:`.finetune` (run/main). Not imported by ``import hf_seg``.
"""

from .recipes import (DATASET_TRAIN_SCALE, ParamRule, Pipeline, Recipe, ResolvedRecipe, RowRecipe, Schedule,
                      family_rows, get_recipe, list_recipes, override, recipe_for, recipe_record, row_recipe,
                      scale_recipe)

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
