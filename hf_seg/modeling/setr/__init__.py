"""SETR (Naive / PUP / MLA heads on a ViT) and SETR-HLG.

Cheap to import: the declaration and the config only; model and converter load on use.
"""

from ...families import Family, lazy_exports
from .configuration_setr import SetrConfig, naive_head

FAMILY = Family(
    name="setr",
    config_class=SetrConfig,
    model="modeling_setr.SetrForSemanticSegmentation",
    converter="convert_setr.SetrConverter",
    backbone_prefixes=("backbone",),
    recipes="training.RECIPES",
    recipe_rows="training.ROWS",
    recipe_for="training.recipe_for",
    loss_weights="training.loss_weights",
)


def tiny_config(**overrides) -> SetrConfig:
    """A small, fast SETR config for tests and smoke runs: a 4-block ViT (width 32, patch 8, 2 heads) with the Naive
    head on block 3, one Naive auxiliary head (weight 0.4) on block 1, 16 head channels and 5 classes.
    ``image_size`` is 32x32 (the stored position-embedding grid and the training crop); other input sizes run with an
    interpolated position embedding, e.g. 64x64. ``overrides`` are ``SetrConfig`` arguments."""
    kwargs = dict(backbone="vit", image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
                  num_attention_heads=2, head_channels=16, num_labels=5, decode_head=naive_head(3),
                  auxiliary_heads=[naive_head(1, 0.4)])
    kwargs.update(overrides)
    return SetrConfig(**kwargs)


__getattr__ = lazy_exports(__name__, {
    "SetrForSemanticSegmentation": "modeling_setr", "SetrPreTrainedModel": "modeling_setr",
    "SetrSemanticSegmenterOutput": "modeling_setr", "SetrConverter": "convert_setr",
})
__all__ = ["FAMILY", "SetrConfig", "SetrForSemanticSegmentation", "SetrPreTrainedModel", "SetrSemanticSegmenterOutput",
           "SetrConverter", "tiny_config"]
