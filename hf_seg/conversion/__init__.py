"""Converter framework: safe config reading, strict checkpoint accounting, and the convert routine."""

from . import mmseg
from .config_reader import ConfigError, merge_configs, read_config
from .converter import OriginalConverter, convert_original, find_converter, save_converted
from .state_dict import ConversionError, ConversionReport, Rule, convert_state_dict, drop, load_checkpoint_file

__all__ = [
    "ConfigError", "ConversionError", "ConversionReport", "OriginalConverter", "Rule", "convert_original",
    "convert_state_dict", "drop", "find_converter", "load_checkpoint_file", "merge_configs", "read_config",
    "save_converted",
]
