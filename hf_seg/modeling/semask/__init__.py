from .configuration_semask import SeMaskConfig
from .convert_semask import SeMaskConverter
from .modeling_semask import SeMaskForSemanticSegmentation, SeMaskPreTrainedModel, SeMaskSemanticSegmenterOutput

CONFIG_CLASS = SeMaskConfig
MODEL_CLASS = SeMaskForSemanticSegmentation
CONVERTER = SeMaskConverter

__all__ = ["SeMaskConfig", "SeMaskForSemanticSegmentation", "SeMaskPreTrainedModel", "SeMaskSemanticSegmenterOutput",
           "SeMaskConverter"]
