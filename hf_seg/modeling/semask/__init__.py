from .configuration_semask import SeMaskConfig
from .convert_semask import SeMaskConverter
from .modeling_semask import SeMaskForSemanticSegmentation, SeMaskPreTrainedModel, SeMaskSemanticSegmenterOutput

CONFIG_CLASS = SeMaskConfig
MODEL_CLASS = SeMaskForSemanticSegmentation
CONVERTER = SeMaskConverter


def tiny_config(**overrides) -> SeMaskConfig:
    """A small, fast SeMask-FPN config for tests and smoke runs: a 3-stage Swin (embed_dim 16, depths 2-2-1,
    window 7), an 8-channel FPN decoder, 6 classes and no dropout / drop path. Any input size runs (windows are
    padded), e.g. 64x64. ``overrides`` are ``SeMaskConfig`` arguments."""
    kwargs = dict(embed_dim=16, depths=[2, 2, 1], num_heads=[1, 2, 4], window_size=7, semantic_window_size=7,
                  num_labels=6, decoder_channels=8, drop_path_rate=0.0, decoder_dropout=0.0, semantic_dropout=0.0)
    kwargs.update(overrides)
    return SeMaskConfig(**kwargs)


__all__ = ["SeMaskConfig", "SeMaskForSemanticSegmentation", "SeMaskPreTrainedModel", "SeMaskSemanticSegmenterOutput",
           "SeMaskConverter", "tiny_config"]
