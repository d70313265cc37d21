from .configuration_regionproxy import RegionProxyConfig
from .convert_regionproxy import RegionProxyConverter
from .modeling_regionproxy import (
    RegionProxyForSemanticSegmentation,
    RegionProxyPreTrainedModel,
    RegionProxySegmenterOutput,
)

CONFIG_CLASS = RegionProxyConfig
MODEL_CLASS = RegionProxyForSemanticSegmentation
CONVERTER = RegionProxyConverter

__all__ = [
    "RegionProxyConfig", "RegionProxyForSemanticSegmentation", "RegionProxyPreTrainedModel",
    "RegionProxySegmenterOutput", "RegionProxyConverter",
]
