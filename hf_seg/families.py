"""The family interface: what a model family declares, and the one registry shared code asks.

A family is a package ``hf_seg/modeling/<name>/`` whose ``__init__.py`` defines ``FAMILY = Family(...)`` and stays
cheap to import (the config class and plain data only; everything else is named by a ``"module.attribute"`` path
inside the package and imported on first use). Next to it live its data files: ``presets.json`` (the zoo rows and the
facts of the original repository: licence, commit, citations; read by :mod:`hf_seg.zoo`) and ``citation.bib``.

Shared code never names a family: it finds them here (every sub-package of ``hf_seg.modeling`` that declares
``FAMILY``) and asks the declaration. Imports run one way: a family imports shared modules, never another family;
shared modules reach a family only through this registry (``tests/test_structure.py`` enforces both).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

MODELING_PACKAGE = "hf_seg.modeling"


@dataclass(frozen=True)
class Family:
    """A model family's declaration. Paths (``"modeling_x.XForSemanticSegmentation"``) are relative to the family
    package and imported only when asked for, so that ``import hf_seg`` imports no model code.

    Required:
        name: the folder name; zoo rows name their family by it.
        config_class: the ``HfSegConfig`` subclass (imported eagerly: ``import hf_seg`` registers it with
            ``AutoConfig``).
        model: the ``<Name>ForSemanticSegmentation`` class.
        converter: the :class:`hf_seg.conversion.OriginalConverter` subclass for the original checkpoints.
        backbone_prefixes: top-level module names of the model that hold the (pre-trained) backbone; everything else
            is "head" for the recipes' learning-rate multipliers.
    Optional hooks (``None``: the family has none):
        processor: an image processor class of its own; default: the shared ``HfSegImageProcessor``.
        recipes: the family's training recipes (a sequence of :class:`hf_seg.training.recipes.Recipe`).
        recipe_rows: ``{zoo row name: RowRecipe}``: the recipe every zoo row trained with (a recipe of ``recipes``,
            the row's original config file and the row's own values, e.g. 40k iterations).
        recipe_for: ``(config, dataset: str, entry: ZooEntry | None) -> str``: the recipe (or zoo row) name a model
            that carries no recipe trains with (explicit rules of the family, not guesses from names).
        recipe_from_original: ``(original_config: dict, base: Recipe) -> Recipe | None``: the recipe an original
            config states, for config formats other than mmseg's (which :mod:`hf_seg.training.original_recipe` reads).
        loss_weights: ``config -> dict[str, float]``: the weights of the loss terms (shown in the recipe JSON).
        training_targets: an :class:`hf_seg.training.targets.ExtraTargets`: extra per-pixel targets the family's
            loss needs besides ``labels``, made once from the full-size label map and then resized, cropped, flipped
            and padded with the labels (batched and passed to ``forward`` under their keys).
        original_logits: ``(original_config: dict, checkpoints: Sequence[Path], pixel_values: Tensor) -> Tensor``:
            the original implementation's logits (release parity without stored outputs); needs ``original_package``.
        original_package: the importable name of the original code that ``original_logits`` runs.
    """

    name: str
    config_class: type
    model: str
    converter: str
    backbone_prefixes: tuple[str, ...]
    processor: str | None = None
    recipes: str | None = None
    recipe_rows: str | None = None
    recipe_for: str | None = None
    recipe_from_original: str | None = None
    loss_weights: str | None = None
    training_targets: str | None = None
    original_logits: str | None = None
    original_package: str | None = None

    def __post_init__(self):
        if not self.backbone_prefixes:
            raise ValueError(f"family {self.name!r}: backbone_prefixes must name at least one module")
        if (self.original_logits is None) != (self.original_package is None):
            raise ValueError(f"family {self.name!r}: original_logits and original_package go together")

    @property
    def package(self) -> str:
        return f"{MODELING_PACKAGE}.{self.name}"

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    @property
    def model_class_name(self) -> str:
        return self.model.rpartition(".")[2]

    @property
    def folder(self) -> Path:
        """The family's folder (its data files live there)."""
        return Path(importlib.import_module(self.package).__file__).parent

    def resolve(self, path: str) -> Any:
        """Import ``"module.attribute"`` of this family's package."""
        module, _, attribute = path.rpartition(".")
        return getattr(importlib.import_module(f"{self.package}.{module}"), attribute)

    def hook(self, field: str) -> Any:
        """The object an optional field names, or None when the family declares none."""
        path = getattr(self, field)
        return None if path is None else self.resolve(path)

    @property
    def model_class(self) -> type:
        return self.resolve(self.model)

    @property
    def converter_class(self) -> type:
        return self.resolve(self.converter)

    @property
    def processor_class(self) -> type:
        if self.processor is not None:
            return self.resolve(self.processor)
        from .image_processing import HfSegImageProcessor

        return HfSegImageProcessor

    def original_reference(self) -> Callable | None:
        """``original_logits`` when the original code is importable here, else None."""
        if self.original_package is None or importlib.util.find_spec(self.original_package) is None:
            return None
        return self.hook("original_logits")


@cache
def families() -> dict[str, Family]:
    """Every family, by name (sorted): the sub-packages of ``hf_seg.modeling`` that declare ``FAMILY``."""
    import hf_seg.modeling as modeling

    found = {}
    for info in sorted(pkgutil.iter_modules(modeling.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        declared = getattr(importlib.import_module(f"{MODELING_PACKAGE}.{info.name}"), "FAMILY", None)
        if declared is None:
            continue
        if not isinstance(declared, Family) or declared.name != info.name:
            raise TypeError(f"{MODELING_PACKAGE}.{info.name}.FAMILY must be a Family named {info.name!r}")
        found[info.name] = declared
    return found


def family_names() -> list[str]:
    """The families' folder names, from the file system alone (the command line's help texts run without torch)."""
    modeling = Path(__file__).parent / "modeling"
    return sorted(init.parent.name for init in modeling.glob("*/__init__.py"))


def get_family(name: str) -> Family:
    registry = families()
    if name not in registry:
        raise KeyError(f"unknown family {name!r}; known: {sorted(registry)}")
    return registry[name]


def family_of_config(config) -> Family:
    """The family whose config class has ``config``'s ``model_type``."""
    model_type = getattr(config, "model_type", None)
    for family in families().values():
        if family.model_type == model_type:
            return family
    raise ValueError(f"model type {model_type!r} is not an hf_seg family ({sorted(families())})")


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for a family package: ``exports`` maps a public name to the module of the
    package that defines it, imported on first access."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def family_module(name: str) -> ModuleType:
    """The family's package (its public names and ``tiny_config``, the small config tests build)."""
    return importlib.import_module(get_family(name).package)
