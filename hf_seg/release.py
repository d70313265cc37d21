"""Releasing one zoo row: convert the original checkpoint, prove the conversion, write the hub folder, push on request.

``scripts/release.py`` runs :func:`hf_seg.release_cli.main`; everything it does lives here so that tests can drive it
in-process.

Steps of :func:`release`:

1. convert the original config + checkpoint(s) with :func:`hf_seg.conversion.convert_original` (restricted to the
   row's family);
2. refuse a checkpoint of another row: the converted config must equal the row's preset on every architecture field
   (protocol and training-only fields that differ are reported as warnings);
3. verify the converted model against the original's outputs: ``expected`` logits stored with the conversion
   (fixture format: ``input.safetensors`` with ``pixel_values``, ``expected.safetensors`` with ``logits``), or
   recomputed with the original code when the family declares it and it is importable — within 1e-4 relative;
4. write the hub folder: ``model.safetensors``, ``config.json``, ``preprocessor_config.json``,
   ``conversion_report.json``, ``parity.json``, attached evaluation JSONs and the model card ``README.md``;
5. upload it only when ``push`` is set (a dry run prints what would be uploaded).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .families import get_family
from .hub import push_folder
from .label_sets import available_label_sets, get_label_set
from .zoo import ZooEntry, get_entry, list_models

DEFAULT_RTOL = 1e-4
# HfSegConfig's test-protocol fields: a difference is worth a warning, not a refusal
PROTOCOL_FIELDS = ("test_mode", "test_crop_size", "test_stride", "semantic_loss_ignore_index")
# fields that only matter for training (regularisation, initialisation, loss weights, the recorded recipe)
TRAINING_ONLY = re.compile(r"(drop|dropout|init|loss|deep_sup|_weight$|^aux.*weight|^training_recipe$)")
WRITTEN_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "conversion_report.json",
                 "parity.json", "README.md")


class ReleaseError(RuntimeError):
    """A release that must not go ahead (wrong row, failed parity, no evidence)."""


@dataclass
class ArchitectureCheck:
    mismatches: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (preset, converted)
    warnings: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self, items: dict[str, tuple[Any, Any]]) -> str:
        return "; ".join(f"{k}: row {a!r} vs checkpoint {b!r}" for k, (a, b) in sorted(items.items()))


@dataclass
class ReleaseResult:
    entry: ZooEntry
    output: Path
    repo_id: str
    files: dict[str, int]  # relative path -> bytes
    architecture: ArchitectureCheck
    parity: dict | None
    pushed_url: str | None = None
    messages: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# the row's preset vs the converted config
# ---------------------------------------------------------------------------------------------------------------


def preset_config(entry: ZooEntry):
    """The row's config (what :func:`hf_seg.zoo.build_config` builds), without needing ``entry`` in the registry."""
    kwargs = dict(entry.config)
    if entry.dataset in available_label_sets():
        labels = get_label_set(entry.dataset)
        kwargs.update(id2label=labels.id2label, num_labels=labels.num_labels)
    elif "num_labels" not in kwargs:
        raise ReleaseError(f"{entry.name}: dataset {entry.dataset!r} is no label set and the config has no num_labels")
    return get_family(entry.family).config_class(**kwargs)


def _normalize(value):
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _equal(a, b) -> bool:
    a, b = _normalize(a), _normalize(b)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return a == b


def compare_architecture(entry: ZooEntry, converted_config) -> ArchitectureCheck:
    """Compare every field the family config adds to transformers' base config, and the number of labels."""
    from transformers import PretrainedConfig

    preset = preset_config(entry)
    if type(preset) is not type(converted_config):
        return ArchitectureCheck({"config class": (type(preset).__name__, type(converted_config).__name__)})
    base = set(PretrainedConfig().to_dict())
    want, got = preset.to_dict(), converted_config.to_dict()
    check = ArchitectureCheck()
    keys = (set(want) | set(got)) - base - {"id2label", "label2id", "model_type", "transformers_version"}
    for key in sorted(keys):
        a, b = want.get(key), got.get(key)
        if _equal(a, b):
            continue
        if key in PROTOCOL_FIELDS or TRAINING_ONLY.search(key):
            check.warnings[key] = (a, b)
        else:
            check.mismatches[key] = (a, b)
    if preset.num_labels != converted_config.num_labels:
        check.mismatches["num_labels"] = (preset.num_labels, converted_config.num_labels)
    return check


def compare_processor(entry: ZooEntry, processor) -> dict[str, tuple[Any, Any]]:
    """Fields of the row's preset processor that the processor converted from the original config sets otherwise."""
    got = processor.to_dict()
    return {k: (v, got.get(k)) for k, v in sorted(entry.processor.items()) if k in got and not _equal(v, got.get(k))}


# ---------------------------------------------------------------------------------------------------------------
# parity: stored outputs, or the original code
# ---------------------------------------------------------------------------------------------------------------


def compare_logits(actual: torch.Tensor, expected: torch.Tensor, rtol: float = DEFAULT_RTOL) -> dict[str, Any]:
    if tuple(actual.shape) != tuple(expected.shape):
        return {"passed": False, "error": f"logits shape {tuple(actual.shape)} != expected {tuple(expected.shape)}",
                "rtol": rtol}
    diff = (actual.double() - expected.double()).abs().max().item()
    scale = max(expected.double().abs().max().item(), 1e-12)
    return {"passed": bool(diff <= rtol * scale), "max_abs_diff": diff, "expected_scale": scale,
            "tolerance": rtol * scale, "rtol": rtol}


@torch.no_grad()
def _model_logits(model, pixel_values: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(pixel_values=pixel_values).logits


def original_reference(family: str):
    """The family's ``original_logits`` (``(original_cfg, checkpoints, pixel_values) -> logits``, running the original
    code) when that code is importable here, else None."""
    return get_family(family).original_reference()


def stored_window(expected: Path) -> tuple[int, int, int, int] | None:
    """(y, x, h, w) of the window a slide-mode fixture's logits were computed on, from the ``meta.json`` stored next
    to ``expected.safetensors`` (``meta["slide"]``: ``crop_size`` and ``first_window_yx``); None for whole-image."""
    meta_path = expected.parent / "meta.json"
    if not meta_path.is_file():
        return None
    slide = json.loads(meta_path.read_text()).get("slide")
    if not slide:
        return None
    (h, w), (y, x) = slide["crop_size"], slide.get("first_window_yx", (0, 0))
    return int(y), int(x), int(h), int(w)


def verify(model, entry: ZooEntry, original: dict, checkpoints: Sequence[Path], expected: Path | None = None,
           input_path: Path | None = None, input_size: Sequence[int] = (128, 128), rtol: float = DEFAULT_RTOL,
           seed: int = 0, window: Sequence[int] | None = None) -> dict[str, Any]:
    from safetensors.torch import load_file

    pixel_values = None
    if input_path is not None:
        inputs = load_file(str(input_path))
        if "pixel_values" not in inputs:
            raise ReleaseError(f"{input_path} has no 'pixel_values' tensor (keys: {sorted(inputs)})")
        pixel_values = inputs["pixel_values"].float()
    if expected is not None:
        if pixel_values is None:
            raise ReleaseError("--expected needs --input (the pixel_values the expected logits were computed on)")
        stored = load_file(str(expected))
        if "logits" not in stored:
            raise ReleaseError(f"{expected} has no 'logits' tensor (keys: {sorted(stored)})")
        reference, method = stored["logits"], f"stored original outputs ({Path(expected).name})"
        if window is None:
            window = stored_window(Path(expected))
        if window is not None:  # slide-mode fixtures store the logits of one window
            y, x, h, w = window
            pixel_values = pixel_values[..., y:y + h, x:x + w]
            method += f", window y={y} x={x} {h}x{w}"
    else:
        reference_fn = original_reference(entry.family)
        if reference_fn is None:
            raise ReleaseError(f"no parity evidence: pass --expected/--input with the original outputs, or install "
                               f"the original {entry.family} code (or pass --no-verify to release unverified)")
        if pixel_values is None:
            generator = torch.Generator().manual_seed(seed)
            pixel_values = torch.randn(1, 3, *input_size, generator=generator)
        reference = reference_fn(original, checkpoints, pixel_values)
        method = f"recomputed with the original code ({get_family(entry.family).original_package})"
    actual = _model_logits(model, pixel_values)
    result = compare_logits(actual, reference, rtol)
    result.update(method=method, input_shape=list(pixel_values.shape), row=entry.name)
    return result


# ---------------------------------------------------------------------------------------------------------------
# the release
# ---------------------------------------------------------------------------------------------------------------


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise ReleaseError(f"{output} is not empty (pass --overwrite to replace the files a release writes)")
        for name in WRITTEN_FILES:
            (output / name).unlink(missing_ok=True)
        for path in output.glob("eval*.json"):
            path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def folder_listing(output: Path) -> dict[str, int]:
    return {str(p.relative_to(output)): p.stat().st_size for p in sorted(output.rglob("*")) if p.is_file()}


# an absolute local path (POSIX, home-relative or Windows), also inside a command line; not a URL's path
_LOCAL_PATH = re.compile(r"(?<![\w.:/~-])(?:~?/|[A-Za-z]:[\\/])[^\s'\"]+")


def without_local_paths(data: Any) -> Any:
    """``data`` (an evaluation JSON) with every absolute local path replaced by its last component, so that a
    release does not publish where the model, dataset and command lived on the releaser's machine."""
    if isinstance(data, dict):
        return {key: without_local_paths(value) for key, value in data.items()}
    if isinstance(data, list):
        return [without_local_paths(value) for value in data]
    if isinstance(data, str):
        return _LOCAL_PATH.sub(lambda m: Path(m.group(0).replace("\\", "/")).name or ".", data)
    return data


def release(
    row: str | ZooEntry,
    original_checkpoints: Sequence[str | Path],
    original_config: str | Path,
    output: str | Path,
    expected: str | Path | None = None,
    input_path: str | Path | None = None,
    eval_jsons: Sequence[str | Path] = (),
    push: bool = False,
    repo_id: str | None = None,
    token: str | None = None,
    private: bool = False,
    no_verify: bool = False,
    overwrite: bool = False,
    input_size: Sequence[int] = (128, 128),
    rtol: float = DEFAULT_RTOL,
    window: Sequence[int] | None = None,
    api=None,
) -> ReleaseResult:
    from .conversion import convert_original, read_config, save_converted
    from .model_cards import card_text, parse_eval_json

    entry = get_entry(row) if isinstance(row, str) else row
    checkpoints = [Path(p) for p in original_checkpoints]
    output = Path(output)
    repo_id = repo_id or entry.hub_id
    messages = []
    if not entry.checkpoint_urls:
        messages.append(f"note: the zoo lists no released original checkpoint for {entry.name}")

    evals = []  # validate before doing any work
    for path in eval_jsons:
        data = without_local_paths(json.loads(Path(path).read_text()))
        parse_eval_json(data, source=str(path), entry=entry)
        evals.append(data)

    model, processor, report = convert_original(original_config, checkpoints, None, family=entry.family)
    architecture = compare_architecture(entry, model.config)
    if not architecture.ok:
        raise ReleaseError(f"this checkpoint is not the architecture of {entry.name}: "
                           f"{architecture.describe(architecture.mismatches)}")
    if architecture.warnings:
        messages.append(f"warning: fields that differ from the preset (protocol/training only): "
                        f"{architecture.describe(architecture.warnings)}")

    processor_diff = compare_processor(entry, processor)
    if processor_diff:
        messages.append("warning: the original test pipeline differs from the row's preset processor: "
                        + "; ".join(f"{k}: row {a!r} vs original config {b!r}" for k, (a, b) in processor_diff.items()))

    parity = None
    if no_verify:
        messages.append("warning: released WITHOUT a parity check (--no-verify)")
    else:
        parity = verify(model, entry, read_config(original_config), checkpoints,
                        Path(expected) if expected else None, Path(input_path) if input_path else None,
                        input_size=input_size, rtol=rtol, window=window)
        if not parity["passed"]:
            detail = parity.get("error") or (f"max abs diff {parity['max_abs_diff']:.3g} > tolerance "
                                             f"{parity['tolerance']:.3g}")
            raise ReleaseError(f"parity check failed for {entry.name} ({parity['method']}): {detail}")

    _prepare_output(output, overwrite)
    save_converted(model, processor, report, output, original_config, checkpoints)
    # provenance without local paths: the hub folder names the original files only
    provenance = json.loads((output / "conversion_report.json").read_text())
    provenance["original_config"] = Path(original_config).name
    provenance["original_checkpoints"] = [p.name for p in checkpoints]
    provenance["original_checkpoint_urls"] = list(entry.checkpoint_urls)
    provenance["zoo_row"] = entry.name
    (output / "conversion_report.json").write_text(json.dumps(provenance, indent=1) + "\n")
    if parity is not None:
        (output / "parity.json").write_text(json.dumps(parity, indent=1, sort_keys=True) + "\n")
    for index, data in enumerate(evals):
        (output / f"eval-{index}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    measured = []
    for index, data in enumerate(evals):
        measured += parse_eval_json(data, source=f"eval-{index}.json", entry=entry)
    family_entries = list_models(entry.family)
    if entry.name not in {e.name for e in family_entries}:
        family_entries = [*family_entries, entry]
    (output / "README.md").write_text(card_text(entry, family_entries=family_entries, measured=measured,
                                                parity=parity), encoding="utf-8")

    result = ReleaseResult(entry, output, repo_id, folder_listing(output), architecture, parity, messages=messages)
    if push:
        result.pushed_url = push_folder(output, repo_id, token=token, private=private, api=api,
                                        commit_message=f"Release {entry.name} converted from the original checkpoint")
    return result


def main(argv=None) -> int:
    """``scripts/release.py``: the command line of :mod:`hf_seg.release_cli`."""
    from .release_cli import main as cli_main

    return cli_main(argv)
