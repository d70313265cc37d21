"""SeMask-FPN as a transformers model.

The backbone is Swin (timm's ``WindowAttention`` with the relative position bias and the shift mask folded into one
additive SDPA mask, timm's ``PatchMerging``, ``PatchEmbed`` and ``Mlp``) with one addition per stage: a *semantic
layer* that predicts a class-prior map from the stage's tokens and uses it as attention weights to re-mix them.
The head is Semantic FPN plus a parameter-free branch that upsamples and sums the per-stage class-prior maps.

Behaviours of the original kept on purpose (a port must reproduce them to load its checkpoints):

- Zero padding to a window multiple happens *after* ``norm1``; padded tokens take part, unmasked, in the
  non-shifted window attention and in the semantic attention, then are cropped.
- The shifted-window mask is built on the padded size with -100, and windows are shifted even when a stage is
  smaller than one window (the original does not clip the window like timm's Swin does).
- The semantic layer's output *replaces* the stage tokens (no residual around its ``norm1``); its attention
  scores are not scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import DropPath, Mlp, PatchEmbed
from timm.models.swin_transformer import (
    PatchMerging, WindowAttention, get_relative_position_index, window_partition, window_reverse,
)
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...layers import Attend, ConvNormAct, resize
from ...losses import check_labels, cross_entropy
from ...modeling_utils import (
    HfSegPreTrainedModel, checkpointed, enable_checkpointing, init_norm, init_torch_default,
)
from .configuration_semask import SeMaskConfig


@dataclass
class SeMaskSemanticSegmenterOutput(SemanticSegmenterOutput):
    """``SemanticSegmenterOutput`` plus SeMask's class priors (after ``loss, logits, hidden_states, attentions`` in the
    tuple form).

    ``hidden_states``: the patch embedding and every stage's normed output (what the head reads), ``[B, C_i, H_i, W_i]``.
    ``attentions``: per stage, every Swin block's window attention ``[B * windows, heads, ws², ws²]`` and then the
    semantic layer's class-prior attention ``[B * windows (or B), 1, n, n]``.

    Args:
        cls_logits: the head's class-prior branch ``[B, num_prior_classes, H/4, W/4]``: every stage's class-prior map
            upsampled to stride 4 and summed. It is what the class-prior loss supervises.
        class_prior_maps: one map per backbone stage ``[B, num_prior_classes, H_i, W_i]``: the semantic layer's
            class scores (before any softmax).
    """

    cls_logits: torch.FloatTensor | None = None
    class_prior_maps: tuple[torch.FloatTensor, ...] | None = None


# --------------------------------------------------------------------------------------------------- backbone
def shifted_window_mask(height: int, width: int, window: int, shift: int, device, dtype) -> torch.Tensor:
    """[num_windows, window², window²] additive mask (0 / -100) of the cyclic shift, on the padded map.

    Tokens are grouped into the 3x3 regions the original cuts with ``slice(0, -window)``, ``slice(-window, -shift)``
    and ``slice(-shift, None)`` along each axis; pairs from different regions get -100.
    """
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_region = (rows >= height - window).long() + (rows >= height - shift).long()
    col_region = (cols >= width - window).long() + (cols >= width - shift).long()
    regions = (row_region[:, None] * 3 + col_region[None, :]).to(dtype)
    windows = window_partition(regions[None, :, :, None], (window, window)).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class SwinBlock(nn.Module):
    """W-MSA / SW-MSA block with the original's padding order (pad after ``norm1``)."""

    def __init__(self, config: SeMaskConfig, dim: int, num_heads: int, shift: int, drop_path: float):
        super().__init__()
        self.window_size = config.window_size
        self.shift = shift
        norm = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        self.norm1 = norm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size=config.window_size, qkv_bias=config.qkv_bias,
                                    attn_drop=config.attn_drop_rate, proj_drop=config.drop_rate)
        self.attn.fused_attn = True  # SDPA with the bias (+ shift mask) as a float attn_mask
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), act_layer=nn.GELU, drop=config.drop_rate)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, height, width, channels = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x)
        x = F.pad(x, (0, 0, 0, (ws - width % ws) % ws, 0, (ws - height % ws) % ws))
        padded_h, padded_w = x.shape[1], x.shape[2]
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(x, (ws, ws)).reshape(-1, ws * ws, channels)
        windows = self.attn(windows, mask=mask if self.shift else None)
        x = window_reverse(windows.reshape(-1, ws, ws, channels), (ws, ws), padded_h, padded_w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x[:, :height, :width, :])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SemanticAttention(nn.Module):
    """Class-prior attention: scores = q_cls · k_clsᵀ (unscaled) over the tokens, values = ``mlp_v(x)``.

    Returns the class-prior map ``mlp_cls_q(x)`` and ``x + gamma * mlp_res(attention output)``.
    """

    def __init__(self, dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.mlp_cls_q = nn.Linear(dim, num_classes)
        self.mlp_cls_k = nn.Linear(dim, num_classes)
        self.mlp_v = nn.Linear(dim, dim)
        self.mlp_res = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.attend = Attend(scale=1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        class_scores = self.mlp_cls_q(x)
        # one "head" dimension: 4-D attention inputs, as exporters expect
        mixed = self.attend(class_scores[:, None], self.mlp_cls_k(x)[:, None], self.mlp_v(x)[:, None])[:, 0]
        mixed = self.proj_drop(self.mlp_res(mixed))
        return class_scores, x + self.gamma * mixed


class SemanticLayer(nn.Module):
    """The original's ``SWSeMaskBlock`` (``windowed``: non-shifted windows, padding after ``norm1``) or
    ``SeMaskBlock`` (``global``: attention over all tokens of the stage)."""

    def __init__(self, config: SeMaskConfig, dim: int, kind: str, num_blocks: int):
        super().__init__()
        self.window_size = config.semantic_window_size if kind == "windowed" else None
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.class_injection = nn.ModuleList(
            SemanticAttention(dim, config.num_prior_classes, config.semantic_dropout) for _ in range(num_blocks)
        )

    def _attend(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        class_scores = None
        for block in self.class_injection:
            class_scores, tokens = block(tokens)
        return class_scores, tokens

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, H, W, C] -> (class-prior map [B, H, W, K], tokens [B, H, W, C])."""
        batch, height, width, channels = x.shape
        x = self.norm1(x)
        if self.window_size is None:
            scores, tokens = self._attend(x.reshape(batch, height * width, channels))
            return scores.reshape(batch, height, width, -1), tokens.reshape(batch, height, width, channels)
        ws = self.window_size
        x = F.pad(x, (0, 0, 0, (ws - width % ws) % ws, 0, (ws - height % ws) % ws))
        padded_h, padded_w = x.shape[1], x.shape[2]
        scores, tokens = self._attend(window_partition(x, (ws, ws)).reshape(-1, ws * ws, channels))
        scores = window_reverse(scores.reshape(-1, ws, ws, scores.shape[-1]), (ws, ws), padded_h, padded_w)
        tokens = window_reverse(tokens.reshape(-1, ws, ws, channels), (ws, ws), padded_h, padded_w)
        return scores[:, :height, :width, :], tokens[:, :height, :width, :]


class SeMaskStage(nn.Module):
    """Swin blocks (every other one shifted), the semantic layer, then patch merging for the next stage."""

    def __init__(self, config: SeMaskConfig, index: int, drop_paths: list[float]):
        super().__init__()
        dim = config.hidden_sizes[index]
        self.window_size = config.window_size
        self.shift = config.window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(config, dim, config.num_heads[index], shift=0 if j % 2 == 0 else self.shift,
                      drop_path=drop_paths[j])
            for j in range(config.depths[index])
        )
        self.semantic_layer = SemanticLayer(config, dim, config.semantic_layer_types[index],
                                            config.num_semantic_blocks[index])
        self.downsample = (
            PatchMerging(dim, norm_layer=partial(nn.LayerNorm, eps=config.layer_norm_eps))
            if index < config.num_stages - 1 else None
        )
        enable_checkpointing(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, H, W, C] -> (stage output, class-prior map, input of the next stage), all channels-last."""
        mask = None
        if len(self.blocks) > 1 and self.shift > 0:
            ws = self.window_size
            mask = shifted_window_mask(math.ceil(x.shape[1] / ws) * ws, math.ceil(x.shape[2] / ws) * ws, ws,
                                       self.shift, x.device, x.dtype)
        for block in self.blocks:
            x = checkpointed(self, block, x, mask)
        prior, x = self.semantic_layer(x)
        return x, prior, (self.downsample(x) if self.downsample is not None else x)


class SeMaskSwinBackbone(nn.Module):
    """Returns the normed stage features and the class-prior maps, both NCHW, one per stage, and the hidden states
    (the patch embedding, then the stage features)."""

    def __init__(self, config: SeMaskConfig):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        self.patch_embed = PatchEmbed(
            img_size=None, patch_size=config.patch_size, in_chans=config.num_channels, embed_dim=config.embed_dim,
            norm_layer=norm if config.patch_norm else None, output_fmt="NHWC", strict_img_size=False,
            dynamic_img_pad=True,
        )
        if config.use_absolute_pos_embed:
            grid = config.pretrain_img_size // config.patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, config.embed_dim, grid, grid))
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(config.drop_rate)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        starts = [sum(config.depths[:i]) for i in range(config.num_stages)]
        self.layers = nn.ModuleList(
            SeMaskStage(config, i, rates[starts[i]:starts[i] + config.depths[i]]) for i in range(config.num_stages)
        )
        self.norms = nn.ModuleList(norm(dim) for dim in config.hidden_sizes)
        self.channels = config.hidden_sizes
        self.strides = config.feature_strides

    def forward(self, pixel_values: torch.Tensor):
        embedding = self.patch_embed(pixel_values).permute(0, 3, 1, 2)  # NCHW view of [B, H/4, W/4, C]
        x = embedding.permute(0, 2, 3, 1)  # the stages read the view, so the hidden state is on their graph
        if self.absolute_pos_embed is not None:
            pos = F.interpolate(self.absolute_pos_embed, size=x.shape[1:3], mode="bicubic")
            x = x + pos.permute(0, 2, 3, 1)
        x = self.pos_drop(x)
        features, priors = [], []
        for layer, norm in zip(self.layers, self.norms):
            out, prior, x = layer(x)
            features.append(norm(out).permute(0, 3, 1, 2).contiguous())
            priors.append(prior.permute(0, 3, 1, 2).contiguous())
        return features, priors, (embedding, *features)


# ------------------------------------------------------------------------------------------------------- head
def _upsample2x(x: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """``nn.Upsample(scale_factor=2, mode='bilinear')`` (the same sampling as resizing to twice the size)."""
    return resize(x, (2 * x.shape[-2], 2 * x.shape[-1]), align_corners)


class SemanticFPNHead(nn.Module):
    """Semantic FPN (the original's ``BranchFPNHead``): per scale, log2(stride/stride₀) conv-BN-ReLU + x2-upsample
    steps (one conv without upsampling at the finest scale), sum at stride 4, dropout, 1x1 classifier.

    The class-prior branch upsamples each stage's map by the same number of parameter-free x2 steps and sums them.
    """

    def __init__(self, config: SeMaskConfig):
        super().__init__()
        strides, channels = config.feature_strides, config.hidden_sizes
        self.align_corners = config.align_corners
        self.num_upsamples = [int(math.log2(s) - math.log2(strides[0])) for s in strides]
        self.scale_heads = nn.ModuleList()
        for in_channels, ups in zip(channels, self.num_upsamples):
            steps = max(1, ups)
            self.scale_heads.append(nn.ModuleList(
                ConvNormAct(in_channels if k == 0 else config.decoder_channels, config.decoder_channels)
                for k in range(steps)
            ))
        self.dropout = nn.Dropout2d(config.decoder_dropout) if config.decoder_dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(config.decoder_channels, config.num_labels, 1)

    def forward(self, features: list[torch.Tensor], priors: list[torch.Tensor]):
        output = None
        for feature, convs, ups in zip(features, self.scale_heads, self.num_upsamples):
            x = feature
            for conv in convs:
                x = conv(x)
                if ups > 0:
                    x = _upsample2x(x, self.align_corners)
            output = x if output is None else output + resize(x, output.shape[-2:], self.align_corners)
        logits = self.conv_seg(self.dropout(output))

        cls_logits = priors[0]
        for prior, ups in zip(priors[1:], self.num_upsamples[1:]):
            for _ in range(ups):
                prior = _upsample2x(prior, self.align_corners)
            cls_logits = cls_logits + resize(prior, cls_logits.shape[-2:], self.align_corners)
        return logits, cls_logits


# ------------------------------------------------------------------------------------------------------ model
class SeMaskPreTrainedModel(HfSegPreTrainedModel):
    config_class = SeMaskConfig
    base_model_prefix = "semask"

    def _init_weights(self, module):
        # the original: truncated-normal(0.02) linears (the semantic attention's own Kaiming init is overwritten by the
        # backbone's init_weights, mlp_res included), unit LayerNorms, Kaiming convs in the head, classifier
        # normal(0.01); the semantic attention starts switched off (gamma = 0)
        if isinstance(module, PatchEmbed):
            # the original's init_weights never touches the patch projection: it keeps PyTorch's default Conv2d init.
            # Its non-zero bias matters: with a zero bias, zero-padded image areas become all-zero tokens whose
            # LayerNorm backward is scaled by 1/sqrt(eps) (~316) at every norm, and training on a padded crop
            # overflows to inf (the original does the same with a zero bias)
            init_torch_default(module.proj)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init_norm(module)
        elif isinstance(module, nn.Conv2d):
            if module is getattr(getattr(self, "decode_head", None), "conv_seg", None):
                init.normal_(module.weight, std=0.01)
            else:
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, SemanticAttention):
            init.zeros_(module.gamma)
        elif isinstance(module, WindowAttention):
            init.trunc_normal_(module.relative_position_bias_table, std=0.02)
            init.copy_(module.relative_position_index, get_relative_position_index(*module.window_size))
        elif isinstance(module, SeMaskSwinBackbone) and module.absolute_pos_embed is not None:
            init.trunc_normal_(module.absolute_pos_embed, std=0.02)


class SeMaskForSemanticSegmentation(SeMaskPreTrainedModel):
    """SeMask-FPN. ``logits`` are the Semantic-FPN scores at stride 4 (before the final resize); the class priors
    are returned as ``cls_logits`` (summed at stride 4) and ``class_prior_maps`` (per stage)."""

    def __init__(self, config: SeMaskConfig):
        super().__init__(config)
        self.backbone = SeMaskSwinBackbone(config)
        self.decode_head = SemanticFPNHead(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SeMaskSemanticSegmenterOutput | tuple:
        output_hidden_states, output_attentions, return_dict = self._output_flags(
            output_hidden_states, output_attentions, return_dict)
        with self.attention_recorder(output_attentions) as attentions:
            features, priors, hidden_states = self.backbone(pixel_values)
        logits, cls_logits = self.decode_head(features, priors)

        loss = None
        if labels is not None:
            loss = sum(self.compute_losses(logits, cls_logits, labels).values())

        output = SeMaskSemanticSegmenterOutput(
            loss=loss,
            logits=logits,
            hidden_states=hidden_states if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cls_logits=cls_logits,
            class_prior_maps=tuple(priors),
        )
        return output if return_dict else output.to_tuple()

    def compute_losses(self, logits: torch.Tensor, cls_logits: torch.Tensor, labels: torch.Tensor) -> dict:
        """The original's loss terms (mmseg 0.11): ``loss_ce`` on the main logits (OHEM-weighted where configured)
        and ``loss_cate`` = ``prior_loss_weight`` x CE on the class-prior branch.

        Both predictions are bilinearly resized to the label size; CE is averaged over *all* pixels (ignored ones
        count in the denominator), as mmseg 0.x's CrossEntropyLoss does.
        """
        config = self.config
        ignore = config.semantic_loss_ignore_index
        check_labels(labels, config.num_labels, ignore)
        logits = resize(logits, labels.shape[-2:], config.align_corners)
        cls_logits = resize(cls_logits, labels.shape[-2:], config.align_corners)
        class_weight = (torch.tensor(config.class_weight, device=logits.device, dtype=logits.dtype)
                        if config.class_weight is not None else None)

        per_pixel = F.cross_entropy(logits, labels, weight=class_weight, ignore_index=ignore, reduction="none")
        if config.ohem_min_kept is not None:
            per_pixel = per_pixel * self._ohem_weight(logits.detach(), labels, per_pixel.detach())
        loss_ce = config.loss_weight * per_pixel.mean()

        # the released COCO-Stuff models predict 171 labels but only 150 prior classes; the original cannot compute
        # this term for labels >= num_prior_classes (index error), here those pixels are ignored by it
        prior_labels = labels
        if config.num_prior_classes < config.num_labels:
            prior_labels = labels.masked_fill(labels >= config.num_prior_classes, ignore)
        prior_weight = class_weight[: config.num_prior_classes] if class_weight is not None else None
        loss_cate = config.prior_loss_weight * config.loss_weight * cross_entropy(
            cls_logits, prior_labels, ignore, average="all", class_weight=prior_weight
        )
        return {"loss_ce": loss_ce, "loss_cate": loss_cate}

    def _ohem_weight(self, logits: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """mmseg's ``OHEMPixelSampler``: weight 1 for the ``min_kept`` x batch hardest valid pixels (highest loss), or,
        with ``ohem_thresh``, for valid pixels whose true-class probability is below max(thresh, the kept-th lowest
        probability)."""
        config = self.config
        valid = labels != config.semantic_loss_ignore_index
        kept = config.ohem_min_kept * labels.shape[0]
        if config.ohem_thresh is None:
            scores = losses.masked_fill(~valid, float("-inf")).flatten()
            k = min(kept, scores.numel())
            selected = torch.zeros_like(scores, dtype=torch.bool)
            selected[scores.topk(k).indices] = True
            return (selected.view_as(labels) & valid).to(logits.dtype)
        probs = logits.softmax(dim=1).gather(1, labels.masked_fill(~valid, 0)[:, None])[:, 0]
        sorted_probs = probs.masked_fill(~valid, float("inf")).flatten().sort().values
        num_valid = valid.sum()
        position = torch.clamp(torch.minimum(num_valid - 1, torch.tensor(kept, device=probs.device)), min=0)
        min_threshold = torch.where(num_valid > 0, sorted_probs[position], torch.zeros((), device=probs.device))
        threshold = torch.clamp(min_threshold, min=config.ohem_thresh)
        return ((probs < threshold) & valid).to(logits.dtype)
