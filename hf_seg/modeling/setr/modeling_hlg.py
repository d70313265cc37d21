"""HLG (hierarchical local-global transformer, SETR's IJCV version) backbone and its PUP-style decode head.

There is no runnable reference: the repository's segmentation code (``mmseg/models/backbones/hlg.py``,
``decode_heads/hlg_utils.py``) fails on its first forward and its classification code (``hlg-classification``) builds
layers without the modules its forward uses. This is a reconstruction from the IJCV paper and both code paths, with
the segmentation code's module names kept (``s0_conv``, ``block{1..4}.{i}.{down_proj, mlp, spatial_smooth, norm0, q,
k, v, pos_local, local_attn, h0_norm, norm1, aux_q, pos_global, global_attn.proj, norm2}``, ``norm_out_{0,1,2}``,
``norm``; head ``conv_0``, ``syncbn_fc_0``, ``decode_transformer.{i}.{norm0, attn.{q, kv, norm, pos, proj}, norm1,
norm2, mlp, spatial_smooth}``, ``conv_seg``) so that checkpoints trained with a fixed version of that code convert by
name; only its conv-BN(-act) steps are :class:`hf_seg.layers.ConvNormAct` here (``conv``/``bn``), which the converter
maps from the code's Sequential indices and from ``conv_0`` / ``syncbn_fc_0`` (the head's ``fuse``).

Decisions where the original code is broken or ambiguous (numbered as in the report):

1. Layer structure (segmentation code): ``x = down_proj(x) + norm2(DWMlp(x))`` (conv part, the first layer of a stage
   down-samples by 2 with a depthwise 3x3 stride-2 conv); then ``h = GELU(x + spatial_smooth(x))``; local attention in
   windows with a shared query/key (``q(norm0(h))`` for both, ``v(norm0(h))``, no output projection), added to ``h``;
   window tokens ``h0 = h0_norm(mean over the window)``; the stream continues from ``h``;
   ``q = q_local + aux_q(norm1(local attention output))``; ``x = h + global_attn(q, k(h0), v(h0))`` (with ``proj``).
   The last stage (``crs_interval == 1``) is plain global attention: ``x = x + norm1(global_attn(q(x), k(x), v(x)))``.
2. The code reads ``self.dilated_flag`` but sets ``self.lsda_flag``: taken as the same flag (even layers: contiguous
   windows, odd layers: dilated windows), as the CrossFormer-style SDA/LDA alternation the paper describes.
3. Backbone dilated windows: ``window_size`` x ``window_size`` tokens spaced ``H_pad / window_size`` apart (the
   segmentation code's reshape); ``crs_interval`` only tells whether a stage has local attention (``!= 1``). Its padding
   to a multiple of ``crs_interval`` contradicts that reshape; both window kinds pad to a multiple of the window size.
   Head dilated windows use the head code's CrossFormer LDA: tokens ``interval`` apart, groups of ``H_pad / interval``.
4. Padding is bottom/right; the code builds a key mask for padded tokens but never applies it: here padded tokens are
   masked out as keys and left out of the window mean. ``spatial_smooth`` runs on the unpadded map (zero padding
   before its BatchNorm would leak into border pixels).
5. Global-attention position bias: the code indexes a relative-position table of an HxH grid with window indices
   (a shape error, or a nonsense slice in the classification code). Here the bias is the dynamic position bias (the
   same ``DynamicPosBias`` MLP) of the offset between the query token and the window's centre token, both in token
   coordinates of the stage's grid. Local attention uses the offsets inside the window grid, as the code does.
6. ``mlp_ratio`` is 4 for every layer whatever ``mlp_ratios`` says (the code hard-codes it); the DWMlp hidden width is
   ``input_dim * 4`` (segmentation code; the classification code uses ``dim * 4``).
7. Head (``HLGUPHead``): the four stage maps resized (bilinear) to level ``fuse_level``, concatenated, 3x3 conv + BN +
   ReLU to ``channels``, ``depth`` head layers (``channels // 32`` heads, window 7, dilation interval ``sr_ratio``,
   LayerNorm eps 1e-5, qkv without bias), ``conv_seg`` (with mmseg's dropout before it), x4 bilinear. ``logits`` are
   this output (input resolution for stride-4 fusion).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import DropPath
from torch import nn
from torch.nn import functional as F

from ...layers import Attend, ConvNormAct, resize
from ...modeling_utils import checkpointed, enable_checkpointing
from .configuration_setr import SetrConfig

NEG_INF = -1e4


# ------------------------------------------------------------------------------------------------ helpers
class DynamicPosBias(nn.Module):
    """Relative offset (dy, dx) -> one bias per head, an MLP (CrossFormer's dynamic position bias)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(inplace=True),
                                  nn.Linear(self.pos_dim, self.pos_dim))
        self.pos2 = nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(inplace=True),
                                  nn.Linear(self.pos_dim, self.pos_dim))
        self.pos3 = nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(inplace=True),
                                  nn.Linear(self.pos_dim, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))

    def table(self, span_h: int, span_w: int, device) -> torch.Tensor:
        """Biases of every offset in [-(span_h-1), span_h-1] x [-(span_w-1), span_w-1]: [(2h-1)*(2w-1), heads]."""
        dy = torch.arange(1 - span_h, span_h, device=device, dtype=torch.float32)
        dx = torch.arange(1 - span_w, span_w, device=device, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1).reshape(-1, 2)
        return self(grid.to(self.pos_proj.weight.dtype))


def _relative_bias(pos: DynamicPosBias, q_coords, k_coords, span) -> torch.Tensor:
    """[heads, Nq, Nk] bias for query/key coordinates ([N, 2] integer tensors) whose offsets stay within ``span``."""
    table = pos.table(span[0], span[1], q_coords.device)
    rel = q_coords[:, None, :] - k_coords[None, :, :]
    index = (rel[..., 0] + span[0] - 1) * (2 * span[1] - 1) + (rel[..., 1] + span[1] - 1)
    return table[index].permute(2, 0, 1)


def _grid_coords(h: int, w: int, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack((ys, xs), dim=-1).reshape(-1, 2)


class Windows:
    """Partition of a padded [B, Hp, Wp, C] map into groups, and back.

    ``kind="local"``: contiguous ``size`` x ``size`` windows. ``kind="dilated"``: groups of tokens ``spacing`` apart
    (group ``(a, b)`` holds rows ``a, a + spacing, ...``), ``Hp / spacing`` x ``Wp / spacing`` tokens each.
    """

    def __init__(self, height: int, width: int, kind: str, size: int = 7, interval: int | None = None):
        unit = interval if (kind == "dilated" and interval is not None) else size
        self.h, self.w = height, width
        self.hp, self.wp = -(-height // unit) * unit, -(-width // unit) * unit
        self.kind = kind
        if kind == "local":
            self.gh = self.gw = size  # tokens per group (per side)
            self.nh, self.nw = self.hp // size, self.wp // size  # groups per side
        else:
            sh, sw = (interval, interval) if interval is not None else (self.hp // size, self.wp // size)
            self.nh, self.nw = sh, sw  # number of groups = spacing
            self.gh, self.gw = self.hp // sh, self.wp // sw

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, self.wp - self.w, 0, self.hp - self.h))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, Hp, Wp, C] -> [B * groups, gh * gw, C]."""
        b, _, _, c = x.shape
        if self.kind == "local":
            x = x.reshape(b, self.nh, self.gh, self.nw, self.gw, c).permute(0, 1, 3, 2, 4, 5)
        else:
            x = x.reshape(b, self.gh, self.nh, self.gw, self.nw, c).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b * self.nh * self.nw, self.gh * self.gw, c)

    def merge(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """Inverse of :meth:`split`, cropped to the unpadded size: [B, H, W, C]."""
        c = x.shape[-1]
        x = x.reshape(batch, self.nh, self.nw, self.gh, self.gw, c)
        if self.kind == "local":
            x = x.permute(0, 1, 3, 2, 4, 5)
        else:
            x = x.permute(0, 3, 1, 4, 2, 5)
        return x.reshape(batch, self.hp, self.wp, c)[:, : self.h, : self.w]

    def valid(self, device) -> torch.Tensor:
        """[groups, gh * gw] bool: which group members are real (not padding)."""
        mask = torch.zeros(1, self.hp, self.wp, 1, device=device)
        mask[:, : self.h, : self.w] = 1
        return self.split(mask)[..., 0] > 0

    def member_coords(self, device) -> torch.Tensor:
        """Coordinates inside the group grid (what local position bias is measured in): [gh * gw, 2]."""
        return _grid_coords(self.gh, self.gw, device)

    def centre_coords(self, device) -> torch.Tensor:
        """Stage-grid coordinates of each group's centre member: [groups, 2]."""
        gy, gx = torch.meshgrid(torch.arange(self.nh, device=device), torch.arange(self.nw, device=device),
                                indexing="ij")
        if self.kind == "local":
            cy, cx = gy * self.gh + self.gh // 2, gx * self.gw + self.gw // 2
        else:
            cy, cx = gy + (self.gh // 2) * self.nh, gx + (self.gw // 2) * self.nw
        return torch.stack((cy, cx), dim=-1).reshape(-1, 2)


def _attend(attend: Attend, q, k, v, num_heads: int, bias: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention of [B, N, C] queries on [B, M, C] keys/values with an additive [*, heads, N, M] bias."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // num_heads
    q = q.reshape(b, n, num_heads, d).transpose(1, 2)
    k = k.reshape(b, m, num_heads, d).transpose(1, 2)
    v = v.reshape(b, m, num_heads, d).transpose(1, 2)
    return attend(q, k, v, bias).transpose(1, 2).reshape(b, n, c)


def _global_attend(attend: Attend, q, k, v, num_heads, pos: DynamicPosBias, q_hw, centres, span, chunk=4096):
    """Every token of the [h, w] grid attends to the window tokens (biased by the token-to-window-centre offset).

    With SDPA, queries are processed in chunks so the [heads, N, M] bias of a large map never exists at once; the
    explicit (eager / recorded) attention takes all queries at once, so its probabilities are one tensor."""
    coords = _grid_coords(q_hw[0], q_hw[1], q.device)
    chunk = chunk if attend.fused_attn else q.shape[1]
    outs = []
    for start in range(0, q.shape[1], chunk):
        bias = _relative_bias(pos, coords[start:start + chunk], centres, span).to(q.dtype)
        outs.append(_attend(attend, q[:, start:start + chunk], k, v, num_heads, bias.unsqueeze(0)))
    return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


# ----------------------------------------------------------------------------------------------- backbone
class InnerPatchEmbed(nn.Module):
    """Stage entry: depthwise 3x3 stride-2 conv + BN + GELU (identity for the other layers)."""

    def __init__(self, input_dim: int, dim: int, down_sample: bool):
        super().__init__()
        self.down_sample = down_sample
        if down_sample:
            self.proj = ConvNormAct(input_dim, dim, 3, stride=2, groups=input_dim, bias=True, act="gelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) if self.down_sample else x


class DWMlp(nn.Module):
    """1x1 conv + BN + GELU, depthwise 3x3 (stride 2 at a stage entry) + BN + GELU, 1x1 conv."""

    def __init__(self, in_features: int, hidden: int, out_features: int, drop: float, down_sample: bool):
        super().__init__()
        self.fc1 = nn.Conv2d(in_features, hidden, 1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, hidden, 3, 2 if down_sample else 1, 1, groups=hidden)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.fc3 = nn.Conv2d(hidden, out_features, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.norm1(self.fc1(x))))
        x = self.drop(self.act(self.norm2(self.fc2(x))))
        return self.drop(self.fc3(x))


def _spatial_smooth(dim: int) -> nn.ModuleList:
    return nn.ModuleList([nn.Sequential(
        ConvNormAct(dim, dim // 4, 1, bias=True, act="gelu"),
        ConvNormAct(dim // 4, dim // 4, 3, bias=True, act="gelu"),
        ConvNormAct(dim // 4, dim, 1, bias=True, act=None))])


class GlobalAttentionProj(nn.Module):
    """Holds the global attention's output projection (``global_attn.proj`` in the original)."""

    def __init__(self, dim: int, drop: float):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_drop(self.proj(x))


class HLGLayer(nn.Module):
    """One HLG layer (the original's ``HLGLayers``); see the module docstring for the reconstructed math."""

    def __init__(self, input_dim, dim, num_heads, qkv_bias, drop, attn_drop, drop_path, norm_layer, window_size,
                 dilated, has_local, down_sample, mlp_ratio=4.0):
        super().__init__()
        self.num_heads, self.window_size, self.dilated, self.has_local = num_heads, window_size, dilated, has_local
        self.global_attend = Attend(attn_drop)
        if has_local:
            self.local_attend = Attend(attn_drop)
            self.aux_q = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
            self.norm0 = norm_layer(dim)
            self.h0_norm = norm_layer(dim)
            self.pos_local = DynamicPosBias(dim // 4, num_heads)
            self.spatial_smooth = _spatial_smooth(dim)
        self.down_proj = InnerPatchEmbed(input_dim, dim, down_sample)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.pos_global = DynamicPosBias(dim // 4, num_heads)
        self.global_attn = GlobalAttentionProj(dim, drop)
        self.mlp = DWMlp(input_dim, int(input_dim * mlp_ratio), dim, drop, down_sample)
        self.norm1 = norm_layer(dim)
        self.norm2 = norm_layer(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, C, H', W']."""
        mlp = self.mlp(x)
        x = self.down_proj(x) + self.drop_path(self.norm2(mlp.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        b, c, h, w = x.shape
        if not self.has_local:
            t = x.flatten(2).transpose(1, 2)
            coords = _grid_coords(h, w, x.device)
            bias = _relative_bias(self.pos_global, coords, coords, (h, w)).to(t.dtype).unsqueeze(0)
            out = self.global_attn(_attend(self.global_attend, self.q(t), self.k(t), self.v(t), self.num_heads, bias))
            t = t + self.drop_path(self.norm1(out))
            return t.transpose(1, 2).reshape(b, c, h, w)

        smooth = F.gelu(x + self.spatial_smooth[0](x)).permute(0, 2, 3, 1)  # [B, H, W, C]
        win = Windows(h, w, "dilated" if self.dilated else "local", self.window_size)
        groups = win.split(win.pad(smooth))
        valid = win.valid(x.device)  # [G, n]
        n_groups = valid.shape[0]
        normed = self.norm0(groups)
        share_q, local_v = self.q(normed), self.v(normed)
        member = win.member_coords(x.device)
        bias = _relative_bias(self.pos_local, member, member, (win.gh, win.gw)).to(x.dtype)  # [heads, n, n]
        key_mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, NEG_INF)
        bias = bias.unsqueeze(0) + key_mask[:, None, None, :]  # [G, heads, n, n]
        bias = bias.repeat(b, 1, 1, 1)
        local = _attend(self.local_attend, share_q, share_q, local_v, self.num_heads, bias)
        groups = groups + local
        weights = valid.to(x.dtype).repeat(b, 1)[..., None]
        h0 = (groups * weights).sum(1) / weights.sum(1).clamp_min(1)
        h0 = self.h0_norm(h0.reshape(b, n_groups, c))

        stream = win.merge(groups, b).reshape(b, h * w, c)
        share_q = win.merge(share_q, b).reshape(b, h * w, c)
        local = self.norm1(win.merge(local, b).reshape(b, h * w, c))
        local = self.aux_q(local.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        q = share_q + local
        out = _global_attend(self.global_attend, q, self.k(h0), self.v(h0), self.num_heads, self.pos_global, (h, w),
                             win.centre_coords(x.device), (win.hp, win.wp))
        stream = stream + self.drop_path(self.global_attn(out))
        return stream.transpose(1, 2).reshape(b, c, h, w)


class HLGTransformer(nn.Module):
    """Stem (two 3x3 conv-BN-GELU, stride 2) and four stages of HLG layers at strides 4, 8, 16, 32.

    Returns the stem output and the four stage maps [B, C_i, H/4/2^i, W/4/2^i], each after its output LayerNorm
    (``norm_out_{0,1,2}``, ``norm``); the normalised map also feeds the next stage, as in the original."""

    def __init__(self, config: SetrConfig):
        super().__init__()
        dims, heads, depths = config.hlg_embed_dims, config.hlg_num_heads, config.hlg_depths
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.s0_conv = nn.ModuleList([ConvNormAct(config.num_channels, dims[0], 3, stride=2, act="gelu"),
                                      ConvNormAct(dims[0], dims[0], 3, act="gelu")])
        total = sum(depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        cur = 0
        for stage in range(4):
            layers = []
            for i in range(depths[stage]):
                input_dim = dims[max(stage - 1, 0)] if i == 0 else dims[stage]
                layers.append(HLGLayer(
                    input_dim, dims[stage], heads[stage], config.qkv_bias, config.hidden_dropout_prob,
                    config.attention_dropout_prob, rates[cur + i], norm_layer, config.hlg_window_size,
                    dilated=i % 2 == 1, has_local=config.hlg_crs_interval[stage] != 1, down_sample=i == 0,
                    mlp_ratio=config.hlg_mlp_ratio))
            self.add_module(f"block{stage + 1}", nn.ModuleList(layers))
            cur += depths[stage]
        for stage in range(3):
            self.add_module(f"norm_out_{stage}", norm_layer(dims[stage]))
        self.norm = norm_layer(dims[3])
        enable_checkpointing(self)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = pixel_values
        for conv in self.s0_conv:
            x = conv(x)
        stem = x
        outs = []
        for stage in range(4):
            for layer in getattr(self, f"block{stage + 1}"):
                x = checkpointed(self, layer, x)
            norm = self.norm if stage == 3 else getattr(self, f"norm_out_{stage}")
            x = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            outs.append(x)
        return stem, outs


# --------------------------------------------------------------------------------------------------- head
class HLGAttention(nn.Module):
    """The head layers' attention: ``q`` / ``kv`` projections, dynamic position bias, LayerNorm on window tokens."""

    def __init__(self, dim: int, num_heads: int, drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.local_attend = Attend()
        self.global_attend = Attend()
        self.pos = DynamicPosBias(dim // 4, num_heads)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def local(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.proj_drop(self.proj(_attend(self.local_attend, self.q(x), k, v, self.num_heads, bias)))

    def global_(self, x, h0, q_hw, centres, span) -> torch.Tensor:
        k, v = self.kv(self.norm(h0)).chunk(2, dim=-1)
        return self.proj_drop(self.proj(_global_attend(self.global_attend, self.q(x), k, v, self.num_heads, self.pos,
                                                       q_hw, centres, span)))


class HLGHeadLayer(nn.Module):
    """Head layer (``HLGHeadLayers``): smoothing, windowed attention, global attention on window tokens, MLP."""

    def __init__(self, dim: int, num_heads: int, interval: int, dilated: bool, window_size: int = 7, drop=0.0):
        super().__init__()
        self.dilated, self.interval, self.window_size = dilated, interval, window_size
        self.norm0 = nn.LayerNorm(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = HLGAttention(dim, num_heads, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, dim * 4))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(dim * 4, dim))
        self.spatial_smooth = _spatial_smooth(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        b, c, h, w = x.shape
        smooth = F.gelu(x + self.spatial_smooth[0](x)).permute(0, 2, 3, 1)
        win = Windows(h, w, "dilated" if self.dilated else "local", self.window_size,
                      interval=self.interval if self.dilated else None)
        groups = win.split(win.pad(smooth))
        valid = win.valid(x.device)
        member = win.member_coords(x.device)
        bias = _relative_bias(self.attn.pos, member, member, (win.gh, win.gw)).to(x.dtype)
        key_mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, NEG_INF)
        bias = (bias.unsqueeze(0) + key_mask[:, None, None, :]).repeat(b, 1, 1, 1)
        groups = groups + self.attn.local(self.norm0(groups), bias)
        weights = valid.to(x.dtype).repeat(b, 1)[..., None]
        h0 = ((groups * weights).sum(1) / weights.sum(1).clamp_min(1)).reshape(b, -1, c)
        t = win.merge(groups, b).reshape(b, h * w, c)
        t = t + self.attn.global_(self.norm1(t), h0, (h, w), win.centre_coords(x.device), (win.hp, win.wp))
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class HLGUPHead(nn.Module):
    """Fuse the four stage maps at ``fuse_level``, 3x3 conv-BN-ReLU, HLG head layers, classifier, x4 bilinear."""

    def __init__(self, config: SetrConfig, spec: dict):
        super().__init__()
        channels = spec["channels"]
        self.fuse_level, self.align_corners = spec["fuse_level"], spec["align_corners"]
        self.fuse = ConvNormAct(sum(config.hlg_embed_dims), channels, 3, bias=True)  # the code's conv_0 + syncbn_fc_0
        self.decode_transformer = nn.ModuleList(
            HLGHeadLayer(channels, channels // 32, spec["sr_ratio"], dilated=i % 2 == 1,
                         window_size=config.hlg_window_size) for i in range(spec["depth"]))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, config.num_labels, 1)
        enable_checkpointing(self)

    def forward(self, maps, grid, out_size) -> torch.Tensor:
        size = maps[self.fuse_level].shape[-2:]
        x = torch.cat([resize(m, size, self.align_corners) for m in maps], dim=1)
        x = self.fuse(x)
        for layer in self.decode_transformer:
            x = checkpointed(self, layer, x)
        x = self.conv_seg(self.dropout(x))
        return resize(x, (x.shape[-2] * 4, x.shape[-1] * 4), self.align_corners)


class FCNHead(nn.Module):
    """mmseg FCNHead with one 3x3 ConvModule, no input concat: the HLG configs' auxiliary head (logits at its stride)."""

    def __init__(self, config: SetrConfig, spec: dict):
        super().__init__()
        self.in_index = spec["in_index"]
        self.convs = nn.ModuleList([ConvNormAct(config.hlg_embed_dims[self.in_index], spec["channels"])])
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(spec["channels"], config.num_labels, 1)

    def forward(self, maps, grid, out_size) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs[0](maps[self.in_index])))
