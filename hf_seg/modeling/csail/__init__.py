from .configuration_csail import CsailConfig
from .convert_csail import CsailConverter
from .modeling_csail import CsailForSemanticSegmentation, CsailPreTrainedModel

CONFIG_CLASS = CsailConfig
MODEL_CLASS = CsailForSemanticSegmentation
CONVERTER = CsailConverter

__all__ = ["CsailConfig", "CsailForSemanticSegmentation", "CsailPreTrainedModel", "CsailConverter"]
