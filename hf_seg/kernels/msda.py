"""Multi-scale deformable attention (Deformable DETR's core op) with a compiled fast path.

Public entry point: :func:`ms_deform_attn`. Layouts follow Deformable DETR:

* ``value``               ``[B, S, heads, dim_per_head]``, ``S = sum_l H_l * W_l``
* ``spatial_shapes``      int64 ``[L, 2]`` holding ``(H_l, W_l)``, or a list of ``(H, W)`` pairs
* ``level_start_index``   int64 ``[L]`` (first row of each level in ``S``), a list, or ``None``
* ``sampling_locations``  ``[B, Q, heads, L, P, 2]`` as ``(x, y)`` normalised to ``[0, 1]``
* ``attention_weights``   ``[B, Q, heads, L, P]``
* result                  ``[B, Q, heads * dim_per_head]``

Sampling is bilinear with ``grid_sample(align_corners=False, padding_mode="zeros")``
semantics: a location ``u`` on an axis of size ``N`` is at pixel ``u * N - 0.5`` and
corners outside the map contribute zero.

Backends:

* ``"pytorch"``: :func:`ms_deform_attn_pytorch`, the grid_sample formulation (the oracle in
  tests; pure aten ops, so it traces and exports without any custom op).
* ``"compiled"``: the custom op ``torch.ops.hf_seg.ms_deform_attn`` backed by the C++/CUDA
  kernels; raises :class:`KernelUnavailableError` if they cannot be built/loaded or are
  disabled.
* ``"auto"`` (default): compiled when available for the device, otherwise the fallback
  (after one :class:`KernelFallbackWarning` if a build failed).

``torch.compile`` / ``torch.export``: the custom op has a fake (meta) implementation and a
registered autograd formula, so it is opaque to the compilers and traces without graph
breaks. The pure-PyTorch fallback needs ``(H, W)`` as Python ints to reshape each level; pass
``spatial_shapes`` as a list of ``(H, W)`` pairs (plain ints or the symbolic sizes of the
feature maps, e.g. ``[tuple(f.shape[-2:]) for f in feats]``) to keep it free of
data-dependent ``.tolist()`` calls. With a tensor, the fallback reads it with ``.tolist()``
(a host sync on CUDA and a graph break under ``torch.compile``). The choice between the
compiled op and the fallback under ``backend="auto"`` is made once at trace time.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _loader
from ._loader import KernelUnavailableError

__all__ = ["ms_deform_attn", "ms_deform_attn_pytorch"]

ShapesLike = Union[Tensor, Sequence[Sequence[int]]]
_BACKENDS = ("auto", "compiled", "pytorch")


# ----------------------------------------------------------------------------------------
# Pure-PyTorch implementation (grid_sample formulation)
# ----------------------------------------------------------------------------------------


def _shapes_list(spatial_shapes: ShapesLike) -> List[Tuple[int, int]]:
    if isinstance(spatial_shapes, Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(h, w) for h, w in spatial_shapes]


def _level_view(value_l: Tensor, h, w) -> Tensor:
    """[B, h*w, M, D] -> [B*M, D, h, w]."""
    B, _, M, D = value_l.shape
    return value_l.permute(0, 2, 3, 1).reshape(B * M, D, h, w)


def ms_deform_attn_pytorch(
    value: Tensor,
    spatial_shapes: ShapesLike,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Reference multi-scale deformable attention with ``F.grid_sample`` (differentiable).

    Same math as Deformable DETR's ``ms_deform_attn_core_pytorch``. ``spatial_shapes`` may be
    a tensor ``[L, 2]`` or a list of ``(H, W)`` pairs (preferred under torch.compile/export).
    """
    B, S, M, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    shapes = _shapes_list(spatial_shapes)
    value_levels = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        v = _level_view(value_levels[lvl], h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [B*M, Q, P, 2]
        samples.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # [B*M, D, Q, P]
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Q, L * P)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # [B*M, D, Q]
    return out.view(B, M * D, Q).transpose(1, 2).contiguous()


def _pytorch_backward(
    grad_output: Tensor,
    value: Tensor,
    spatial_shapes: ShapesLike,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`ms_deform_attn_pytorch` without autograd (used inside the custom op
    when the compiled kernel is unavailable, where autograd recording is off)."""
    B, S, M, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    shapes = _shapes_list(spatial_shapes)
    value_levels = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Q, L, P)
    go = grad_output.reshape(B, Q, M, D).permute(0, 2, 3, 1).reshape(B * M, D, Q, 1)
    grad_values, grad_grids, grad_weights = [], [], []
    for lvl, (h, w) in enumerate(shapes):
        v = _level_view(value_levels[lvl], h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        grad_weights.append((sampled * go).sum(1))  # [B*M, Q, P]
        grad_sampled = (go * weights[:, :, :, lvl]).contiguous()  # [B*M, D, Q, P]
        gv, gg = torch.ops.aten.grid_sampler_2d_backward(
            grad_sampled, v, g, 0, 0, False, [True, True]
        )
        grad_values.append(gv.reshape(B, M, D, h * w).permute(0, 3, 1, 2))
        grad_grids.append(gg.reshape(B, M, Q, P, 2))
    grad_value = torch.cat(grad_values, dim=1).contiguous()
    grad_loc = (2 * torch.stack(grad_grids, dim=3)).transpose(1, 2).contiguous()
    grad_attn = torch.stack(grad_weights, dim=2).reshape(B, M, Q, L, P).transpose(1, 2).contiguous()
    return grad_value, grad_loc, grad_attn


# ----------------------------------------------------------------------------------------
# Custom op (compiled kernel, with the fallback inside for robustness)
# ----------------------------------------------------------------------------------------


@torch.library.custom_op("hf_seg::ms_deform_attn", mutates_args=())
def _ms_deform_attn_op(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    ops = _loader.get_ops(value.device.type)
    if ops is not None:
        return ops.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    # Reached when a traced/exported program runs where the kernel is unavailable.
    return ms_deform_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


@_ms_deform_attn_op.register_fake
def _ms_deform_attn_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    B, _, M, D = value.shape
    return value.new_empty((B, sampling_locations.shape[1], M * D))


@torch.library.custom_op("hf_seg::ms_deform_attn_backward", mutates_args=())
def _ms_deform_attn_backward_op(
    grad_output: Tensor,
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tuple[Tensor, Tensor, Tensor]:
    ops = _loader.get_ops(value.device.type)
    if ops is not None:
        gv, gl, ga = ops.backward(
            grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
        return gv, gl, ga
    return _pytorch_backward(grad_output, value, spatial_shapes, sampling_locations, attention_weights)


@_ms_deform_attn_backward_op.register_fake
def _ms_deform_attn_backward_fake(
    grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
):
    return (
        torch.empty_like(value, memory_format=torch.contiguous_format),
        torch.empty_like(sampling_locations, memory_format=torch.contiguous_format),
        torch.empty_like(attention_weights, memory_format=torch.contiguous_format),
    )


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_loc, grad_attn = _ms_deform_attn_backward_op(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
    return grad_value, None, None, grad_loc, grad_attn


_ms_deform_attn_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------
# Backend choice (evaluated once per trace under torch.compile)
# ----------------------------------------------------------------------------------------


@torch.compiler.assume_constant_result
def _compiled_ready_cpu() -> bool:
    return _loader.get_ops("cpu") is not None


@torch.compiler.assume_constant_result
def _compiled_ready_cuda() -> bool:
    return _loader.get_ops("cuda") is not None


def _compiled_ready(device_type: str) -> bool:
    if device_type == "cuda":
        return _compiled_ready_cuda()
    if device_type == "cpu":
        return _compiled_ready_cpu()
    return False


# ----------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------


def _fmt(shape) -> str:
    return str(tuple(shape))


def _validate(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    for name, t in (
        ("value", value),
        ("sampling_locations", sampling_locations),
        ("attention_weights", attention_weights),
    ):
        if not isinstance(t, Tensor):
            raise TypeError(f"ms_deform_attn: {name} must be a torch.Tensor, got {type(t).__name__}")
    if value.dim() != 4:
        raise ValueError(
            f"ms_deform_attn: value must be 4-D [batch, sum(H*W), heads, dim_per_head], got shape {_fmt(value.shape)}"
        )
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "ms_deform_attn: sampling_locations must be 6-D [batch, queries, heads, levels, points, 2], "
            f"got shape {_fmt(sampling_locations.shape)}"
        )
    if attention_weights.dim() != 5:
        raise ValueError(
            "ms_deform_attn: attention_weights must be 5-D [batch, queries, heads, levels, points], "
            f"got shape {_fmt(attention_weights.shape)}"
        )
    B, S, M, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    if sampling_locations.shape[0] != B or sampling_locations.shape[2] != M:
        raise ValueError(
            f"ms_deform_attn: sampling_locations {_fmt(sampling_locations.shape)} does not match value "
            f"{_fmt(value.shape)} in batch (dim 0) or heads (dim 2)"
        )
    if tuple(attention_weights.shape) != tuple(sampling_locations.shape[:5]):
        raise ValueError(
            f"ms_deform_attn: attention_weights {_fmt(attention_weights.shape)} must equal "
            f"sampling_locations.shape[:5] = {_fmt(sampling_locations.shape[:5])}"
        )
    if not value.is_floating_point():
        raise ValueError(f"ms_deform_attn: value must be a floating-point tensor, got {value.dtype}")
    if sampling_locations.dtype != value.dtype or attention_weights.dtype != value.dtype:
        raise ValueError(
            "ms_deform_attn: value, sampling_locations and attention_weights must have the same dtype, got "
            f"{value.dtype}, {sampling_locations.dtype}, {attention_weights.dtype}"
        )
    if sampling_locations.device != value.device or attention_weights.device != value.device:
        raise ValueError(
            "ms_deform_attn: value, sampling_locations and attention_weights must be on the same device, got "
            f"{value.device}, {sampling_locations.device}, {attention_weights.device}"
        )

    # Level table: shape / dtype checks always, value checks when the values are cheap to read.
    host_shapes: Optional[List[Tuple[int, int]]] = None
    if isinstance(spatial_shapes, Tensor):
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2 or spatial_shapes.shape[0] != L:
            raise ValueError(
                f"ms_deform_attn: spatial_shapes must be [levels={L}, 2], got shape {_fmt(spatial_shapes.shape)}"
            )
        if spatial_shapes.is_floating_point() or spatial_shapes.is_complex() or spatial_shapes.dtype == torch.bool:
            raise ValueError(f"ms_deform_attn: spatial_shapes must be an integer tensor (int64), got {spatial_shapes.dtype}")
        if spatial_shapes.device.type == "cpu" and not torch.compiler.is_compiling():
            host_shapes = _shapes_list(spatial_shapes)
    else:
        try:
            pairs = [tuple(p) for p in spatial_shapes]
        except TypeError:
            raise TypeError(
                "ms_deform_attn: spatial_shapes must be an int64 tensor [L, 2] or a list of (H, W) pairs"
            ) from None
        if len(pairs) != L or any(len(p) != 2 for p in pairs):
            raise ValueError(
                f"ms_deform_attn: spatial_shapes must hold {L} (H, W) pairs (levels of sampling_locations), got {pairs}"
            )
        if all(isinstance(x, int) for p in pairs for x in p):
            host_shapes = [(int(h), int(w)) for h, w in pairs]

    host_starts: Optional[List[int]] = None
    if level_start_index is not None:
        if isinstance(level_start_index, Tensor):
            if level_start_index.dim() != 1 or level_start_index.shape[0] != L:
                raise ValueError(
                    f"ms_deform_attn: level_start_index must be [levels={L}], got shape {_fmt(level_start_index.shape)}"
                )
            if level_start_index.is_floating_point() or level_start_index.dtype == torch.bool:
                raise ValueError(
                    f"ms_deform_attn: level_start_index must be an integer tensor (int64), got {level_start_index.dtype}"
                )
            if level_start_index.device.type == "cpu" and not torch.compiler.is_compiling():
                host_starts = [int(x) for x in level_start_index.tolist()]
        else:
            starts = list(level_start_index)
            if len(starts) != L:
                raise ValueError(f"ms_deform_attn: level_start_index must hold {L} entries, got {len(starts)}")
            if all(isinstance(x, int) for x in starts):
                host_starts = [int(x) for x in starts]

    if host_shapes is not None:
        if any(h <= 0 or w <= 0 for h, w in host_shapes):
            raise ValueError(f"ms_deform_attn: spatial_shapes must be positive, got {host_shapes}")
        total = sum(h * w for h, w in host_shapes)
        if isinstance(S, int) and total != S:
            raise ValueError(
                f"ms_deform_attn: sum of H*W over spatial_shapes {host_shapes} is {total}, "
                f"but value has {S} rows (value.shape[1])"
            )
        if host_starts is not None:
            expected, acc = [], 0
            for h, w in host_shapes:
                expected.append(acc)
                acc += h * w
            if host_starts != expected:
                raise ValueError(
                    f"ms_deform_attn: level_start_index {host_starts} does not match spatial_shapes "
                    f"{host_shapes} (expected {expected})"
                )


def _level_tensors(value: Tensor, spatial_shapes: ShapesLike, level_start_index) -> Tuple[Tensor, Tensor]:
    """int64 tensors on value's device for the compiled op."""
    if isinstance(spatial_shapes, Tensor):
        shapes_t = spatial_shapes.to(device=value.device, dtype=torch.long)
    else:
        shapes_t = torch.tensor([[h, w] for h, w in spatial_shapes], dtype=torch.long, device=value.device)
    if level_start_index is None:
        areas = shapes_t.prod(1)
        starts_t = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    elif isinstance(level_start_index, Tensor):
        starts_t = level_start_index.to(device=value.device, dtype=torch.long)
    else:
        starts_t = torch.tensor(list(level_start_index), dtype=torch.long, device=value.device)
    return shapes_t.contiguous(), starts_t.contiguous()


# ----------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: ShapesLike,
    level_start_index: Optional[Union[Tensor, Sequence[int]]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str = "auto",
) -> Tensor:
    """Multi-scale deformable attention; returns ``[B, Q, heads * dim_per_head]``.

    See the module docstring for layouts, semantics and the backends
    (``"auto"``, ``"compiled"``, ``"pytorch"``). Raises ``ValueError`` for inconsistent
    shapes, ranks or dtypes, and :class:`KernelUnavailableError` for ``backend="compiled"``
    when the compiled kernel cannot be used.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"ms_deform_attn: backend must be one of {_BACKENDS}, got {backend!r}")
    _validate(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    device_type = value.device.type
    if backend == "pytorch":
        return ms_deform_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)
    use_compiled = _compiled_ready(device_type)
    if backend == "compiled" and not use_compiled:
        raise KernelUnavailableError(
            f"ms_deform_attn(backend='compiled'): no compiled kernel for {device_type} tensors: "
            f"{_loader.unavailable_reason(device_type)}"
        )
    if not use_compiled:
        return ms_deform_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)
    shapes_t, starts_t = _level_tensors(value, spatial_shapes, level_start_index)
    return _ms_deform_attn_op(value, shapes_t, starts_t, sampling_locations, attention_weights)
