"""Registration of every family with the transformers Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

from .families import all_families
from .image_processing import HfSegImageProcessor

_registered = False


def register_auto_classes() -> None:
    """Idempotent: ``import hf_seg`` calls it once; calling it again changes nothing."""
    global _registered
    if _registered:
        return
    for module in all_families().values():
        config_class, model_class = module.CONFIG_CLASS, module.MODEL_CLASS
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForSemanticSegmentation.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(
            config_class,
            image_processor_classes={"torchvision": HfSegImageProcessor, "pil": HfSegImageProcessor},
            exist_ok=True,
        )
    _registered = True
