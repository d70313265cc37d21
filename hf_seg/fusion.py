"""Inference-only rewrites of a model that keep its numbers: :func:`optimize_for_inference`.

Three rewrites, each exact up to float rounding and each checked on an example input:

* **BatchNorm folding.** In eval mode a BatchNorm that reads a convolution's output is an affine map per channel, so
  it folds into the convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and becomes an
  ``Identity``: one pass over the activation fewer per pair. Pairs are found by watching one forward, not by module
  names, so every family's layout is covered: the BatchNorm's input must be exactly the output of a plain
  convolution (same autograd node, so nothing modified it in between), each module must run once, and the
  convolution's output must have no other consumer (counted in the autograd graph of the example forward) — folding
  would change what another consumer sees.
* **Weight standardisation cached.** timm's ``StdConv2d``/``StdConv2dSame`` (BiT / hybrid ViT stems) standardise their
  weight on every forward; with frozen weights that is the same tensor every time, so it is computed once (by the
  same expression, so the convolution sees bit-identical weights) and the layer becomes a plain convolution.
* **channels_last** on the CPU for models that convolutions carry and whose dense convolutions are all narrow:
  oneDNN is faster with NHWC activations there (measured, one thread, same process: MobileNetV2-C1 1.19x, HRNetV2-C1
  1.15x) and slower for wide dense ones (ResNet-50-dilated + PPM 0.83x, ResNet-50 + UPerNet 0.87x). The rule reads
  only the model's structure, so every run and every process of a distributed run decides the same (a timed A/B
  would not, and the logits of the two formats differ in the last bits).

The rewritten model is for inference only: its weights are no longer the checkpoint's, so ``save_pretrained`` (and
``push_to_hub``, which calls it) and ``train()`` refuse with a message — reload the model to save or train it. The
logits after the rewrite are compared with the ones before (``<= rtol`` of their scale); on a mismatch every change
is undone, with a warning. ``HF_SEG_NO_FUSE=1`` (or ``--no-fuse`` on the commands) leaves models untouched.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["InferenceOptimization", "example_input", "fusion_disabled", "is_optimized", "optimize_for_inference"]

DISABLE_ENV = "HF_SEG_NO_FUSE"
# the project's inference parity tolerance: max |difference| <= RTOL * max |logits|
RTOL = 1e-4
HALF_RTOL = 0.25
# "narrow": a dense (groups=1) Conv2d weight with at most this many elements. HRNetV2's widest is 384x384x3x3 (1.3M),
# MobileNetV2's 960x320 (0.3M); ResNet-50's 3x3 convs of its last stage are 512x512x3x3 (2.4M).
NARROW_CONV_WEIGHT = 2**21
_PLAIN_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PLAIN_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_ATTRIBUTE = "hf_seg_inference_optimization"


@dataclass
class InferenceOptimization:
    """What :func:`optimize_for_inference` did (also kept on it as ``model.hf_seg_inference_optimization``)."""

    folded_batch_norms: int = 0
    standardised_convs: int = 0
    channels_last: bool = False
    max_rel_diff: float | None = None  # fused logits vs the original model's on the example
    timings: dict = field(default_factory=dict)  # the time the rewrite took
    notes: list = field(default_factory=list)

    @property
    def weights_changed(self) -> bool:
        return bool(self.folded_batch_norms or self.standardised_convs)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        parts = [f"{self.folded_batch_norms} BatchNorm(s) folded", f"{self.standardised_convs} standardised conv(s) "
                 f"cached", "channels_last" if self.channels_last else "contiguous"]
        if self.max_rel_diff is not None:
            parts.append(f"max rel diff {self.max_rel_diff:.1e}")
        return ", ".join(parts) + "".join(f"; {note}" for note in self.notes)


def fusion_disabled() -> bool:
    """True when ``HF_SEG_NO_FUSE`` is set to anything but ''/0/false/no."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_optimized(model) -> bool:
    return getattr(model, _ATTRIBUTE, None) is not None


def example_input(model, crop_size=None, seed: int = 0) -> torch.Tensor:
    """A seeded ``randn(1, 3, H, W)`` on the model's device and dtype: ``crop_size`` or the config's
    ``test_crop_size`` (the window the test protocol feeds the model), else 512x512."""
    size = crop_size or getattr(getattr(model, "config", None), "test_crop_size", None) or 512
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    param = next(model.parameters())
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, h, w, generator=g).to(device=param.device, dtype=param.dtype)


# ----------------------------------------------------------------------------------------------- public entry
def optimize_for_inference(model: nn.Module, example: torch.Tensor | None = None, *, fold_batch_norms: bool = True,
                           cache_standardised_weights: bool = True, channels_last: bool | str = "auto",
                           rtol: float | None = None) -> nn.Module:
    """Rewrite ``model`` (in eval mode) in place for inference and return it; see the module docstring.

    Args:
        example: ``pixel_values`` the check runs on (default :func:`example_input`); its size only needs to be one
            the model accepts (the check runs on its top-left quarter when the model accepts that).
        channels_last: ``"auto"`` (the structural rule above), ``True`` or ``False``.
        rtol: allowed max |fused - original| / max |original logits|. Default 1e-4 in fp32; in half precision the
            unfused model's own rounding through many layers is already percent-sized, so there the check (1/16 in
            fp16, 1/4 in bf16) only catches structural mistakes.
    Refuses a model in training mode (folding uses the running statistics). With ``HF_SEG_NO_FUSE`` set, returns the
    model unchanged. Calling it twice is a no-op.
    """
    if is_optimized(model):
        return model
    if fusion_disabled():
        return model
    if any(m.training for m in model.modules()):
        raise ValueError("optimize_for_inference needs a model in eval mode (call model.eval() first): it folds "
                         "BatchNorm's running statistics, which training mode does not use")
    if channels_last not in (True, False, "auto"):
        raise ValueError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    started = time.perf_counter()
    example = (example if example is not None else example_input(model))[:1]
    if rtol is None:
        rtol = max(RTOL, min(HALF_RTOL, 64 * torch.finfo(example.dtype).eps)) if example.is_floating_point() else RTOL
    report = InferenceOptimization()
    undo: list[Callable[[], None]] = []

    # The pairs do not depend on the input size, and the trace keeps every activation alive for the autograd graph,
    # so it runs on a quarter-size window (1/16 of the memory); its logits are the reference the rewrite is checked
    # against, on the same input.
    small = _shrunk(example, 4)
    if fold_batch_norms:
        try:
            reference, pairs = _traced_conv_bn_pairs(model, small)
        except Exception as err:  # a model that refuses the small size: trace the example itself
            report.notes.append(f"traced at the example's size ({type(err).__name__} at {tuple(small.shape[-2:])})")
            small = example
            reference, pairs = _traced_conv_bn_pairs(model, small)
    else:
        with torch.inference_mode():
            reference, pairs = _logits(model, small), []
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        undo.append(_replace(model, conv_name, _fused_conv(conv, bn)))
        undo.append(_replace(model, bn_name, _after_norm(bn)))
    report.folded_batch_norms = len(pairs)
    if cache_standardised_weights:
        for name, module in list(model.named_modules()):
            frozen = _frozen_standardised_conv(module)
            if frozen is not None:
                undo.append(_replace(model, name, frozen))
                report.standardised_convs += 1
    use_cl = _prefers_channels_last(model, example.device) if channels_last == "auto" else channels_last
    if use_cl:
        model.to(memory_format=torch.channels_last)
        undo.append(lambda: model.to(memory_format=torch.contiguous_format))
    report.channels_last = bool(use_cl)
    with torch.inference_mode():
        report.max_rel_diff = _rel_diff(_logits(model, small), reference)
    if not report.max_rel_diff <= rtol:
        for step in reversed(undo):
            step()
        report.notes.append(f"rewrite undone: logits differed by {report.max_rel_diff:.2e} of their scale "
                            f"(> {rtol:g})")
        report.folded_batch_norms = report.standardised_convs = 0
        report.channels_last = False
        warnings.warn(f"optimize_for_inference: {report.notes[-1]}; the model is unchanged", stacklevel=2)
        return model
    del undo, reference  # the replaced modules' weights are freed here
    report.timings["optimize_s"] = time.perf_counter() - started
    object.__setattr__(model, _ATTRIBUTE, report)
    if report.weights_changed:
        _guard(model)
    return model


def _fused_conv(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """``fuse_conv_bn_eval`` computed in fp32 (a half-precision model would otherwise round twice), then cast back."""
    if conv.weight.dtype in (torch.float32, torch.float64):
        return fuse_conv_bn_eval(conv, bn)
    dtype = conv.weight.dtype
    fused = fuse_conv_bn_eval(copy.deepcopy(conv).float(), copy.deepcopy(bn).float())
    return fused.to(dtype)


# ------------------------------------------------------------------------------------------------ finding pairs
def _is_plain(module: nn.Module, bases) -> bool:
    """An instance of one of ``bases`` whose class does not change what ``forward`` computes."""
    base = next((b for b in bases if isinstance(module, b)), None)
    if base is None:
        return False
    if parametrize.is_parametrized(module):  # its weight is computed per call (e.g. weight norm)
        return False
    cls = type(module)
    return cls.forward is base.forward and getattr(cls, "_conv_forward", None) is getattr(base, "_conv_forward", None)


def _traced_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """(the example's logits, the (conv, bn) module names that can be folded), from one forward with autograd
    recording so that the consumers of every convolution's output can be counted."""
    names = {m: n for n, m in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    conv_node: dict[nn.Module, object] = {}
    bn_source: dict[nn.Module, object] = {}

    def conv_hook(module, args, output):
        calls[module] = calls.get(module, 0) + 1
        conv_node[module] = output.grad_fn

    def bn_pre_hook(module, args):
        calls[module] = calls.get(module, 0) + 1
        bn_source[module] = args[0].grad_fn if isinstance(args[0], torch.Tensor) else None

    hooks = []
    for module in model.modules():
        if _is_plain(module, _PLAIN_CONVS):
            hooks.append(module.register_forward_hook(conv_hook))
        elif ((_is_plain(module, _PLAIN_NORMS) or type(module) in _norm_act_classes())
              and module.track_running_stats and module.running_mean is not None):
            hooks.append(module.register_forward_pre_hook(bn_pre_hook))
    try:
        # inference_mode(False) + enable_grad: record the graph even when the caller runs under no_grad; the example
        # requires grad so that frozen parameters still leave nodes behind
        with torch.inference_mode(False), torch.enable_grad():
            outputs = _call(model, example.detach().clone().requires_grad_(True))
            tensors = [t for t in _tensors(outputs) if t.grad_fn is not None]
            consumers = _consumer_counts(tensors)
            logits = _first_logits(outputs).detach()
    finally:
        for hook in hooks:
            hook.remove()
    by_node = {}
    for conv, node in conv_node.items():
        if node is not None and calls.get(conv) == 1:
            by_node[node] = conv
    pairs = []
    for bn, node in bn_source.items():
        conv = by_node.get(node)
        if conv is None or calls.get(bn) != 1 or consumers.get(node, 0) != 1:
            continue
        if conv.out_channels != bn.num_features or conv.weight.dim() != _norm_dims(bn) + 2:
            continue
        pairs.append((names[conv], names[bn]))
    return logits, pairs


def _norm_act_classes() -> tuple:
    """BatchNorm subclasses that add layers after the normalisation: timm's ``BatchNormAct2d`` (BN, drop, act)."""
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover - timm is a dependency
        return ()
    return (BatchNormAct2d,)


def _after_norm(bn: nn.Module) -> nn.Module:
    """What stays of a folded BatchNorm: nothing, or the layers a norm-act module runs after normalising."""
    if type(bn) in _norm_act_classes():
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def _norm_dims(bn: nn.Module) -> int:
    """Spatial dimensions a BatchNorm expects (SyncBatchNorm accepts any; its conv decides)."""
    if isinstance(bn, nn.BatchNorm1d):
        return 1
    if isinstance(bn, nn.BatchNorm3d):
        return 3
    if isinstance(bn, nn.BatchNorm2d):
        return 2
    return 2


def _consumer_counts(outputs: list[torch.Tensor]) -> dict:
    """How many times each autograd node is used: by later nodes, plus once per returned tensor it produced."""
    counts: dict = {}
    seen = set()
    stack = []
    for tensor in outputs:
        counts[tensor.grad_fn] = counts.get(tensor.grad_fn, 0) + 1
        stack.append(tensor.grad_fn)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                counts[child] = counts.get(child, 0) + 1
                stack.append(child)
    return counts


# ------------------------------------------------------------------------------------------- weight standardisation
class _FrozenStandardisedConv2d(nn.Conv2d):
    """A timm ``StdConv2d``/``StdConv2dSame`` whose standardised weight was computed once (inference only); keeps
    the TF-'SAME' padding when the original computed it per input."""

    same_pad: bool = False

    def forward(self, x):
        if self.same_pad:
            from timm.layers import pad_same

            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        return self._conv_forward(x, self.weight, self.bias)


def _frozen_standardised_conv(module: nn.Module) -> nn.Module | None:
    """The frozen replacement of a timm standardised conv (exact class, so its forward is the one we mirror)."""
    try:
        from timm.layers import StdConv2d, StdConv2dSame
    except ImportError:  # pragma: no cover - timm is a dependency
        return None
    if type(module) not in (StdConv2d, StdConv2dSame):
        return None
    with torch.no_grad():
        # timm's expression, so the weight is bit-identical to the one each forward computed
        weight = torch.nn.functional.batch_norm(module.weight.reshape(1, module.out_channels, -1), None, None,
                                                training=True, momentum=0.0, eps=module.eps).reshape_as(module.weight)
    frozen = _FrozenStandardisedConv2d(module.in_channels, module.out_channels, module.kernel_size,
                                       stride=module.stride, padding=module.padding, dilation=module.dilation,
                                       groups=module.groups, bias=module.bias is not None, device="meta")
    frozen.weight = nn.Parameter(weight, requires_grad=module.weight.requires_grad)
    if module.bias is not None:
        frozen.bias = module.bias
    frozen.same_pad = bool(getattr(module, "same_pad", False))
    return frozen


# ------------------------------------------------------------------------------------------------------ helpers
def _replace(model: nn.Module, name: str, new: nn.Module) -> Callable[[], None]:
    """Swap the submodule ``name`` for ``new``; returns the step that swaps the old one back."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf)
    new.train(old.training)
    setattr(parent, leaf, new)

    return lambda: setattr(parent, leaf, old)


def _call(model: nn.Module, pixel_values: torch.Tensor):
    return model(pixel_values=pixel_values)


def _tensors(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):  # transformers' ModelOutput is a dict
        outputs = list(outputs.values())
    if isinstance(outputs, (tuple, list)):
        return [t for item in outputs for t in _tensors(item)]
    return []


def _first_logits(outputs) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if getattr(outputs, "logits", None) is not None:
        return outputs.logits
    return _tensors(outputs)[0]


def _logits(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    return _first_logits(_call(model, example))


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.abs().max())
    return float((a.float() - b.float()).abs().max()) / max(scale, 1e-12)


def _prefers_channels_last(model: nn.Module, device: torch.device) -> bool:
    """The structural rule of the module docstring: on the CPU, convolutions hold most of the parameters and every
    dense one is narrow. (On CUDA, fp32 convolutions gain little from NHWC without tensor cores; not measured here.)"""
    if device.type != "cpu":
        return False
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return False
    conv_params = sum(m.weight.numel() for m in convs)
    dense = [m.weight.numel() for m in convs if m.groups == 1]
    return 2 * conv_params > sum(p.numel() for p in model.parameters()) and max(dense, default=0) <= NARROW_CONV_WEIGHT


def _shrunk(example: torch.Tensor, factor: int) -> torch.Tensor:
    """The top-left crop of ``example`` at 1/``factor`` of its height and width (multiples of 32, at least 64)."""
    h, w = example.shape[-2:]
    size = [min(n, max(64, n // factor // 32 * 32)) for n in (h, w)]
    return example[..., : size[0], : size[1]].contiguous()


# --------------------------------------------------------------------------------------------- what stays refused
class _SaveRefused:
    """Stands in for ``save_pretrained`` on a rewritten model (an object, not a closure: the model still pickles)."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            "this model was rewritten for inference by hf_seg.optimize_for_inference (BatchNorm folded into "
            "convolutions / standardised weights cached), so its weights are not the checkpoint's; save the model "
            "before optimizing it, or reload it (hf_seg.zoo.load) to save or push it")


class _TrainRefused:
    """Stands in for ``train``: ``train(False)``/``eval()`` work, ``train(True)`` is refused."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, mode: bool = True):
        if mode:
            raise RuntimeError(
                "this model was rewritten for inference by hf_seg.optimize_for_inference (its BatchNorms are "
                "folded), so it cannot train; reload it (hf_seg.zoo.load) for training")
        return nn.Module.train(self.model, False)


def _guard(model: nn.Module) -> None:
    """Instance-level refusals: ``save_pretrained`` (``push_to_hub`` goes through it) and ``train(True)``."""
    if hasattr(model, "save_pretrained"):
        object.__setattr__(model, "save_pretrained", _SaveRefused())
    object.__setattr__(model, "train", _TrainRefused(model))
