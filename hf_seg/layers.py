"""Building blocks several families share."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU as a Sequential, so checkpoint keys read ``.0.weight``/``.1.running_mean``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def resize(x: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize that is a no-op when the size already matches (saves a copy on the hot path)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


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
        self.projections = nn.ModuleList(conv_bn_relu(in_channels, channels, 1) for _ in self.pool_scales)

    @property
    def out_channels_extra(self) -> int:
        return len(self.pool_scales) * self.projections[0][0].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for pool, project in zip(self.pools, self.projections):
            if self.project_after_resize:
                outs.append(project(resize(pool(x), size)))
            else:
                outs.append(resize(project(pool(x)), size))
        return torch.cat(outs, dim=1)
