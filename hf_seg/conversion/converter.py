"""What a family converter provides, and the one routine that turns an original config + checkpoint into a folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import contextmanager
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

    def config_for(self, original: dict[str, Any], source: dict[str, torch.Tensor]):
        """The model config for ``original``; a family whose config depends on the checkpoint's tensors overrides
        this (the default ignores ``source``)."""
        return self.build_config(original)

    def read_checkpoints(self, paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
        if len(paths) != 1:
            raise ConversionError(f"{self.family} checkpoints are one file, got {len(paths)}")
        return load_checkpoint_file(paths[0])

    def convert(self, original: dict[str, Any], checkpoint_paths: Sequence[str | Path]):
        """Build the model for ``original`` and load the converted weights; returns (model, processor, report).

        The config's shapes are compared with the checkpoint's before the model is built: first on the meta device
        (no weights allocated), and that build stops as soon as the config asks for more tensors than the checkpoint
        could fill, so ``depth=100000`` is refused at once instead of building a giant model."""
        from ..families import get_family

        source = self.read_checkpoints(checkpoint_paths)
        config = _config_step(f"the config does not describe a valid {self.family} model",
                              lambda: self.config_for(original, source))
        planned = self.planned_state_dict(config, source)
        state, report = convert_state_dict(source, self.rules(config), planned, target_optional=self.target_optional)
        model = _config_step(f"cannot build the {self.family} model the config describes",
                             lambda: self.model_class(config))
        model.load_state_dict(state, strict=False)  # completeness was checked above, optional keys excepted
        model.eval()
        processor_class = get_family(self.family).processor_class
        processor = _config_step(f"the config's test settings are not valid for the {self.family} image processor",
                                 lambda: processor_class(**self.processor_kwargs(original)))
        return model, processor, report

    def planned_state_dict(self, config, source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict (meta tensors: names and shapes only) of the model ``config`` describes, built within a
        budget the checkpoint sets: twice its elements (plus buffers the model computes itself) and four times its
        tensors (split tensors). A bigger model cannot match the checkpoint, so building it stops there."""
        from accelerate import init_empty_weights

        max_elements = 2 * sum(t.numel() for t in source.values()) + (1 << 22)
        max_tensors = 4 * len(source) + 256
        with init_empty_weights(include_buffers=False), _registration_budget(max_elements, max_tensors, source):
            model = _config_step(f"cannot build the {self.family} model the config describes",
                                 lambda: self.model_class(config))
        return model.state_dict()


_CONFIG_MISTAKES = (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError)


def _config_step(what: str, step: Callable[[], Any]) -> Any:
    """Run ``step``; a config value the family code cannot use (``patch_size=0``, ``arch_encoder: 5``, a missing
    key) becomes a :class:`ConfigError` saying ``what`` and why, not a traceback."""
    try:
        return step()
    except (ConfigError, ConversionError):
        raise
    except _CONFIG_MISTAKES as err:
        detail = f"missing key {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise ConfigError(f"{what}: {detail}") from err


@contextmanager
def _registration_budget(max_elements: int, max_tensors: int, source: dict[str, torch.Tensor]):
    """Stop building a model (:class:`ConversionError`) once its parameters and buffers exceed the budget."""
    from torch.nn.modules import module as nn_module

    used = {"elements": 0, "tensors": 0}

    def count(_module, name, tensor):
        if tensor is None:
            return None
        used["elements"] += tensor.numel()
        used["tensors"] += 1
        if used["elements"] > max_elements or used["tensors"] > max_tensors:
            held = sum(t.numel() for t in source.values())
            raise ConversionError(
                f"the config describes a model larger than the checkpoint (more than {used['tensors']} tensors / "
                f"{used['elements']:,} values built so far; the checkpoint holds {len(source)} tensors / {held:,} "
                f"values): building it was stopped. Check the config's depth and widths, or whether the checkpoint "
                f"belongs to this config")
        return None

    handles = [nn_module.register_module_parameter_registration_hook(count),
               nn_module.register_module_buffer_registration_hook(count)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


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
    _record_training_recipe(model, converter.family, original, config_path)
    if output_dir is not None:
        save_converted(model, processor, report, output_dir, config_path, checkpoint_paths)
    return model, processor, report


def _record_training_recipe(model, family: str, original, config_path) -> None:
    """Let the converted model carry its original training recipe (``config.training_recipe``): from the config's
    training sections and/or the zoo row of its file name. A recipe that cannot be read never fails a conversion."""
    import warnings

    from ..training.original_recipe import record_for_original

    try:
        record = record_for_original(family, original, config_path, model.config)
    except (KeyError, ValueError, TypeError) as err:
        warnings.warn(f"{config_path}: its training recipe is not recorded ({err})", stacklevel=3)
        return
    if record is not None:
        model.config.training_recipe = record


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
