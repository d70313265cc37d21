"""SETR (fudan-zvg/SETR) as a transformers model: ViT / DeiT / HLG encoders with Naive, PUP and MLA decoders.

The ViT blocks are timm's ``Block`` (pre-norm, qkv with bias, GELU MLP; the same math as SETR's own block) with
attention through ``F.scaled_dot_product_attention``. Head modules keep the original attribute names
(``mla.mla_p2_1x1``, ``mlahead.head2`` ...) except that conv-BN-ReLU steps are :class:`hf_seg.layers.ConvNormAct`
(the converter maps ``conv_i`` / ``syncbn_fc_i`` and Sequential indices) and the unused ``conv_seg`` layers are
dropped. Every spatial size a head resizes to is the *input* size; the original resizes to its fixed ``img_size``,
which equals the input whenever the original can run (its patch embedding asserts input == ``img_size``).

Memory layout: token maps are turned into NCHW views of NHWC memory (``reshape(B, h, w, C).permute(0, 3, 1, 2)``),
so the head convolutions run channels-last without a transpose copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...layers import ConvNormAct, resize
from ...losses import check_labels, cross_entropy
from ...modeling_utils import HfSegPreTrainedModel, checkpointed, enable_checkpointing, init_norm
from .configuration_setr import SetrConfig


@dataclass
class SetrSemanticSegmenterOutput(SemanticSegmenterOutput):
    """``SemanticSegmenterOutput`` plus the auxiliary heads' logits (at their own resolution, before any resize) and
    the weighted loss of every head (``loss_terms[0]`` = main head, then the auxiliary heads in order), after
    ``loss, logits, hidden_states, attentions`` in the tuple form.

    ``hidden_states``: ViT backbones: the embedding (after the position embedding; with the cls token for ``vit``,
    without for ``vit_mla``) and every block's output, ``[B, N, C]``; HLG: the stem and the four stage maps.
    ``attentions``: ViT: every block's ``[B, heads, N, N]``; HLG: per layer its local window attention
    ``[B * windows, heads, n, n]`` (stages with local attention) and its global attention ``[B, heads, h*w, M]``,
    then the head layers' in the same order."""

    auxiliary_logits: tuple[torch.Tensor, ...] | None = None
    loss_terms: tuple[torch.Tensor, ...] | None = None


def head_size(spec: dict, out_size):
    """The size a head resizes to: its fixed ``img_size`` if the config gives one, else the input size."""
    return spec["img_size"] if spec.get("img_size") is not None else out_size


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, h*w, C] tokens -> [B, C, h, w] view with channels-last strides (no copy)."""
    b, _, c = tokens.shape
    return tokens.reshape(b, grid[0], grid[1], c).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------------ ViT encoder
class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (a conv with kernel = stride = patch size)."""

    def __init__(self, config: SetrConfig):
        super().__init__()
        self.proj = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size, config.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(pixel_values)
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid


class SetrVisionTransformer(nn.Module):
    """SETR's ``VisionTransformer`` (and, with ``mla=True``, the transformer part of ``VIT_MLA``).

    Returns the output of every block. ``VisionTransformer`` keeps the cls token in front of the patch tokens;
    ``VIT_MLA`` adds the position embedding to [cls, patches] and then drops the cls token before the first block.
    There is no final norm. For an input whose token grid differs from the configured one the stored position
    embedding is interpolated bilinearly (cls entry kept), the resize SETR applies to ImageNet weights at load time.
    """

    def __init__(self, config: SetrConfig, keep_cls_token: bool = True):
        super().__init__()
        self.config = config
        self.keep_cls_token = keep_cls_token
        self.patch_embed = PatchEmbed(config)
        gh, gw = config.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + gh * gw, config.hidden_size))
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        norm_layer = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        n = config.num_hidden_layers
        rates = [config.drop_path_rate * i / max(n - 1, 1) for i in range(n)]  # stochastic depth decay rule
        self.blocks = nn.ModuleList(
            Block(config.hidden_size, config.num_attention_heads, mlp_ratio=config.mlp_ratio,
                  qkv_bias=config.qkv_bias, proj_drop=config.hidden_dropout_prob,
                  attn_drop=config.attention_dropout_prob, drop_path=rate, norm_layer=norm_layer)
            for rate in rates
        )
        for block in self.blocks:
            block.attn.fused_attn = True  # F.scaled_dot_product_attention whatever TIMM_FUSED_ATTN says ("sdpa")
        enable_checkpointing(self)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        stored = self.config.grid_size
        if tuple(grid) == tuple(stored):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=list(grid), old_size=list(stored),
                                      num_prefix_tokens=1, interpolation="bilinear", antialias=False,
                                      align_corners=self.config.pos_embed_align_corners)

    @torch.no_grad()
    def load_imagenet_weights(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Initialise from a timm ViT / DeiT ImageNet state dict the way SETR's ``load_pretrained`` does.

        ``pos_embed`` keeps its cls entry and its last ``h*w`` entries (so DeiT's distillation entry is dropped) and
        the grid is resized bilinearly (``pos_embed_align_corners``) to this model's crop grid; the classifier,
        final norm and DeiT's ``dist_token`` / ``head_dist`` are not used. Returns the keys that were skipped.
        """
        own = self.state_dict()
        skipped, new = [], {}
        for key, value in state_dict.items():
            if key == "pos_embed":
                n = int(round((value.shape[1] - 1) ** 0.5))
                while n * n > value.shape[1] - 1:
                    n -= 1
                grid = value[:, -n * n:]
                value = torch.cat((value[:, :1], grid), dim=1)
                value = resample_abs_pos_embed(value, new_size=list(self.config.grid_size), old_size=[n, n],
                                               num_prefix_tokens=1, interpolation="bilinear", antialias=False,
                                               align_corners=self.config.pos_embed_align_corners)
            if key in own and own[key].shape == value.shape:
                new[key] = value
            else:
                skipped.append(key)
        missing = [k for k in own if k not in new]
        if missing:
            raise ValueError(f"ImageNet weights lack {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        self.load_state_dict(new)
        return skipped

    def forward(self, pixel_values: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """(the embedding followed by every block's output, token grid)."""
        x, grid = self.patch_embed(pixel_values)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.position_embedding(grid)
        if not self.keep_cls_token:
            x = x[:, 1:]
        x = self.pos_drop(x)
        outputs = [x]
        for block in self.blocks:
            x = checkpointed(self, block, x)
            outputs.append(x)
        return outputs, grid


class ConvMLA(nn.Module):
    """The MLA neck (``Conv_MLA``): 1x1 projections, a cumulative top-down sum (deep -> shallow), 3x3 smoothing."""

    LEVELS = ("p2", "p3", "p4", "p5")  # shallow -> deep, the original's names

    def __init__(self, in_channels: int, mla_channels: int):
        super().__init__()
        for level in self.LEVELS:
            self.add_module(f"mla_{level}_1x1", ConvNormAct(in_channels, mla_channels, 1))
        for level in self.LEVELS:
            self.add_module(f"mla_{level}", ConvNormAct(mla_channels, mla_channels, 3))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        lateral = [getattr(self, f"mla_{level}_1x1")(m) for level, m in zip(self.LEVELS, maps)]
        summed = [lateral[3]]
        for i in (2, 1, 0):
            summed.insert(0, summed[0] + lateral[i])
        return [getattr(self, f"mla_{level}")(s) for level, s in zip(self.LEVELS, summed)]


class SetrMLABackbone(nn.Module):
    """``VIT_MLA``: the cls-free ViT, LayerNorms ``norm_0..3`` on the ``mla_index`` blocks and the MLA neck."""

    def __init__(self, config: SetrConfig):
        super().__init__()
        self.config = config
        self.vit = SetrVisionTransformer(config, keep_cls_token=False)
        norm_layer = partial(nn.LayerNorm, eps=config.layer_norm_eps)
        for i in range(4):
            self.add_module(f"norm_{i}", norm_layer(config.hidden_size))
        self.mla = ConvMLA(config.hidden_size, config.mla_channels)

    def forward(self, pixel_values: torch.Tensor):
        tokens, grid = self.vit(pixel_values)  # tokens[0] is the embedding, tokens[i + 1] block i's output
        maps = [tokens_to_map(getattr(self, f"norm_{i}")(tokens[index + 1]), grid)
                for i, index in enumerate(self.config.mla_index)]
        return tokens, self.mla(maps), grid


# ------------------------------------------------------------------------------------------------------ heads
class VisionTransformerUpHead(nn.Module):
    """SETR's ``VisionTransformerUpHead``: LayerNorm on the patch tokens (cls dropped), then one of

    * Naive (2 convs, 1 upsampling): conv (1x1, or 3x3 with ``conv3x3``) + BN + ReLU, 1x1 classifier, resize to
      input;
    * PUP auxiliary (2 convs, 2 upsamplings): conv + BN + ReLU, x4 bilinear, classifier, resize to input;
    * PUP (4 convs, 4 upsamplings): three (3x3 conv + BN + ReLU, x2 bilinear), 3x3 conv + BN + ReLU, 1x1
      classifier, x2 bilinear - 16x the token grid.

    The original's ``conv_i`` / ``syncbn_fc_i`` pairs are ``convs[i]`` (conv with bias), its last ``conv_i`` is
    ``classifier``.
    """

    def __init__(self, config: SetrConfig, spec: dict):
        super().__init__()
        dim, mid = config.hidden_size, config.head_channels
        self.in_index = spec["in_index"]
        self.num_conv = spec["num_conv"]
        self.num_upsample_layers = spec["num_upsample_layers"]
        self.align_corners = spec["align_corners"]
        self.spec = spec
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        if self.num_conv == 2:
            self.convs = nn.ModuleList([ConvNormAct(dim, mid, 3 if spec["conv3x3"] else 1, bias=True)])
        else:
            self.convs = nn.ModuleList(ConvNormAct(dim if i == 0 else mid, mid, 3, bias=True) for i in range(4))
        self.classifier = nn.Conv2d(mid, config.num_labels, 1)

    def _up(self, x: torch.Tensor, factor: int) -> torch.Tensor:
        return resize(x, (x.shape[-2] * factor, x.shape[-1] * factor), self.align_corners)

    def forward(self, tokens: list[torch.Tensor], grid, out_size) -> torch.Tensor:
        x = tokens[self.in_index + 1][:, 1:]  # tokens[0] is the embedding; drop the cls token
        x = tokens_to_map(self.norm(x), grid)
        if self.num_conv == 2:
            x = self.convs[0](x)
            if self.num_upsample_layers == 2:
                x = self._up(x, 4)
            return resize(self.classifier(x), head_size(self.spec, out_size), self.align_corners)
        for conv in self.convs[:3]:
            x = self._up(conv(x), 2)
        return self._up(self.classifier(self.convs[3](x)), 2)


class MLAHead(nn.Module):
    """Per level two 3x3 conv-BN-ReLU, x4 bilinear with align_corners=True (hard-coded in the original), concat."""

    def __init__(self, mla_channels: int, mlahead_channels: int):
        super().__init__()
        for level in (2, 3, 4, 5):
            self.add_module(f"head{level}", nn.Sequential(ConvNormAct(mla_channels, mlahead_channels),
                                                          ConvNormAct(mlahead_channels, mlahead_channels)))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for level, x in zip((2, 3, 4, 5), maps):
            y = getattr(self, f"head{level}")(x)
            outs.append(resize(y, (4 * x.shape[-2], 4 * x.shape[-1]), align_corners=True))
        return torch.cat(outs, dim=1)


class VitMLAHead(nn.Module):
    """``VIT_MLAHead``: MLAHead, a 3x3 classifier, bilinear resize to the input size."""

    def __init__(self, config: SetrConfig, spec: dict):
        super().__init__()
        self.align_corners = spec["align_corners"]
        self.spec = spec
        self.mlahead = MLAHead(config.mla_channels, spec["mlahead_channels"])
        self.cls = nn.Conv2d(4 * spec["mlahead_channels"], config.num_labels, 3, padding=1)

    def forward(self, maps, grid, out_size) -> torch.Tensor:
        return resize(self.cls(self.mlahead(maps)), head_size(self.spec, out_size), self.align_corners)


class VitMLAAuxHead(nn.Module):
    """``VIT_MLA_AUXIHead`` on one MLA level: a bias-free 1x1 classifier (two for 1024 channels), resize to input."""

    def __init__(self, config: SetrConfig, spec: dict):
        super().__init__()
        self.in_index = spec["in_index"]
        self.align_corners = spec["align_corners"]
        self.spec = spec
        channels = config.mla_channels
        if channels == 1024:
            self.aux_0 = nn.Conv2d(channels, 256, 1, bias=False)
            self.aux_1 = nn.Conv2d(256, config.num_labels, 1, bias=False)
        else:
            self.aux = nn.Conv2d(channels, config.num_labels, 1, bias=False)

    def forward(self, maps, grid, out_size) -> torch.Tensor:
        x = maps[self.in_index]
        x = self.aux_1(self.aux_0(x)) if hasattr(self, "aux_0") else self.aux(x)
        return resize(x, head_size(self.spec, out_size), self.align_corners)


def build_head(config: SetrConfig, spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind == "vit_up":
        return VisionTransformerUpHead(config, spec)
    if kind == "mla":
        return VitMLAHead(config, spec)
    if kind == "mla_aux":
        return VitMLAAuxHead(config, spec)
    from .modeling_hlg import FCNHead, HLGUPHead

    return HLGUPHead(config, spec) if kind == "hlg_up" else FCNHead(config, spec)


# ------------------------------------------------------------------------------------------------------ model
class SetrPreTrainedModel(HfSegPreTrainedModel):
    config_class = SetrConfig
    base_model_prefix = "setr"
    _no_split_modules = ["Block"]

    def _init_weights(self, module):
        # the original: truncated-normal(0.02) linears and position/cls embeddings, unit LayerNorms; mmcv's default
        # Kaiming convs. transformers' ``initialization`` functions leave tensors loaded from a checkpoint alone.
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init_norm(module)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, SetrVisionTransformer):
            init.trunc_normal_(module.pos_embed, std=0.02)
            init.trunc_normal_(module.cls_token, std=0.02)


class SetrForSemanticSegmentation(SetrPreTrainedModel):
    """SETR with its main decode head and the auxiliary heads the released configs train with.

    ``logits`` is the main head's output before the final resize (input size for Naive/MLA, 16x the token grid for
    PUP, the stride-4 map for HLG); ``auxiliary_logits`` are computed when labels are given or
    ``output_auxiliary_logits=True``. ``loss`` = sum over heads of ``loss_weight`` x cross-entropy of the logits
    bilinearly resized to the labels, averaged over all pixels (ignored ones included, mmseg 0.x).
    """

    def __init__(self, config: SetrConfig):
        super().__init__(config)
        if config.backbone == "vit":
            self.backbone = SetrVisionTransformer(config, keep_cls_token=True)
        elif config.backbone == "vit_mla":
            self.backbone = SetrMLABackbone(config)
        else:
            from .modeling_hlg import HLGTransformer

            self.backbone = HLGTransformer(config)
        self.decode_head = build_head(config, config.decode_head)
        self.auxiliary_heads = nn.ModuleList(build_head(config, spec) for spec in config.auxiliary_heads)
        self.post_init()

    def forward_features(self, pixel_values: torch.Tensor):
        """(hidden states, head inputs, token grid): ViT: the embedding and every block's output, which the heads
        also read (index ``i + 1`` for block ``i``); MLA: the neck's maps; HLG: the stem and the stage maps."""
        if self.config.backbone == "vit":
            tokens, grid = self.backbone(pixel_values)
            return tokens, tokens, grid
        if self.config.backbone == "vit_mla":
            tokens, maps, grid = self.backbone(pixel_values)
            return tokens, maps, grid
        stem, maps = self.backbone(pixel_values)
        return [stem, *maps], maps, None

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        output_auxiliary_logits: bool | None = None,
        **kwargs,
    ) -> SetrSemanticSegmenterOutput | tuple:
        output_hidden_states, output_attentions, return_dict = self._output_flags(
            output_hidden_states, output_attentions, return_dict)
        out_size = pixel_values.shape[-2:]
        with self.attention_recorder(output_attentions) as attentions:
            hidden, features, grid = self.forward_features(pixel_values)
            logits = self.decode_head(features, grid, out_size)

        auxiliary_logits = None
        if labels is not None or output_auxiliary_logits:
            auxiliary_logits = tuple(head(features, grid, out_size) for head in self.auxiliary_heads)

        loss = loss_terms = None
        if labels is not None:
            loss_terms = self.compute_loss(logits, auxiliary_logits, labels)
            loss = torch.stack(loss_terms).sum()

        output = SetrSemanticSegmenterOutput(
            loss=loss, logits=logits, hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None, auxiliary_logits=auxiliary_logits,
            loss_terms=loss_terms)
        return output if return_dict else output.to_tuple()

    def compute_loss(self, logits, auxiliary_logits, labels) -> tuple[torch.Tensor, ...]:
        """Weighted loss of every head: cross-entropy (mean over all pixels) on logits resized to the labels."""
        ignore = self.config.semantic_loss_ignore_index
        check_labels(labels, self.config.num_labels, ignore)
        specs = [self.config.decode_head] + list(self.config.auxiliary_heads)
        terms = []
        for spec, head_logits in zip(specs, (logits,) + tuple(auxiliary_logits or ())):
            resized = resize(head_logits, labels.shape[-2:], spec["align_corners"])
            terms.append(spec["loss_weight"] * cross_entropy(resized, labels, ignore, average="all"))
        return tuple(terms)
