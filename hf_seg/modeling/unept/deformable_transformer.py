"""UN-EPT's context branch: a Deformable-DETR transformer (multi-scale deformable attention, sparse sampling of
``num_points`` points per head and level). The encoder refines the projected backbone maps (sine positional encoding
+ level embedding); the decoder's queries are the spatial-branch output plus a learned embedding.

Multi-scale deformable attention goes through :func:`hf_seg.kernels.ms_deform_attn` (``config.msda_backend``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ...kernels import ms_deform_attn
from ...layers import Attend, AttentionProbs
from ...modeling_utils import checkpointed, enable_checkpointing
from .configuration_unept import UnEptConfig


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
        self.sampling_weights = AttentionProbs()  # [B, Nq, heads, levels, points], recorded by output_attentions

    def initial_sampling_offsets(self) -> torch.Tensor:
        """Deformable DETR's start: head h samples along direction 2*pi*h/heads, point p at distance p + 1."""
        thetas = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.heads, 1, 1, 2)
        grid = grid.repeat(1, self.levels, self.points, 1) * torch.arange(1, self.points + 1).view(1, 1, -1, 1)
        return grid.flatten()

    def forward(self, query, reference_points, value_input, spatial_shapes, level_start_index):
        batch, num_queries, _ = query.shape
        value = self.value_proj(value_input).view(batch, value_input.shape[1], self.heads, self.head_dim)
        offsets = self.sampling_offsets(query).view(batch, num_queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(batch, num_queries, self.heads, self.levels * self.points)
        weights = self.sampling_weights(
            weights.softmax(-1).view(batch, num_queries, self.heads, self.levels, self.points))
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        # ONNX has no compiled kernel: an exported graph carries the reference math (the same numbers)
        backend = "pytorch" if torch.onnx.is_in_onnx_export() else self.backend
        out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, backend=backend)
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
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.attend = Attend(config.dropout)

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

        out = self.attend(heads(q), heads(k), heads(v))
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
        enable_checkpointing(self)


class Decoder(nn.Module):
    def __init__(self, config: UnEptConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        enable_checkpointing(self)


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
            total = total + h * w  # not ``+=``: under export sizes are tensors, and the list must not alias them
        src = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        pos = torch.cat([sine_position_embedding(h, w, self.hidden_size // 2, src.device).to(src.dtype)
                         + self.level_embed[level].view(1, 1, -1)
                         for level, (h, w) in enumerate(spatial_shapes)], 1)
        reference_points = torch.cat([grid_reference_points(h, w, src.device) for h, w in spatial_shapes], 1)
        reference_points = reference_points[:, :, None].expand(-1, -1, len(spatial_shapes), -1).to(src.dtype)
        memory = src
        for layer in self.encoder.layers:
            memory = checkpointed(self.encoder, layer, memory, pos, reference_points, spatial_shapes, starts)
        return memory, spatial_shapes, starts

    def decode(self, queries, reference_points, memory, spatial_shapes, starts):
        reference_points = reference_points[:, :, None].expand(-1, -1, len(spatial_shapes), -1)
        out = queries
        for layer in self.decoder.layers:
            out = checkpointed(self.decoder, layer, out, reference_points, memory, spatial_shapes, starts)
        return out
