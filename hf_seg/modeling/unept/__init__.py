"""UN-EPT (Unified Efficient Pyramid Transformer): a ResNet or DeiT backbone, a deformable-attention context
branch and a spatial branch, trained with extra boundary targets (distance and direction maps).

Cheap to import: the declaration and the config only; model, converter and the target maps load on use.
"""

from ...families import Family, lazy_exports
from .configuration_unept import UnEptConfig

FAMILY = Family(
    name="unept",
    config_class=UnEptConfig,
    model="modeling_unept.UnEptForSemanticSegmentation",
    converter="convert_unept.UnEptConverter",
    backbone_prefixes=("backbone",),
    training_targets="training.TRAINING_TARGETS",
    recipes="training.RECIPES",
    recipe_rows="training.ROWS",
    recipe_for="training.recipe_for",
    loss_weights="training.loss_weights",
)


def tiny_config(backbone: str = "resnet_v1c", **overrides) -> UnEptConfig:
    """A small, fast UN-EPT config for tests and smoke runs: a ResNet-18-V1c with 4 base channels (or, with
    ``backbone="deit"``, a 3-block DeiT of width 16 and patch 8 for 32x32 inputs), one encoder and one decoder layer
    of width 32, 2 sampling points, a 16-query embedding (``query_layout`` 4x4) and 5 classes, no dropout.

    Input sizes: the output stride is 8, so height and width should be multiples of 8. With the default
    ``decoder_layout="resize"`` the 4x4 query embedding is resized to the input's stride-8 grid, so any such size runs
    (32x32 is the size whose grid matches the embedding exactly; 64x64 is what the finetune smoke test trains on).
    With ``decoder_layout="original"`` only inputs with (H/8)*(W/8) == ``num_queries`` run: pass
    ``num_queries=(H // 8) * (W // 8)`` too. Training needs ``distance_map`` / ``angle_map`` targets
    (:func:`dt_offset_targets`), which the finetune pipeline computes. ``overrides`` are ``UnEptConfig`` arguments."""
    kwargs = dict(
        backbone=backbone, resnet_depth=18, stem_channels=8, base_channels=4, deit_img_size=32, deit_patch_size=8,
        deit_embed_dim=16, deit_depth=3, deit_num_heads=2, deit_feature_interval=1, hidden_size=32,
        num_attention_heads=4, num_points=2, encoder_layers=1, decoder_layers=1, ffn_dim=32, dropout=0.0,
        num_queries=16, spatial_channels=[8, 16], num_labels=5,
    )
    kwargs.update(overrides)
    return UnEptConfig(**kwargs)


__getattr__ = lazy_exports(__name__, {
    "UnEptForSemanticSegmentation": "modeling_unept", "UnEptPreTrainedModel": "modeling_unept",
    "UnEptSemanticSegmenterOutput": "modeling_unept", "UnEptConverter": "convert_unept",
    "DtOffsetTransform": "dt_offset", "dt_offset_maps": "dt_offset", "dt_offset_targets": "dt_offset",
})
__all__ = ["FAMILY", "UnEptConfig", "UnEptForSemanticSegmentation", "UnEptPreTrainedModel",
           "UnEptSemanticSegmenterOutput", "UnEptConverter", "DtOffsetTransform", "dt_offset_maps",
           "dt_offset_targets", "tiny_config"]
