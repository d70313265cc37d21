"""hf_seg: SETR, RegionProxy, UN-EPT, SeMask-FPN and the MIT CSAIL ADE20K models as transformers models.

``import hf_seg`` registers every family with ``AutoConfig``, ``AutoModelForSemanticSegmentation`` and
``AutoImageProcessor`` and imports no model code: configs are registered eagerly, model classes and image processors
on first use (see :mod:`hf_seg.auto`); nothing is compiled or built at import time.
"""

from .auto import register_auto_classes
from .version import __version__

register_auto_classes()

_LAZY = {"HfSegImageProcessor": "image_processing", "list_models": "zoo", "optimize_for_inference": "fusion"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HfSegImageProcessor", "list_models", "optimize_for_inference", "register_auto_classes", "__version__"]
