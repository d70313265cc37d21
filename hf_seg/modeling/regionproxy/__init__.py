"""RegionProxy (Semantic Segmentation by Early Region Proxy): a ViT (or R50 hybrid) whose tokens are regions.

Cheap to import: the declaration and the config only; model and converter load on use.
"""

from ...families import Family, lazy_exports
from .configuration_regionproxy import RegionProxyConfig

FAMILY = Family(
    name="regionproxy",
    config_class=RegionProxyConfig,
    model="modeling_regionproxy.RegionProxyForSemanticSegmentation",
    converter="convert_regionproxy.RegionProxyConverter",
    backbone_prefixes=("backbone",),
    recipes="training.RECIPES",
    recipe_rows="training.ROWS",
    recipe_for="training.recipe_for",
    loss_weights="training.loss_weights",
)


def tiny_config(**overrides) -> RegionProxyConfig:
    """A small, fast RegionProxy config for tests and smoke runs: a 3-block ViT (width 16, patch 8) tapped after
    blocks 0 and 2, 2x2 regions per patch, 5 classes. ``image_size`` is 32x32 (the stored position-embedding grid);
    other input sizes run with an interpolated position embedding, e.g. 64x64. ``overrides`` are
    ``RegionProxyConfig`` arguments."""
    kwargs = dict(image_size=[32, 32], patch_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                  out_indices=[0, 2], region_res=[2, 2], num_labels=5, drop_path_rate=0.0)
    kwargs.update(overrides)
    return RegionProxyConfig(**kwargs)


__getattr__ = lazy_exports(__name__, {
    "RegionProxyForSemanticSegmentation": "modeling_regionproxy", "RegionProxyPreTrainedModel": "modeling_regionproxy",
    "RegionProxySegmenterOutput": "modeling_regionproxy", "RegionProxyConverter": "convert_regionproxy",
})
__all__ = [
    "FAMILY", "RegionProxyConfig", "RegionProxyForSemanticSegmentation", "RegionProxyPreTrainedModel",
    "RegionProxySegmenterOutput", "RegionProxyConverter", "tiny_config",
]
