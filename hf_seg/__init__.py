"""hf_seg: SETR, RegionProxy, UN-EPT, SeMask-FPN and the MIT CSAIL ADE20K models as transformers models.

``import hf_seg`` registers every family with ``AutoConfig``, ``AutoModelForSemanticSegmentation`` and
``AutoImageProcessor``; nothing is compiled or built at import time.
"""

from .auto import register_auto_classes
from .fusion import optimize_for_inference
from .image_processing import HfSegImageProcessor
from .version import __version__
from .zoo import list_models

register_auto_classes()

__all__ = ["HfSegImageProcessor", "list_models", "optimize_for_inference", "register_auto_classes", "__version__"]
