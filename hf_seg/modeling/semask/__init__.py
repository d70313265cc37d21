"""SeMask-FPN: a Swin backbone with semantic layers, and an FPN decoder.

Cheap to import: the declaration and the config only; model and converter load on use.
"""

from ...families import Family, lazy_exports
from .configuration_semask import SeMaskConfig

FAMILY = Family(
    name="semask",
    config_class=SeMaskConfig,
    model="modeling_semask.SeMaskForSemanticSegmentation",
    converter="convert_semask.SeMaskConverter",
    backbone_prefixes=("backbone",),
    recipes="training.RECIPES",
    recipe_rows="training.ROWS",
    recipe_for="training.recipe_for",
    loss_weights="training.loss_weights",
)


def tiny_config(**overrides) -> SeMaskConfig:
    """A small, fast SeMask-FPN config for tests and smoke runs: a 3-stage Swin (embed_dim 16, depths 2-2-1,
    window 7), an 8-channel FPN decoder, 6 classes and no dropout / drop path. Any input size runs (windows are
    padded), e.g. 64x64. ``overrides`` are ``SeMaskConfig`` arguments."""
    kwargs = dict(embed_dim=16, depths=[2, 2, 1], num_heads=[1, 2, 4], window_size=7, semantic_window_size=7,
                  num_labels=6, decoder_channels=8, drop_path_rate=0.0, decoder_dropout=0.0, semantic_dropout=0.0)
    kwargs.update(overrides)
    return SeMaskConfig(**kwargs)


__getattr__ = lazy_exports(__name__, {
    "SeMaskForSemanticSegmentation": "modeling_semask", "SeMaskPreTrainedModel": "modeling_semask",
    "SeMaskSemanticSegmenterOutput": "modeling_semask", "SeMaskConverter": "convert_semask",
})
__all__ = ["FAMILY", "SeMaskConfig", "SeMaskForSemanticSegmentation", "SeMaskPreTrainedModel",
           "SeMaskSemanticSegmenterOutput", "SeMaskConverter", "tiny_config"]
