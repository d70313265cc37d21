"""The list of model families. Each entry is a package under ``hf_seg.modeling`` that exports
``CONFIG_CLASS``, ``MODEL_CLASS`` and ``CONVERTER`` (an :class:`hf_seg.conversion.OriginalConverter` subclass)."""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILY_MODULES = {
    "csail": "hf_seg.modeling.csail",
    "regionproxy": "hf_seg.modeling.regionproxy",
    "semask": "hf_seg.modeling.semask",
    "setr": "hf_seg.modeling.setr",
    "unept": "hf_seg.modeling.unept",
}


def family_module(name: str) -> ModuleType:
    if name not in FAMILY_MODULES:
        raise KeyError(f"unknown family {name!r}; known: {sorted(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name])


def all_families() -> dict[str, ModuleType]:
    return {name: family_module(name) for name in FAMILY_MODULES}
