from .configuration_csail import CsailConfig
from .convert_csail import CsailConverter
from .modeling_csail import CsailForSemanticSegmentation, CsailPreTrainedModel

CONFIG_CLASS = CsailConfig
MODEL_CLASS = CsailForSemanticSegmentation
CONVERTER = CsailConverter


def tiny_config(**overrides) -> CsailConfig:
    """A small, fast CSAIL config for tests and smoke runs: MobileNetV2 (dilated, output stride 8), the smallest
    encoder the family has, with the C1 deep-supervision decoder and 5 classes (about 2.2M parameters; a 64x64
    forward takes a few tens of milliseconds on CPU). Any input size runs. ``overrides`` are ``CsailConfig``
    arguments."""
    kwargs = dict(encoder="mobilenetv2dilated", decoder="c1_deepsup", num_labels=5)
    kwargs.update(overrides)
    return CsailConfig(**kwargs)


__all__ = ["CsailConfig", "CsailForSemanticSegmentation", "CsailPreTrainedModel", "CsailConverter", "tiny_config"]
