"""UN-EPT (Zhu et al., "A Unified Efficient Pyramid Transformer for Semantic Segmentation") as a transformers model.

Structure (names follow the original where they are clear):

* backbone: mmseg's ResNetV1c, built from timm's ResNet (deep stem, same blocks) with each stage's stride and
  dilation set the way mmseg sets them (``contract_dilation``, pytorch/caffe stride placement), or a distilled DeiT
  made of timm ``Block``s whose tokens after every fourth block are the feature maps;
* ``pyramid_convs``: 1x1 projections of the used backbone maps to ``hidden_size``;
* ``context_branch``: a deformable transformer (Deformable-DETR's multi-scale deformable attention, sparse
  sampling of ``num_points`` points per head and level): the encoder refines the projected maps (sine positional
  encoding + level embedding), the decoder's queries are the spatial-branch output plus a learned embedding;
* ``spatial_branch``: three stride-2 3x3 convs to stride 8; ``boundary_head`` / ``direction_head``: the boundary
  (2 classes) and direction (8 bins) predictions the dt_offset losses supervise; ``classifier``: 1x1 conv.

Multi-scale deformable attention goes through :func:`hf_seg.kernels.ms_deform_attn` (``config.msda_backend``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...kernels import ms_deform_attn
from ...layers import resize
from ...losses import check_labels, cross_entropy
from .configuration_unept import NUM_DIRECTIONS, RESNET_DEPTHS, UnEptConfig

# (row, column) step of each of the 8 direction bins (bin 0 = pointing left, then clockwise)
DIRECTION_STEPS = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))


@dataclass
class UnEptSemanticSegmenterOutput(SemanticSegmenterOutput):
    """``logits`` [B, C, H/8, W/8] plus the boundary heads' outputs at the same stride.

    mask_logits: [B, 2, H/8, W/8] boundary / non-boundary scores (class 1 = boundary).
    direction_logits: [B, 8, H/8, W/8] scores of the 8 direction bins (see ``DIRECTION_STEPS``).
    refined_logits: [B, C, H, W] logits resized to the input and shifted along the predicted directions on the
        predicted boundary (only with ``config.refine_inference``).
    """

    mask_logits: torch.FloatTensor | None = None
    direction_logits: torch.FloatTensor | None = None
    refined_logits: torch.FloatTensor | None = None


# --------------------------------------------------------------------------------------------------- backbones
class ResNetV1cBackbone(nn.Module):
    """mmseg ``ResNetV1c`` on timm's ResNet: deep stem (stem/2, stem/2, stem), base width ``base_channels``.

    timm builds the blocks with stride 2 in stages 2-4; the stride and dilation of each stage are then set as mmseg
    does: the stride on the first block's 3x3 conv (``pytorch`` style) or 1x1 conv (``caffe``), dilation ``d`` on
    the 3x3 convs (the first block of a dilated stage uses ``d // 2`` with ``contract_dilation``), and a 1x1
    projection shortcut on the first block when stride or width change. BasicBlocks dilate only their first conv.
    """

    def __init__(self, config: UnEptConfig):
        super().__init__()
        depth = config.resnet_depth
        block = BasicBlock if depth in (18, 34) else Bottleneck
        base = config.base_channels
        self.body = timm.models.resnet.ResNet(
            block, RESNET_DEPTHS[depth], num_classes=0, global_pool="", stem_type="deep",
            stem_width=config.stem_channels // 2, channels=tuple(base * 2**i for i in range(4)),
            norm_layer=partial(nn.BatchNorm2d, eps=config.norm_eps),
        )
        del self.body.fc
        self.out_indices = list(config.resnet_out_indices)
        inplanes = config.stem_channels
        for stage, (stride, dilation) in enumerate(zip(config.strides, config.dilations)):
            layer = getattr(self.body, f"layer{stage + 1}")
            outplanes = base * 2**stage * block.expansion
            for index, unit in enumerate(layer):
                unit_stride = stride if index == 0 else 1
                unit_dilation = dilation
                if index == 0 and dilation > 1 and config.contract_dilation:
                    unit_dilation = dilation // 2
                self._set_geometry(unit, block, unit_stride, unit_dilation, config.resnet_style, config.norm_eps,
                                   inplanes if index == 0 else outplanes, outplanes)
            inplanes = outplanes

    @staticmethod
    def _set_geometry(unit, block, stride, dilation, style, eps, inplanes, outplanes):
        if block is Bottleneck:
            unit.conv1.stride = (stride, stride) if style == "caffe" else (1, 1)
            unit.conv2.stride = (1, 1) if style == "caffe" else (stride, stride)
            unit.conv2.dilation = unit.conv2.padding = (dilation, dilation)
        else:
            unit.conv1.stride = (stride, stride)
            unit.conv1.dilation = unit.conv1.padding = (dilation, dilation)
            unit.conv2.dilation = unit.conv2.padding = (1, 1)
        needs_projection = stride != 1 or inplanes != outplanes
        if needs_projection and unit.downsample is None:
            unit.downsample = nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, bias=False),
                                            nn.BatchNorm2d(outplanes, eps=eps))
        elif not needs_projection:
            unit.downsample = None
        if unit.downsample is not None:
            conv = unit.downsample[0]
            conv.stride, conv.padding, conv.dilation = (stride, stride), (0, 0), (1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        body = self.body
        x = body.maxpool(body.act1(body.bn1(body.conv1(x))))
        outs = []
        for stage in range(4):
            x = getattr(body, f"layer{stage + 1}")(x)
            if stage in self.out_indices:
                outs.append(x)
        return outs


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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed.proj(x)
        batch, dim, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos_embed = self.pos_embed
        if (h, w) != (self.grid, self.grid):
            pos_embed = resample_abs_pos_embed(pos_embed, [h, w], old_size=[self.grid, self.grid],
                                               num_prefix_tokens=2, interpolation="bicubic", antialias=False)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), self.dist_token.expand(batch, -1, -1), x], dim=1)
        x = x + pos_embed
        feats = []
        for index, blk in enumerate(self.blocks, start=1):
            x = blk(x)
            if index % self.interval == 0 and len(feats) < self.num_levels:
                feats.append(x[:, 2:].transpose(1, 2).reshape(batch, dim, h, w))
        return feats


# ----------------------------------------------------------------------------------------- context branch
def sine_position_embedding(height: int, width: int, num_feats: int, device, temperature: float = 10000.0):
    """DETR's normalised sine encoding of a ``height`` x ``width`` map: [1, H*W, 2*num_feats], y features first."""
    ones = torch.ones(1, height, width, device=device)
    y_embed = ones.cumsum(1)
    x_embed = ones.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).flatten(1, 2)


def grid_reference_points(height: int, width: int, device) -> torch.Tensor:
    """Pixel centres of a ``height`` x ``width`` grid as normalised (x, y): [1, H*W, 2]."""
    ref_y, ref_x = torch.meshgrid(
        torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device),
        torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack((ref_x.reshape(-1)[None] / width, ref_y.reshape(-1)[None] / height), -1)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable-DETR's attention: each query samples ``num_points`` points per head and level around its 2-d
    reference point (offsets in units of each level's size) and mixes them with softmax weights."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        dim, heads = config.hidden_size, config.num_attention_heads
        self.heads, self.levels, self.points = heads, config.num_feature_levels, config.num_points
        self.head_dim = dim // heads
        self.backend = config.msda_backend
        self.sampling_offsets = nn.Linear(dim, heads * self.levels * self.points * 2)
        self.attention_weights = nn.Linear(dim, heads * self.levels * self.points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def reset_parameters(self):
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.heads, 1, 1, 2)
        grid = grid.repeat(1, self.levels, self.points, 1) * torch.arange(1, self.points + 1).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query, reference_points, value_input, spatial_shapes, level_start_index):
        batch, num_queries, _ = query.shape
        value = self.value_proj(value_input).view(batch, value_input.shape[1], self.heads, self.head_dim)
        offsets = self.sampling_offsets(query).view(batch, num_queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(batch, num_queries, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(batch, num_queries, self.heads, self.levels, self.points)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, backend=self.backend)
        return self.output_proj(out)


def _activation(name: str):
    return F.relu if name == "relu" else F.gelu


class EncoderLayer(nn.Module):
    """Post-norm: deformable self-attention over all levels, then the FFN."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        dim = config.hidden_size
        self.self_attn = MultiScaleDeformableAttention(config)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.activation = _activation(config.activation)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        src = self.norm1(src + self.dropout(self.self_attn(src + pos, reference_points, src, spatial_shapes,
                                                           level_start_index)))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout(ffn))


class DecoderSelfAttention(nn.Module):
    """The decoder's ``nn.MultiheadAttention`` (same parameter names) with the batch handling of
    ``config.decoder_self_attention``; inputs are batch-first [B, N, C]."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        dim = config.hidden_size
        self.heads = config.num_attention_heads
        self.mode = config.decoder_self_attention
        self.dropout = config.dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        if self.mode == "per_image":
            # attention of every pixel over itself alone (a one-element softmax is 1): out_proj(v_proj(x))
            value = F.linear(x, self.in_proj_weight[2 * dim:], self.in_proj_bias[2 * dim:])
            return self.out_proj(value)
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        batch, length = x.shape[:2]

        def heads(t):  # "spatial": [B, heads, N, d]; "batch_axis": the batch is the sequence, [N, heads, B, d]
            t = t.reshape(batch, length, self.heads, dim // self.heads)
            return t.permute(0, 2, 1, 3) if self.mode == "spatial" else t.permute(1, 2, 0, 3)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v),
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.permute(0, 2, 1, 3) if self.mode == "spatial" else out.permute(2, 0, 1, 3)
        return self.out_proj(out.reshape(batch, length, dim))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention, deformable cross-attention into the encoder memory, FFN (no query position)."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        dim = config.hidden_size
        self.cross_attn = MultiScaleDeformableAttention(config)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = DecoderSelfAttention(config)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.activation = _activation(config.activation)

    def forward(self, tgt, reference_points, memory, spatial_shapes, level_start_index):
        tgt = self.norm2(tgt + self.dropout(self.self_attn(tgt)))
        tgt = self.norm1(tgt + self.dropout(self.cross_attn(tgt, reference_points, memory, spatial_shapes,
                                                            level_start_index)))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout(ffn))


class Encoder(nn.Module):
    def __init__(self, config: UnEptConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))


class Decoder(nn.Module):
    def __init__(self, config: UnEptConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))


class ContextBranch(nn.Module):
    """Deformable encoder over the projected backbone maps and deformable decoder for the stride-8 queries."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.level_embed = nn.Parameter(torch.zeros(config.num_feature_levels, config.hidden_size))
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, feats: list[torch.Tensor]):
        spatial_shapes = [tuple(f.shape[-2:]) for f in feats]
        starts, total = [], 0
        for h, w in spatial_shapes:
            starts.append(total)
            total += h * w
        src = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        pos = torch.cat([sine_position_embedding(h, w, self.hidden_size // 2, src.device).to(src.dtype)
                         + self.level_embed[level].view(1, 1, -1)
                         for level, (h, w) in enumerate(spatial_shapes)], 1)
        reference_points = torch.cat([grid_reference_points(h, w, src.device) for h, w in spatial_shapes], 1)
        reference_points = reference_points[:, :, None].expand(-1, -1, len(spatial_shapes), -1).to(src.dtype)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, pos, reference_points, spatial_shapes, starts)
        return memory, spatial_shapes, starts

    def decode(self, queries, reference_points, memory, spatial_shapes, starts):
        reference_points = reference_points[:, :, None].expand(-1, -1, len(spatial_shapes), -1)
        out = queries
        for layer in self.decoder.layers:
            out = layer(out, reference_points, memory, spatial_shapes, starts)
        return out


class ConvNormBlock(nn.Module):
    """3x3 stride-2 conv (no bias) + BatchNorm (+ ReLU)."""

    def __init__(self, in_channels, out_channels, relu: bool, eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=eps)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class SpatialBranch(nn.Module):
    """Three stride-2 conv blocks (3 -> 64 -> 128 -> hidden_size, no ReLU after the last): output stride 8."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        widths = [3, *config.spatial_channels, config.hidden_size]
        self.blocks = nn.ModuleList(ConvNormBlock(widths[i], widths[i + 1], relu=i < len(widths) - 2)
                                    for i in range(len(widths) - 1))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def _boundary_head(dim: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(),
                         nn.Conv2d(dim, out_channels, 1, bias=False))


# ------------------------------------------------------------------------------------------- boundary refinement
def direction_offsets(mask_logits: torch.Tensor, direction_logits: torch.Tensor) -> torch.Tensor:
    """Integer (row, column) offsets [B, 2, H, W]: the step of the arg-max direction bin where the raw boundary
    logit (channel 1) is above 0.5 — the original thresholds the logit here, not the probability — else 0."""
    edge = mask_logits[:, 1] > 0.5
    steps = torch.tensor(DIRECTION_STEPS, dtype=torch.long, device=mask_logits.device)
    offsets = steps[direction_logits.argmax(dim=1)] * edge[..., None]
    return offsets.permute(0, 3, 1, 2)


def shift_logits(logits: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sample ``logits`` at pixel + offset (bilinear, border padding, align_corners=True, as the original)."""
    _, _, h, w = logits.shape
    coord_h, coord_w = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=logits.device),
                                      torch.arange(w, dtype=torch.float32, device=logits.device), indexing="ij")
    norm = torch.tensor([max(w - 1, 1) / 2, max(h - 1, 1) / 2], dtype=torch.float32, device=logits.device)
    grid = torch.stack([offsets[:, 1] + coord_w, offsets[:, 0] + coord_h], dim=-1) / norm - 1
    return F.grid_sample(logits.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def direction_bins(angle_map: torch.Tensor, num_bins: int = NUM_DIRECTIONS) -> torch.Tensor:
    """Bin of each angle (degrees in [-180, 180]); bin 0 covers angles <= -180 + step/2 or > 180 - step/2."""
    step = 360 / num_bins
    bins = torch.zeros_like(angle_map, dtype=torch.long)
    for i in range(1, num_bins):
        middle = -180 + step * i
        bins = torch.where((angle_map > middle - step / 2) & (angle_map <= middle + step / 2), i, bins)
    return bins


def inverse_frequency_weights(labels: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``1 - count_c / total`` over the valid pixels (the original's ``calc_weights``)."""
    counts = torch.stack([((labels == c) & valid).sum() for c in range(num_classes)]).float()
    return 1 - counts / counts.sum().clamp(min=1)


def weighted_cross_entropy(logits, labels, weight, ignore_index=-1):
    """torch's weighted mean cross entropy (sum w_y * nll / sum w_y), but 0 instead of NaN when no weight is left."""
    per_pixel = F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = labels != ignore_index
    denominator = torch.where(valid, weight[labels.clamp(min=0)], torch.zeros((), device=logits.device)).sum()
    return torch.where(denominator > 0, per_pixel.sum() / denominator.clamp(min=1e-12), per_pixel.sum() * 0)


# ------------------------------------------------------------------------------------------------------ model
class UnEptPreTrainedModel(PreTrainedModel):
    config_class = UnEptConfig
    base_model_prefix = "unept"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # forward takes **kwargs but averages its loss itself: without this, transformers' Trainer would treat it as
    # a token-count-normalised loss and scale the loss (and gradients) by the number of processes
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, MultiScaleDeformableAttention):
            module.reset_parameters()
        elif isinstance(module, DecoderSelfAttention):
            nn.init.xavier_uniform_(module.in_proj_weight)
            nn.init.zeros_(module.in_proj_bias)
            nn.init.zeros_(module.out_proj.bias)
        elif isinstance(module, ContextBranch):
            nn.init.normal_(module.level_embed)
        elif isinstance(module, DeiTBackbone):
            nn.init.trunc_normal_(module.pos_embed, std=0.02)
            nn.init.trunc_normal_(module.cls_token, std=0.02)
            nn.init.trunc_normal_(module.dist_token, std=0.02)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1)


class UnEptForSemanticSegmentation(UnEptPreTrainedModel):
    """UN-EPT. ``logits`` are the classifier's scores at stride 8 (before the final bilinear resize).

    ``forward`` takes the dt_offset targets of the boundary losses as ``distance_map`` and ``angle_map`` ([B, H, W]
    or [B, 1, H, W] int64, as UN-EPT's data loader makes them; :mod:`hf_seg.modeling.unept.dt_offset` derives them
    from a label map). When ``labels`` come without them they are derived from ``labels`` on the fly (CPU, scipy).
    """

    def __init__(self, config: UnEptConfig):
        super().__init__(config)
        self.backbone = DeiTBackbone(config) if config.backbone == "deit" else ResNetV1cBackbone(config)
        self.pyramid_convs = nn.ModuleList(nn.Conv2d(c, config.hidden_size, 1) for c in config.backbone_channels)
        self.context_branch = ContextBranch(config)
        self.query_embed = nn.Embedding(config.num_queries, config.hidden_size)
        self.spatial_branch = SpatialBranch(config)
        self.boundary_head = _boundary_head(config.hidden_size, 2)
        self.direction_head = _boundary_head(config.hidden_size, NUM_DIRECTIONS)
        self.classifier = nn.Conv2d(config.hidden_size, config.num_labels, 1)
        self.post_init()

    # --------------------------------------------------------------------------------------- decoder geometry
    def decoder_queries_and_reference_points(self, context: torch.Tensor):
        """Decoder input (spatial context + query embedding) [B, h*w, C] and reference points [1, h*w, 2]."""
        batch, dim, h, w = context.shape
        queries = context.flatten(2).transpose(1, 2)
        embed = self.query_embed.weight
        if self.config.decoder_layout == "original":
            if h * w != self.config.num_queries:
                raise ValueError(
                    f"decoder_layout='original' needs (H/8)*(W/8) == num_queries={self.config.num_queries}, got "
                    f"{h}x{w}; use decoder_layout='resize' or slide inference with the training crop")
            side = math.isqrt(self.config.num_queries)
            return queries + embed[None], grid_reference_points(side, side, context.device).to(context.dtype)
        qh, qw = self.config.query_layout
        if (qh, qw) != (h, w):
            grid = embed.transpose(0, 1).reshape(1, dim, qh, qw)
            embed = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False).flatten(2)[0].T
        return queries + embed[None], grid_reference_points(h, w, context.device).to(context.dtype)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        distance_map: torch.Tensor | None = None,
        angle_map: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> UnEptSemanticSegmenterOutput | tuple:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        features = self.backbone(pixel_values)
        if self.config.backbone == "resnet_v1c":
            features = features[1:]
        context = self.spatial_branch(pixel_values)
        mask_logits = self.boundary_head(context)
        direction_logits = self.direction_head(context)

        pyramid = [conv(f) for conv, f in zip(self.pyramid_convs, features)]
        memory, spatial_shapes, starts = self.context_branch.encode(pyramid)
        queries, reference_points = self.decoder_queries_and_reference_points(context)
        decoded = self.context_branch.decode(queries, reference_points, memory, spatial_shapes, starts)
        batch, dim, h, w = context.shape
        decoded = decoded.transpose(1, 2).reshape(batch, dim, h, w)
        logits = self.classifier(decoded)

        loss = None
        if labels is not None:
            loss = self.compute_losses(logits, mask_logits, direction_logits, labels, distance_map, angle_map)["loss"]

        refined = None
        if self.config.refine_inference:
            refined = self.refine(logits, mask_logits, direction_logits, pixel_values.shape[-2:])

        hidden_states = tuple(features) + (context, memory, decoded) if output_hidden_states else None
        if not return_dict:
            output = (logits,) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return UnEptSemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states,
                                            mask_logits=mask_logits, direction_logits=direction_logits,
                                            refined_logits=refined)

    # ------------------------------------------------------------------------------------------- refinement
    @staticmethod
    def refine(logits, mask_logits, direction_logits, size) -> torch.Tensor:
        """Input-resolution logits shifted one pixel along the predicted direction on the predicted boundary."""
        seg = resize(logits, size)
        mask = F.interpolate(mask_logits, size=tuple(size), mode="bilinear", align_corners=True)
        direction = F.interpolate(direction_logits, size=tuple(size), mode="bilinear", align_corners=True)
        return shift_logits(seg, direction_offsets(mask, direction))

    # ------------------------------------------------------------------------------------------------- loss
    def compute_losses(self, logits, mask_logits, direction_logits, labels, distance_map=None, angle_map=None):
        """The original's ``loss_seg`` and its terms; returns a dict (``loss`` and the intermediates)."""
        config = self.config
        ignore = config.semantic_loss_ignore_index
        check_labels(labels, config.num_labels, ignore)
        if distance_map is None or angle_map is None:
            from .dt_offset import dt_offset_targets

            distance_map, angle_map = dt_offset_targets(labels, ignore_index=ignore)
        distance_map = distance_map.reshape(labels.shape)
        angle_map = angle_map.reshape(labels.shape)
        size = labels.shape[-2:]

        seg_logits = resize(logits, size)
        gt_mask = ((distance_map <= config.boundary_distance) & (distance_map >= 0)).long()
        all_pixels = torch.ones_like(labels, dtype=torch.bool)
        mask_weights = inverse_frequency_weights(gt_mask, all_pixels, 2)
        mask_up = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=True)
        direction_up = F.interpolate(direction_logits, size=size, mode="bilinear", align_corners=True)
        mask_loss = weighted_cross_entropy(mask_up, gt_mask, mask_weights)

        predicted_edge = mask_up.softmax(dim=1)[:, 1] > 0.5
        gt_direction = torch.where(predicted_edge, direction_bins(angle_map), -1)
        direction_weights = inverse_frequency_weights(gt_direction, gt_direction != -1, NUM_DIRECTIONS)
        direction_loss = weighted_cross_entropy(direction_up, gt_direction, direction_weights)

        offsets = direction_offsets(mask_up, direction_up)
        refined = shift_logits(seg_logits, offsets)
        seg_ce = cross_entropy(seg_logits, labels, ignore, average="all")
        refine_ce = cross_entropy(refined, labels, ignore, average="all")
        loss = (config.seg_loss_weight * seg_ce + config.mask_loss_weight * mask_loss
                + config.direction_loss_weight * direction_loss + config.refine_loss_weight * refine_ce)
        return {"loss": loss, "seg_ce": seg_ce, "mask_loss": mask_loss, "direction_loss": direction_loss,
                "refine_ce": refine_ce, "gt_mask": gt_mask, "mask_class_weights": mask_weights,
                "gt_direction": gt_direction, "direction_class_weights": direction_weights,
                "boundary_offset": offsets, "refine_logits": refined}
