"""Building blocks several families share: conv-norm-act, resize, attention with recordable probabilities, PPM."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {
    "relu": partial(nn.ReLU, inplace=True),
    "relu6": partial(nn.ReLU6, inplace=True),
    "gelu": nn.GELU,
    "silu": partial(nn.SiLU, inplace=True),
    "leaky_relu": partial(nn.LeakyReLU, negative_slope=0.01, inplace=True),
}


class ConvNormAct(nn.Sequential):
    """Conv2d + BatchNorm2d (+ activation): mmcv's ``ConvModule`` with its ``conv`` / ``bn`` child names, so
    checkpoints of the mmcv-based originals convert by name (the activation has no parameters).

    ``padding`` keeps the size for odd kernels (``dilation * (kernel_size // 2)``); ``act=None`` ends with the norm.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = False, act: str | None = "relu", eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=dilation * (kernel_size // 2),
                              dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        if act is not None:
            self.act = ACTIVATIONS[act]()


def resize(x: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize that is a no-op when the size already matches (saves a copy on the hot path)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class AttentionProbs(nn.Identity):
    """Marks where attention probabilities pass, so ``output_attentions`` can record them with a forward hook."""


class Attend(nn.Module):
    """``softmax(q kᵀ · scale + bias) v`` on [..., N, d] tensors, with timm's switch between implementations.

    ``fused_attn=True`` runs ``F.scaled_dot_product_attention``; ``False`` computes the probabilities explicitly and
    passes them through ``attn_drop`` (the module timm's ``Attention`` / ``WindowAttention`` also have), which is
    where ``output_attentions`` records them. ``scale=None`` is ``d ** -0.5``.
    """

    def __init__(self, dropout: float = 0.0, scale: float | None = None):
        super().__init__()
        self.fused_attn = True
        self.scale = scale
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None):
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale,
                                                  dropout_p=self.attn_drop.p if self.training else 0.0)
        scale = q.shape[-1] ** -0.5 if self.scale is None else self.scale
        scores = (q * scale) @ k.transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
        return self.attn_drop(scores.softmax(dim=-1)) @ v


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling: the input plus pooled-and-projected maps at several grid sizes, concatenated.

    ``project_after_resize`` reproduces a quirk of some decoders (CSAIL's UPerNet) that resize the pooled map back
    to full size *before* the 1x1 projection; PPM projects first. The two are not the same math because BatchNorm
    statistics then cover the resized map.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales=(1, 2, 3, 6), project_after_resize=False):
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.project_after_resize = project_after_resize
        self.pools = nn.ModuleList(nn.AdaptiveAvgPool2d(s) for s in self.pool_scales)
        self.projections = nn.ModuleList(ConvNormAct(in_channels, channels, 1) for _ in self.pool_scales)

    @property
    def out_channels_extra(self) -> int:
        return len(self.pool_scales) * self.projections[0].conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for pool, project in zip(self.pools, self.projections):
            if self.project_after_resize:
                outs.append(project(resize(pool(x), size)))
            else:
                outs.append(resize(project(pool(x)), size))
        return torch.cat(outs, dim=1)
