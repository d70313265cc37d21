"""Strict accounting of original checkpoint tensors: every tensor is renamed, reshaped or explicitly dropped."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch


class ConversionError(RuntimeError):
    """The original checkpoint does not fit the model the config describes. The message lists every problem."""


# A rule maps an original key (a regex over the whole key) to
#   - a replacement string (re.sub syntax): the tensor is renamed,
#   - None: the tensor is intentionally dropped (the rule's reason says why),
#   - a callable (match, tensor) -> {new_key: tensor}: the tensor is split or reshaped.
Target = str | None | Callable[[re.Match, torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Rule:
    pattern: str
    target: Target
    reason: str = ""

    def __post_init__(self):
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def match(self, key: str) -> re.Match | None:
        return self._regex.fullmatch(key)


def drop(pattern: str, reason: str) -> Rule:
    if not reason:
        raise ValueError("a dropped tensor needs a reason")
    return Rule(pattern, None, reason)


@dataclass
class ConversionReport:
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for reason in self.dropped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines = [f"{len(self.renamed)} tensors converted, {len(self.dropped)} intentionally dropped"]
        lines += [f"  dropped {n}: {reason}" for reason, n in sorted(reasons.items())]
        return "\n".join(lines)


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load an original ``.pth`` safely (``weights_only=True``) and unwrap the usual containers."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated files, pickles with code, non-checkpoints
        raise ConversionError(f"cannot read {path} as a checkpoint with weights_only=True: {err}") from err
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path} holds no state dict")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def convert_state_dict(
    source: Mapping[str, torch.Tensor],
    rules: Iterable[Rule],
    target: Mapping[str, torch.Tensor],
    *,
    target_optional: Iterable[str] = (),
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Apply ``rules`` (first full match wins) to every source tensor and check the result against ``target``.

    ``target`` is the new model's ``state_dict()``; keys matching a ``target_optional`` regex may stay missing
    (e.g. buffers the new model computes itself). Raises :class:`ConversionError` listing every unknown source key,
    every missing or unexpected target key, every shape mismatch and every tensor holding NaN/inf (a diverged
    checkpoint converts to a model that predicts nothing), so one run shows the whole problem.
    """
    rules = list(rules)
    optional = [re.compile(p) for p in target_optional]
    report = ConversionReport()
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in source.items():
        rule = next((r for r in rules if r.match(key)), None)
        if rule is None:
            unknown.append(key)
            continue
        if rule.target is None:
            report.dropped[key] = rule.reason
            continue
        match = rule.match(key)
        outputs = rule.target(match, tensor) if callable(rule.target) else {match.expand(rule.target): tensor}
        for new_key, new_tensor in outputs.items():
            if new_key in converted:
                raise ConversionError(f"two source tensors map to {new_key!r} (the second is {key!r})")
            converted[new_key] = new_tensor
            report.renamed[key] = new_key

    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown source keys: {_listing(unknown)}")
    unexpected = [k for k in converted if k not in target]
    if unexpected:
        problems.append(f"{len(unexpected)} converted keys the model does not have: {_listing(unexpected)}")
    missing = [k for k in target if k not in converted and not any(p.fullmatch(k) for p in optional)]
    if missing:
        problems.append(f"{len(missing)} model keys missing from the checkpoint: {_listing(missing)}")
    mismatched = [
        f"{k}: checkpoint {tuple(converted[k].shape)} vs model {tuple(target[k].shape)}"
        for k in converted
        if k in target and converted[k].shape != target[k].shape
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_listing(mismatched)}")
    broken = non_finite_tensors(converted)
    if broken:
        problems.append(f"{len(broken)} tensors hold NaN or infinite values (a diverged or damaged checkpoint): "
                        f"{_listing(broken)}")
    if problems:
        raise ConversionError("checkpoint does not match the model:\n  " + "\n  ".join(problems))
    return converted, report


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """``key (n NaN, m inf)`` for every floating-point tensor of ``state`` holding NaN or infinite values."""
    found = []
    for key, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                nan = int(torch.isnan(tensor).sum())
                found.append(f"{key} ({nan} NaN, {int((~finite).sum()) - nan} inf)")
    return found


def _listing(items: list[str], limit: int = 25) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
