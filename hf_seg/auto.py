"""Registration of every family with the transformers Auto classes and the image-segmentation pipeline.

``import hf_seg`` must stay cheap, as importing a transformers model is. Configs are registered as classes (they are
small); a model class is registered as a stand-in that imports the family's model code the first time an Auto class
uses it (so no timm, no custom ops); image processors are registered when transformers' ``AutoImageProcessor``
module is imported, because importing it imports ``transformers.image_utils`` and with it torchvision and
torch._dynamo (seconds), which nobody who only builds a config or a model needs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

from transformers import AutoConfig, AutoModelForSemanticSegmentation
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

from .families import Family, families

AUTO_IMAGE_PROCESSOR_MODULE = "transformers.models.auto.image_processing_auto"


class _DeferredModelClass:
    """Stands in ``AutoModelForSemanticSegmentation``'s mapping for a family's model class. The Auto classes only
    call class attributes on it (``from_pretrained``, ``_from_config``, ...): the first one imports the real class and
    registers it in place of this stand-in."""

    def __init__(self, family: Family):
        self._family = family
        self.__name__ = family.model_class_name
        self.config_class = family.config_class

    def __getattr__(self, name):
        model_class = self._family.model_class
        AutoModelForSemanticSegmentation.register(self._family.config_class, model_class, exist_ok=True)
        return getattr(model_class, name)


def _register_image_processors() -> None:
    from transformers import AutoImageProcessor

    for family in families().values():
        processor_class = family.processor_class  # the shared HfSegImageProcessor unless the family has its own
        AutoImageProcessor.register(family.config_class, exist_ok=True,
                                    image_processor_classes={"torchvision": processor_class, "pil": processor_class})


class _RegisterWhenImported(importlib.abc.MetaPathFinder):
    """Finds transformers' AutoImageProcessor module as the path finder does and registers the image processors right
    after the module has run, before anyone can use it."""

    def find_spec(self, name, path, target=None):
        if name != AUTO_IMAGE_PROCESSOR_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            _register_image_processors()

        spec.loader.exec_module = exec_module
        return spec


def register_auto_classes() -> None:
    """``import hf_seg`` calls it; calling it again registers the same classes again."""
    for family in families().values():
        AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
        AutoModelForSemanticSegmentation.register(family.config_class, _DeferredModelClass(family), exist_ok=True)
        # the image-segmentation pipeline checks the model's class name against this table (not the Auto mapping)
        MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault(family.model_type, family.model_class_name)
    if AUTO_IMAGE_PROCESSOR_MODULE in sys.modules:
        _register_image_processors()
    elif not any(isinstance(finder, _RegisterWhenImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenImported())
