"""The MIT CSAIL ADE20K models (semantic-segmentation-pytorch): encoder x decoder pairs.

Cheap to import: the declaration and the config only; model, converter and the original-code runner load on use.
"""

from ...families import Family, lazy_exports
from .configuration_csail import CsailConfig

FAMILY = Family(
    name="csail",
    config_class=CsailConfig,
    model="modeling_csail.CsailForSemanticSegmentation",
    converter="convert_csail.CsailConverter",
    backbone_prefixes=("encoder",),
    original_logits="original.original_logits",
    original_package="mit_semseg",
    recipes="training.RECIPES",
    recipe_rows="training.ROWS",
    recipe_for="training.recipe_for",
    loss_weights="training.loss_weights",
    recipe_from_original="training.recipe_from_original",
)


def tiny_config(**overrides) -> CsailConfig:
    """A small, fast CSAIL config for tests and smoke runs: MobileNetV2 (dilated, output stride 8), the smallest
    encoder the family has, with the C1 deep-supervision decoder and 5 classes (about 2.2M parameters; a 64x64
    forward takes a few tens of milliseconds on CPU). Any input size runs. ``overrides`` are ``CsailConfig``
    arguments."""
    kwargs = dict(arch_encoder="mobilenetv2dilated", arch_decoder="c1_deepsup", num_labels=5)
    kwargs.update(overrides)
    return CsailConfig(**kwargs)


__getattr__ = lazy_exports(__name__, {
    "CsailForSemanticSegmentation": "modeling_csail", "CsailPreTrainedModel": "modeling_csail",
    "CsailConverter": "convert_csail",
})
__all__ = ["FAMILY", "CsailConfig", "CsailForSemanticSegmentation", "CsailPreTrainedModel", "CsailConverter",
           "tiny_config"]
