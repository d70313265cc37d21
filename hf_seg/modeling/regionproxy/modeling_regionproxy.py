"""RegionProxy ("Semantic Segmentation by Early Region Proxy", Zhang, Pang & Lu, CVPR 2022) as a transformers model.

The backbone is a plain ViT (timm ``Block``s, SDPA attention, timm ``PatchEmbed`` with bottom/right zero padding) or
a hybrid whose tokens come from timm's ResNetV2 stem (StdConv2dSame, GroupNorm, TF-"SAME" max pool: the same math
as the timm 0.4.12 stem the original used) and a 1x1 projection. What the paper adds is written here as small
modules: :class:`RegionProxyHead` classifies every token (region proxy) and mixes the 3x3 neighbouring tokens'
class scores into ``region_res`` sub-pixels with softmax weights predicted from an earlier token map.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import PatchEmbed, StdConv2dSame
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...layers import ConvNormAct, resize
from ...losses import check_labels, cross_entropy
from ...modeling_utils import HfSegPreTrainedModel, checkpointed, enable_checkpointing, init_norm
from .configuration_regionproxy import RegionProxyConfig


@dataclass
class RegionProxySegmenterOutput(SemanticSegmenterOutput):
    """``SemanticSegmenterOutput`` plus the two halves of the proxy head (after ``loss, logits, hidden_states,
    attentions`` in the tuple form).

    ``hidden_states``: the embedding (patch or hybrid tokens plus position embedding, with the cls / distillation
    tokens when the layers see them) and every layer's output (the last one after the final norm), ``[B, N, C]``.
    ``attentions``: every layer's ``[B, heads, N, N]``.

    Args:
        affinity: ``[B, 9, rh, rw, h, w]`` softmax weights of the 3x3 neighbouring tokens for every sub-pixel
            (neighbour ``n = 3 * dy + dx``; neighbours outside the token grid get weight 0).
        token_logits: ``[B, h * w, num_labels]`` class scores of every token (region proxy).
    """

    affinity: torch.FloatTensor | None = None
    token_logits: torch.FloatTensor | None = None


# --------------------------------------------------------------------------------------------------- backbone
class HybridEmbed(nn.Module):
    """timm ResNetV2 (non-pre-activation, SAME padding, weight-standardised convs) + 1x1 projection to tokens."""

    def __init__(self, config: RegionProxyConfig):
        super().__init__()
        self.backbone = ResNetV2(
            layers=tuple(config.hybrid_layers),
            channels=tuple(config.hybrid_channels),
            stem_chs=config.hybrid_stem_channels,
            in_chans=config.num_channels,
            num_classes=0,
            global_pool="",
            preact=False,
            stem_type="same",
            conv_layer=partial(StdConv2dSame, eps=config.hybrid_std_conv_eps),
        )
        self.proj = nn.Conv2d(config.hybrid_channels[-1], config.hidden_size, kernel_size=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone.forward_features(pixel_values)).permute(0, 2, 3, 1)  # NHWC


class RegionProxyBackbone(nn.Module):
    """ViT that returns the token maps (extra tokens removed) selected by ``config.out_indices`` in layer order."""

    def __init__(self, config: RegionProxyConfig):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        norm_layer = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        if config.backbone_type == "vit":
            self.patch_embed = PatchEmbed(
                img_size=tuple(config.image_size), patch_size=config.patch_size, in_chans=config.num_channels,
                embed_dim=dim, norm_layer=norm_layer if config.patch_norm else None, output_fmt="NHWC",
                strict_img_size=False, dynamic_img_pad=True,
            )
        else:
            self.patch_embed = HybridEmbed(config)
        grid_h, grid_w = config.pos_grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_h * grid_w + config.num_extra_tokens, dim))
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        depth = config.num_hidden_layers
        drop_path = [config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear ramp from 0
        self.blocks = nn.ModuleList(
            Block(
                dim, config.num_attention_heads, mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias,
                proj_drop=config.hidden_dropout_prob,
                attn_drop=config.attention_dropout_prob, drop_path=drop_path[i], act_layer=nn.GELU,
                norm_layer=norm_layer,
            )
            for i in range(config.num_hidden_layers)
        )
        for block in self.blocks:
            block.attn.fused_attn = True  # F.scaled_dot_product_attention whatever TIMM_FUSED_ATTN says ("sdpa")
            if not config.qkv_bias:
                # the original's qkv_bias is nn.MultiheadAttention's bias: it also drops the output projection's bias
                # (timm's proj_bias would drop the MLP biases too, which the original keeps)
                block.attn.proj = nn.Linear(dim, dim, bias=False)
        self.norm = norm_layer(dim) if config.final_norm else nn.Identity()
        enable_checkpointing(self)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """``pos_embed`` for a ``grid_h x grid_w`` token grid.

        As in the original, only the grid part is resized, and only when the token *count* differs from the stored
        one (a grid with the stored count but another shape uses the stored embedding as it is).
        """
        pos_embed = self.pos_embed
        extra = self.config.num_extra_tokens
        if grid_h * grid_w + extra == pos_embed.shape[1]:
            return pos_embed
        pos_h, pos_w = self.config.pos_grid
        grid = pos_embed[:, extra:].reshape(1, pos_h, pos_w, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode=self.config.interpolate_mode, align_corners=False)
        return torch.cat([pos_embed[:, :extra], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, pixel_values: torch.Tensor):
        """Returns (the maps ``config.feature_indices`` selects, in layer order, ``[B, C, h, w]``; the hidden states:
        the embedding and every layer's output, the last one after the final norm). Each map is read from the hidden
        state it belongs to (extra tokens removed)."""
        config = self.config
        x = self.patch_embed(pixel_values)  # [B, h, w, C]
        batch, grid_h, grid_w, dim = x.shape
        extra = [self.cls_token.expand(batch, -1, -1)]
        if self.dist_token is not None:
            extra.append(self.dist_token.expand(batch, -1, -1))
        x = torch.cat(extra + [x.reshape(batch, grid_h * grid_w, dim)], dim=1)
        x = self.pos_drop(x + self.position_embedding(grid_h, grid_w))
        if not config.with_cls_token:
            x = x[:, config.num_extra_tokens:]
        prefix = config.num_extra_tokens if config.with_cls_token else 0

        hidden_states = [x]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = checkpointed(self, block, x)
            if i == last:
                x = self.norm(x)
            hidden_states.append(x)
        # feature index -1 is the embedding, i is layer i's output
        selected = [hidden_states[i + 1][:, prefix:].transpose(1, 2).reshape(batch, dim, grid_h, grid_w)
                    for i in config.feature_indices]
        return selected, tuple(hidden_states)


# ------------------------------------------------------------------------------------------------------- head
def neighbour_border_mask(height: int, width: int, device=None) -> torch.Tensor:
    """[9, h, w] bool: True where neighbour ``n = 3 * dy + dx`` of token (y, x) lies outside the grid."""
    offsets = torch.arange(3, device=device) - 1
    ys = torch.arange(height, device=device)[None] + offsets[:, None]  # [3, h]
    xs = torch.arange(width, device=device)[None] + offsets[:, None]  # [3, w]
    outside_y = (ys < 0) | (ys >= height)
    outside_x = (xs < 0) | (xs >= width)
    return (outside_y[:, None, :, None] | outside_x[None, :, None, :]).reshape(9, height, width)


class RegionProxyHead(nn.Module):
    """ProxyHead: per-token classifier + per-sub-pixel affinities over the 3x3 neighbouring tokens."""

    def __init__(self, config: RegionProxyConfig):
        super().__init__()
        dim, channels = config.hidden_size, config.head_channels
        self.region_res = tuple(config.region_res)
        self.classifier = nn.Linear(dim, config.num_labels)
        self.affinity_depthwise = ConvNormAct(dim, dim, 3, groups=dim, act=config.head_act, eps=config.head_norm_eps)
        self.affinity_pointwise = ConvNormAct(dim, channels, 1, act=config.head_act, eps=config.head_norm_eps)
        self.affinity_logits = nn.Conv2d(channels, 9 * self.region_res[0] * self.region_res[1], 1)

    def forward_affinity(self, mid: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = mid.shape
        rh, rw = self.region_res
        logits = self.affinity_logits(self.affinity_pointwise(self.affinity_depthwise(mid)))
        logits = logits.reshape(batch, 9, rh, rw, height, width)
        outside = neighbour_border_mask(height, width, device=mid.device)[:, None, None]  # [9, 1, 1, h, w]
        return logits.masked_fill(outside, float("-inf")).softmax(dim=1)

    def forward(self, mid: torch.Tensor, last: torch.Tensor):
        batch, _, height, width = last.shape
        rh, rw = self.region_res
        affinity = self.forward_affinity(mid)  # [B, 9, rh, rw, h, w]
        token_logits = self.classifier(last.flatten(2).transpose(1, 2))  # [B, h*w, K]
        num_labels = token_logits.shape[-1]
        grid_logits = token_logits.transpose(1, 2).reshape(batch, num_labels, height, width)
        neighbours = F.unfold(grid_logits, kernel_size=3, padding=1).reshape(batch, num_labels, 9, height, width)
        logits = torch.einsum("bnijhw,bknhw->bkhiwj", affinity, neighbours)
        return logits.reshape(batch, num_labels, height * rh, width * rw), affinity, token_logits


# ------------------------------------------------------------------------------------------------------ model
class RegionProxyPreTrainedModel(HfSegPreTrainedModel):
    config_class = RegionProxyConfig
    base_model_prefix = "regionproxy"
    _no_split_modules = ["Block"]

    def _init_weights(self, module):
        # as the original's init_weights without pretrained weights: trunc-normal(0.02) linears and tokens, Kaiming
        # (fan_in) convs, unit norms, zero biases; ``initialization`` skips tensors loaded from a checkpoint
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
            init_norm(module)
        elif isinstance(module, RegionProxyBackbone):
            init.trunc_normal_(module.pos_embed, std=0.02)
            init.trunc_normal_(module.cls_token, std=0.02)
            if module.dist_token is not None:
                init.trunc_normal_(module.dist_token, std=0.02)


class RegionProxyForSemanticSegmentation(RegionProxyPreTrainedModel):
    """``logits``: ``[B, num_labels, h * rh, w * rw]`` (stride ``config.output_stride`` of the padded input)."""

    def __init__(self, config: RegionProxyConfig):
        super().__init__(config)
        self.backbone = RegionProxyBackbone(config)
        self.head = RegionProxyHead(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RegionProxySegmenterOutput | tuple:
        output_hidden_states, output_attentions, return_dict = self._output_flags(
            output_hidden_states, output_attentions, return_dict)
        with self.attention_recorder(output_attentions) as attentions:
            features, hidden_states = self.backbone(pixel_values)
        mid, last = (features[i] for i in self.config.in_index)
        logits, affinity, token_logits = self.head(mid, last)

        loss = None
        if labels is not None:
            loss = self.compute_loss(logits, labels)

        output = RegionProxySegmenterOutput(
            loss=loss, logits=logits, hidden_states=hidden_states if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None, affinity=affinity, token_logits=token_logits)
        return output if return_dict else output.to_tuple()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """mmseg 0.x decode-head loss: logits resized (bilinear) to the labels, cross entropy averaged over all
        pixels (ignored pixels count in the denominator), times ``loss_weight``."""
        ignore = self.config.semantic_loss_ignore_index
        check_labels(labels, self.config.num_labels, ignore)
        logits = resize(logits, labels.shape[-2:], self.config.align_corners)
        class_weight = None
        if self.config.class_weight is not None:  # built here: a non-persistent buffer is left empty by from_pretrained
            class_weight = torch.tensor(self.config.class_weight, dtype=logits.dtype, device=logits.device)
        return self.config.loss_weight * cross_entropy(logits, labels, ignore, average="all",
                                                       class_weight=class_weight)
