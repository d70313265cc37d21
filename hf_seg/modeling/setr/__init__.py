from .configuration_setr import SetrConfig
from .convert_setr import SetrConverter
from .modeling_setr import SetrForSemanticSegmentation, SetrPreTrainedModel, SetrSemanticSegmenterOutput

CONFIG_CLASS = SetrConfig
MODEL_CLASS = SetrForSemanticSegmentation
CONVERTER = SetrConverter

__all__ = ["SetrConfig", "SetrForSemanticSegmentation", "SetrPreTrainedModel", "SetrSemanticSegmenterOutput",
           "SetrConverter"]
