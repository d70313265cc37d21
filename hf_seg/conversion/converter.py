"""What a family converter provides, and the one routine that turns an original config + checkpoint into a folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config_reader import ConfigError, read_config
from .state_dict import ConversionError, ConversionReport, Rule, convert_state_dict, load_checkpoint_file


class OriginalConverter:
    """Base class of the per-family converters (``hf_seg/modeling/<family>/convert_<family>.py``).

    A family overrides :meth:`matches`, :meth:`build_config`, :meth:`processor_kwargs` and :meth:`rules`; the
    defaults read one checkpoint file and require every model key to be produced.
    """

    family: str = ""
    model_class: type | None = None
    # regexes of model keys the checkpoint need not provide (buffers the model computes itself)
    target_optional: Sequence[str] = ()

    def matches(self, original: dict[str, Any]) -> bool:
        raise NotImplementedError

    def build_config(self, original: dict[str, Any]):
        raise NotImplementedError

    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def rules(self, config) -> list[Rule]:
        raise NotImplementedError

    def read_checkpoints(self, paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
        if len(paths) != 1:
            raise ConversionError(f"{self.family} checkpoints are one file, got {len(paths)}")
        return load_checkpoint_file(paths[0])

    def convert(self, original: dict[str, Any], checkpoint_paths: Sequence[str | Path]):
        """Build the model for ``original`` and load the converted weights; returns (model, processor, report)."""
        from ..families import get_family

        config = self.build_config(original)
        model = self.model_class(config)
        source = self.read_checkpoints(checkpoint_paths)
        state, report = convert_state_dict(source, self.rules(config), model.state_dict(),
                                           target_optional=self.target_optional)
        model.load_state_dict(state, strict=False)  # completeness was checked above, optional keys excepted
        model.eval()
        processor = get_family(self.family).processor_class(**self.processor_kwargs(original))
        return model, processor, report


def find_converter(original: dict[str, Any], config_path: str | Path = "") -> OriginalConverter:
    from ..families import families

    converters = [family.converter_class() for family in families().values()]
    matching = [converter for converter in converters if converter.matches(original)]
    if not matching:
        raise ConfigError(f"{config_path}: not a config of any family hf_seg converts")
    if len(matching) > 1:
        raise ConfigError(f"{config_path}: ambiguous config, matches {[c.family for c in matching]}")
    return matching[0]


def convert_original(
    config_path: str | Path,
    checkpoint_paths: Sequence[str | Path],
    output_dir: str | Path | None = None,
    family: str | None = None,
):
    """Convert an original config + checkpoint(s); write ``output_dir`` (config.json, model.safetensors,
    preprocessor_config.json, conversion_report.json) when given. Returns (model, processor, report)."""
    original = read_config(config_path)
    converter = find_converter(original, config_path)
    if family is not None and converter.family != family:
        raise ConfigError(f"{config_path} is a {converter.family!r} config, not {family!r}")
    model, processor, report = converter.convert(original, checkpoint_paths)
    if output_dir is not None:
        save_converted(model, processor, report, output_dir, config_path, checkpoint_paths)
    return model, processor, report


def save_converted(model, processor, report: ConversionReport, output_dir, config_path, checkpoint_paths) -> None:
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    provenance = {
        "original_config": str(config_path),
        "original_checkpoints": [str(p) for p in checkpoint_paths],
        "converted": report.renamed,
        "dropped": report.dropped,
    }
    (output_dir / "conversion_report.json").write_text(json.dumps(provenance, indent=1))
