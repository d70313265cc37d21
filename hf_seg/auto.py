"""Registration of every family with the transformers Auto classes and the image-segmentation pipeline.

Configs are registered as classes (they are small); a model class is registered as a stand-in that imports the family's
model code the first time an Auto class uses it, so that ``import hf_seg`` imports no model code (and no timm).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

from .families import Family, families


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


def register_auto_classes() -> None:
    """``import hf_seg`` calls it; calling it again registers the same classes again."""
    for family in families().values():
        AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
        AutoModelForSemanticSegmentation.register(family.config_class, _DeferredModelClass(family), exist_ok=True)
        processor_class = family.processor_class  # the shared HfSegImageProcessor unless the family has its own
        AutoImageProcessor.register(family.config_class, exist_ok=True,
                                    image_processor_classes={"torchvision": processor_class, "pil": processor_class})
        # the image-segmentation pipeline checks the model's class name against this table (not the Auto mapping)
        MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault(family.model_type, family.model_class_name)
