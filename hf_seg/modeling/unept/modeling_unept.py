"""UN-EPT (Zhu et al., "A Unified Efficient Pyramid Transformer for Semantic Segmentation") as a transformers model.

Structure (names follow the original where they are clear):

* ``backbone`` (:mod:`.backbones`): mmseg's ResNetV1c on timm's ResNet, or a distilled DeiT of timm ``Block``s whose
  tokens after every fourth block are the feature maps;
* ``pyramid_convs``: 1x1 projections of the used backbone maps to ``hidden_size``;
* ``context_branch`` (:mod:`.deformable_transformer`): a deformable transformer encoder over the projected maps and a
  deformable decoder whose queries are the spatial-branch output plus a learned embedding;
* ``spatial_branch``: three stride-2 3x3 convs to stride 8; ``boundary_head`` / ``direction_head``: the boundary
  (2 classes) and direction (8 bins) predictions the dt_offset losses (:mod:`.losses`) supervise; ``classifier``:
  1x1 conv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...layers import ConvNormAct
from ...modeling_utils import HfSegPreTrainedModel, init_norm, init_torch_default
from .backbones import DeiTBackbone, ResNetV1cBackbone
from .configuration_unept import NUM_DIRECTIONS, UnEptConfig
from .deformable_transformer import (
    ContextBranch, DecoderLayer, DecoderSelfAttention, EncoderLayer, MultiScaleDeformableAttention,
    grid_reference_points,
)
from .losses import refine, unept_losses


@dataclass
class UnEptSemanticSegmenterOutput(SemanticSegmenterOutput):
    """``logits`` [B, C, H/8, W/8] plus the boundary heads' outputs at the same stride (after ``loss, logits,
    hidden_states, attentions`` in the tuple form).

    ``hidden_states``: the backbone's: ResNet: the stem and the four stages ``[B, C_i, h_i, w_i]``; DeiT: the
    embedding and every block's tokens ``[B, 2 + N, C]``. ``attentions``: DeiT blocks ``[B, heads, N, N]`` (DeiT
    backbone), then every encoder layer's and every decoder layer's deformable sampling weights
    ``[B, queries, heads, levels, points]`` (a decoder layer's self-attention comes before its sampling weights,
    ``[B, heads, queries, queries]`` with ``decoder_self_attention="spatial"``, ``[queries, heads, B, B]`` with
    ``"batch_axis"``; ``"per_image"`` attends each pixel to itself only and has no map).

    mask_logits: [B, 2, H/8, W/8] boundary / non-boundary scores (class 1 = boundary).
    direction_logits: [B, 8, H/8, W/8] scores of the 8 direction bins (see :data:`.losses.DIRECTION_STEPS`).
    refined_logits: [B, C, H, W] logits resized to the input and shifted along the predicted directions on the
        predicted boundary (only with ``config.refine_inference``).
    """

    mask_logits: torch.FloatTensor | None = None
    direction_logits: torch.FloatTensor | None = None
    refined_logits: torch.FloatTensor | None = None


class SpatialBranch(nn.Module):
    """Three stride-2 conv blocks (3 -> 64 -> 128 -> hidden_size, no ReLU after the last): output stride 8."""

    def __init__(self, config: UnEptConfig):
        super().__init__()
        widths = [3, *config.spatial_channels, config.hidden_size]
        last = len(widths) - 2
        self.blocks = nn.ModuleList(ConvNormAct(widths[i], widths[i + 1], 3, stride=2, act="relu" if i < last else None)
                                    for i in range(len(widths) - 1))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def _boundary_head(dim: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(dim, dim, 1), nn.Conv2d(dim, out_channels, 1, bias=False))


# ------------------------------------------------------------------------------------------------------ model
class UnEptPreTrainedModel(HfSegPreTrainedModel):
    config_class = UnEptConfig
    base_model_prefix = "unept"

    def _init_weights(self, module):
        # as the original without pretrained weights: PyTorch's default Linear/Conv init where it sets none (spatial
        # branch, boundary heads, pyramid convs, classifier), mmseg's ResNet init (Kaiming fan-out convs, unit BNs,
        # zero-init of each residual branch's last BN), timm's DeiT init (truncated-normal 0.02), and in the context
        # branch Xavier-uniform matrices with Deformable DETR's sampling-offset start and a normal level embedding.
        # Children come before their parents, so the parent branches below refine what the leaf branches set.
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init_torch_default(module)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init_norm(module)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight)
        elif isinstance(module, ResNetV1cBackbone):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        init.zeros_(m.bias)
            for block in module.modules():  # mmseg's zero_init_residual
                if isinstance(block, (Bottleneck, BasicBlock)):
                    init.zeros_((block.bn3 if isinstance(block, Bottleneck) else block.bn2).weight)
        elif isinstance(module, DeiTBackbone):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    init.trunc_normal_(m.weight, std=0.02)
                    init.zeros_(m.bias)
            init.trunc_normal_(module.pos_embed, std=0.02)
            init.trunc_normal_(module.cls_token, std=0.02)
            init.trunc_normal_(module.dist_token, std=0.02)
        elif isinstance(module, (EncoderLayer, DecoderLayer)):
            init.xavier_uniform_(module.linear1.weight)
            init.xavier_uniform_(module.linear2.weight)
        elif isinstance(module, MultiScaleDeformableAttention):
            init.zeros_(module.sampling_offsets.weight)
            init.copy_(module.sampling_offsets.bias, module.initial_sampling_offsets())
            init.zeros_(module.attention_weights.weight)
            init.zeros_(module.attention_weights.bias)
            for projection in (module.value_proj, module.output_proj):
                init.xavier_uniform_(projection.weight)
                init.zeros_(projection.bias)
        elif isinstance(module, DecoderSelfAttention):  # nn.MultiheadAttention's own init, then Xavier matrices
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.xavier_uniform_(module.out_proj.weight)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, ContextBranch):
            init.normal_(module.level_embed)


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
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> UnEptSemanticSegmenterOutput | tuple:
        output_hidden_states, output_attentions, return_dict = self._output_flags(
            output_hidden_states, output_attentions, return_dict)

        with self.attention_recorder(output_attentions) as attentions:
            features, hidden_states = self.backbone(pixel_values)
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

        output = UnEptSemanticSegmenterOutput(
            loss=loss, logits=logits, hidden_states=hidden_states if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None, mask_logits=mask_logits,
            direction_logits=direction_logits, refined_logits=refined)
        return output if return_dict else output.to_tuple()

    refine = staticmethod(refine)

    def compute_losses(self, logits, mask_logits, direction_logits, labels, distance_map=None, angle_map=None):
        """The original's ``loss_seg`` and its terms; returns a dict (``loss`` and the intermediates)."""
        return unept_losses(self.config, logits, mask_logits, direction_logits, labels, distance_map, angle_map)
