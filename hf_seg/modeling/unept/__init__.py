from .configuration_unept import UnEptConfig
from .convert_unept import UnEptConverter
from .dt_offset import DtOffsetTransform, dt_offset_maps, dt_offset_targets
from .modeling_unept import UnEptForSemanticSegmentation, UnEptPreTrainedModel, UnEptSemanticSegmenterOutput

CONFIG_CLASS = UnEptConfig
MODEL_CLASS = UnEptForSemanticSegmentation
CONVERTER = UnEptConverter

__all__ = ["UnEptConfig", "UnEptForSemanticSegmentation", "UnEptPreTrainedModel", "UnEptSemanticSegmenterOutput",
           "UnEptConverter", "DtOffsetTransform", "dt_offset_maps", "dt_offset_targets"]
