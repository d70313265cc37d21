"""Compiled kernels with pure-PyTorch fallbacks.

* :func:`ms_deform_attn`: multi-scale deformable attention (Deformable DETR's op), also
  registered as the custom op ``torch.ops.hf_seg.ms_deform_attn``.
* :func:`ms_deform_attn_pytorch`: the pure-PyTorch reference (grid_sample formulation).
* :func:`build`: compile the C++/CUDA extension ahead of time (``hf-seg kernels build``).

Nothing is compiled at import time. The extension is built on first use into
``~/.cache/hf_seg/kernels`` (override with ``HF_SEG_KERNEL_CACHE``). If the build fails, one
:class:`KernelFallbackWarning` is emitted and the pure-PyTorch path is used;
``HF_SEG_DISABLE_KERNELS=1`` forces that path. This package imports nothing else from
``hf_seg``.
"""

from ._loader import (
    ENV_CACHE,
    ENV_DISABLE,
    KernelFallbackWarning,
    KernelUnavailableError,
    build,
    cache_dir,
    is_available,
    kernels_disabled,
)
from .msda import ms_deform_attn, ms_deform_attn_pytorch

__all__ = [
    "ENV_CACHE",
    "ENV_DISABLE",
    "KernelFallbackWarning",
    "KernelUnavailableError",
    "build",
    "cache_dir",
    "is_available",
    "kernels_disabled",
    "ms_deform_attn",
    "ms_deform_attn_pytorch",
]
