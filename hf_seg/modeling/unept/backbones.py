"""UN-EPT's backbones: mmseg's ResNetV1c on timm's ResNet, and a distilled DeiT of timm ``Block``s.

Both return ``(feature maps, hidden states)``: the maps the pyramid convs read and the embedding (stem) output
followed by every stage's (block's) output.
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.resnet import BasicBlock, Bottleneck, downsample_conv
from timm.models.vision_transformer import Block
from torch import nn

from ...modeling_utils import checkpointed, enable_checkpointing
from .configuration_unept import RESNET_DEPTHS, UnEptConfig

TIMM_OUTPUT_STRIDES = (8, 16, 32)


def timm_geometry(output_stride: int) -> tuple[list[int], list[int]]:
    """Stage strides and dilations timm's ResNet uses for ``output_stride`` (stride 4 after the stem; once the
    stride is reached, a stage's stride becomes dilation)."""
    strides, dilations, net_stride, dilation = [], [], 4, 1
    for stage in range(4):
        stride = 1 if stage == 0 else 2
        if net_stride >= output_stride:
            dilation, stride = dilation * stride, 1
        else:
            net_stride *= stride
        strides.append(stride)
        dilations.append(dilation)
    return strides, dilations


def timm_output_stride(config: UnEptConfig) -> int | None:
    """The ``output_stride`` with which ``timm.create_model`` builds exactly this ResNetV1c, or None.

    timm matches mmseg for Bottleneck ResNets in pytorch style (stride on the 3x3 conv) whose dilated stages start
    with half the dilation (mmseg's ``contract_dilation``; timm gives the first block the previous stage's
    dilation). It does not for BasicBlocks (timm dilates both convs, mmseg only the first), for caffe style (stride
    on the first 1x1 conv) or for full dilation in the first block (``contract_dilation=False``).
    """
    if config.resnet_depth in (18, 34) or config.resnet_style != "pytorch":
        return None
    for output_stride in TIMM_OUTPUT_STRIDES:
        strides, dilations = timm_geometry(output_stride)
        if (strides, dilations) == (config.strides, config.dilations) and (
                config.contract_dilation or max(dilations) == 1):
            return output_stride
    return None


class ResNetV1cBackbone(nn.Module):
    """mmseg ``ResNetV1c`` on timm's ResNet: deep stem (stem/2, stem/2, stem), base width ``base_channels``.

    The released geometry (Bottleneck, strides 1-2-1-1, dilations 1-1-2-4, contracted dilation, pytorch style) is
    timm's ``output_stride=8`` and is built by ``timm.create_model`` alone. Other geometries timm cannot express
    (see :func:`timm_output_stride`) get stages built here from timm's own block classes with mmseg's placement:
    stride on the first block's 3x3 conv (``pytorch``) or 1x1 conv (``caffe``: timm's Bottleneck has no option for
    it, so the two convs' strides are swapped after construction), dilation ``d`` on the 3x3 convs with ``d // 2``
    in the first block of a dilated stage when ``contract_dilation``, BasicBlocks dilating only their first conv,
    and a 1x1 projection shortcut on the first block when stride or width change. The parameter names are the
    same either way.
    """

    def __init__(self, config: UnEptConfig):
        super().__init__()
        depth = config.resnet_depth
        block = BasicBlock if depth in (18, 34) else Bottleneck
        base, eps = config.base_channels, config.norm_eps
        output_stride = timm_output_stride(config)
        self.body = timm.create_model(
            f"resnet{depth}", pretrained=False, num_classes=0, global_pool="", stem_type="deep",
            stem_width=config.stem_channels // 2, channels=tuple(base * 2**i for i in range(4)),
            norm_layer=partial(nn.BatchNorm2d, eps=eps), output_stride=output_stride or 32,
        )
        if output_stride is None:
            inplanes = config.stem_channels
            for stage, (stride, dilation) in enumerate(zip(config.strides, config.dilations)):
                planes = base * 2**stage
                setattr(self.body, f"layer{stage + 1}", _mmseg_stage(
                    block, inplanes, planes, RESNET_DEPTHS[depth][stage], stride, dilation, config.contract_dilation,
                    config.resnet_style, eps))
                inplanes = planes * block.expansion
        self.out_indices = list(config.resnet_out_indices)
        enable_checkpointing(self)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        body = self.body
        stem = body.act1(body.bn1(body.conv1(x)))
        x = body.maxpool(stem)
        stages = []
        for stage in range(4):
            x = checkpointed(self, getattr(body, f"layer{stage + 1}"), x)
            stages.append(x)
        return [stages[i] for i in self.out_indices], (stem, *stages)


def _mmseg_stage(block, inplanes, planes, num_blocks, stride, dilation, contract_dilation, style, eps):
    norm = partial(nn.BatchNorm2d, eps=eps)
    outplanes = planes * block.expansion
    first_dilation = dilation // 2 if dilation > 1 and contract_dilation else dilation
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = downsample_conv(inplanes, outplanes, 1, stride=stride, norm_layer=norm)
    units = []
    for index in range(num_blocks):
        unit_dilation = first_dilation if index == 0 else dilation
        if block is Bottleneck:  # the 3x3 conv takes ``first_dilation``
            unit = Bottleneck(inplanes if index == 0 else outplanes, planes, stride if index == 0 else 1,
                              downsample if index == 0 else None, dilation=unit_dilation,
                              first_dilation=unit_dilation, norm_layer=norm)
            if style == "caffe" and index == 0 and stride != 1:
                unit.conv1.stride, unit.conv2.stride = (stride, stride), (1, 1)
        else:  # mmseg's BasicBlock dilates its first conv only
            unit = BasicBlock(inplanes if index == 0 else outplanes, planes, stride if index == 0 else 1,
                              downsample if index == 0 else None, dilation=1, first_dilation=unit_dilation,
                              norm_layer=norm)
        units.append(unit)
    return nn.Sequential(*units)


class DeiTBackbone(nn.Module):
    """Distilled DeiT (cls + distillation tokens) whose tokens after every ``deit_feature_interval``-th block are the
    feature maps (the two extra tokens dropped, no final norm). Inputs of another size than ``deit_img_size`` use the
    position embedding resized bicubically (the original accepts only ``deit_img_size``)."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        dim, patch = config.deit_embed_dim, config.deit_patch_size
        self.patch_size = patch
        self.grid = config.deit_img_size // patch
        self.interval = config.deit_feature_interval
        self.num_levels = config.num_feature_levels
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 2, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.deit_num_heads, mlp_ratio=config.deit_mlp_ratio, qkv_bias=True,
                  norm_layer=partial(nn.LayerNorm, eps=config.deit_layer_norm_eps))
            for _ in range(config.deit_depth)
        )
        for block in self.blocks:
            block.attn.fused_attn = True  # F.scaled_dot_product_attention whatever TIMM_FUSED_ATTN says ("sdpa")
        enable_checkpointing(self)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        x = self.patch_embed.proj(x)
        batch, dim, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos_embed = self.pos_embed
        if (h, w) != (self.grid, self.grid):
            pos_embed = resample_abs_pos_embed(pos_embed, [h, w], old_size=[self.grid, self.grid],
                                               num_prefix_tokens=2, interpolation="bicubic", antialias=False)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), self.dist_token.expand(batch, -1, -1), x], dim=1)
        x = x + pos_embed
        hidden_states, feats = [x], []
        for index, blk in enumerate(self.blocks, start=1):
            x = checkpointed(self, blk, x)
            hidden_states.append(x)
            if index % self.interval == 0 and len(feats) < self.num_levels:
                feats.append(x[:, 2:].transpose(1, 2).reshape(batch, dim, h, w))
        return feats, tuple(hidden_states)
