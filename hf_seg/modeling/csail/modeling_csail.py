"""MIT CSAIL scene-parsing models (semantic-segmentation-pytorch) as transformers models.

Encoders come from timm where the math is the same (ResNet with the 64-64-128 deep stem and output stride 8 or 16,
MobileNetV2 with output stride 8); HRNetV2 is written here because CSAIL's fuses branches with bilinear resizing
where timm's HRNet uses nearest upsampling. Decoder modules keep the original's attribute names so that the
converter only has to rename the encoders.
"""

from __future__ import annotations

import timm
import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...layers import ConvNormAct, PyramidPooling, resize
from ...losses import check_labels, cross_entropy, resize_labels_nearest
from ...modeling_utils import HfSegPreTrainedModel, checkpointed, enable_checkpointing, init_norm
from .configuration_csail import ENCODER_STRIDE, UPERNET_FPN_DIM, CsailConfig

# Every encoder returns (maps the decoder reads, shallow to deep; hidden states = the stem output, then those maps).


# --------------------------------------------------------------------------------------------------- encoders
class ResNetEncoder(nn.Module):
    """timm ResNet (deep stem 64-64-128, as CSAIL's ImageNet models) at output stride 32, 16 or 8.

    CSAIL's ``ResnetDilated(dilate_scale=8 or 16)`` removes the stride of layer3 and layer4 (8) or of layer4 only
    (16); in a dilated stage the conv that had the stride gets half the stage's dilation (1 at 16, 2 at 8) and
    every other 3x3 conv the full one, 1x1 downsamples keep dilation 1. timm's ``output_stride`` places
    dilation the same way (a stage's first block gets the previous dilation, the rest the new one), conv by conv
    for ResNet-18/50/101 (kernel, stride, dilation and padding compared with ``mit_semseg``).
    """

    def __init__(self, depth: int, output_stride: int):
        super().__init__()
        self.backbone = timm.create_model(
            f"resnet{depth}", pretrained=False, num_classes=0, global_pool="",
            output_stride=output_stride, stem_type="deep", stem_width=64,
        )
        enable_checkpointing(self)

    def forward(self, x: torch.Tensor):
        net = self.backbone
        stem = net.act1(net.bn1(net.conv1(x)))
        x = net.maxpool(stem)
        features = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = checkpointed(self, stage, x)
            features.append(x)
        return features, (stem, *features)


class MobileNetV2Encoder(nn.Module):
    """timm MobileNetV2-1.0 at output stride 8, without its 1280-channel head (CSAIL drops it).

    CSAIL returns the map after the *first* block of the stride-4, -8, -16 and -32 stages plus the last map; the
    deep-supervision branch reads the stride-32 one. Those taps are not stage ends, so the blocks run one by one.
    """

    TAPS = ((1, 0), (2, 0), (3, 0), (5, 0))

    def __init__(self):
        super().__init__()
        net = timm.create_model("mobilenetv2_100", pretrained=False, output_stride=8, num_classes=0)
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        enable_checkpointing(self)

    def forward(self, x: torch.Tensor):
        stem = x = self.bn1(self.conv_stem(x))
        features = []
        for stage_index, stage in enumerate(self.blocks):
            for block_index, block in enumerate(stage):
                x = checkpointed(self, block, x)
                if (stage_index, block_index) in self.TAPS:
                    features.append(x)
        features.append(x)
        return features, (stem, *features)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every branch receives the sum of all branches at its resolution."""

    def __init__(self, channels: tuple[int, ...], num_blocks: int = 4):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels
        )
        fuse_layers = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:  # coarser branch: 1x1 projection, resized afterwards
                    row.append(ConvNormAct(channels[j], channels[i], 1, act=None))
                elif j == i:
                    row.append(None)
                else:  # finer branch: i - j stride-2 convs, ReLU between them but not after the last
                    row.append(nn.Sequential(*[
                        ConvNormAct(channels[j], channels[i] if k == i - j - 1 else channels[j], 3, stride=2,
                                    act="relu" if k < i - j - 1 else None)
                        for k in range(i - j)
                    ]))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers) if n > 1 else None
        self.relu = nn.ReLU(inplace=False)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return tuple(xs)
        fused = []
        for i, row in enumerate(self.fuse_layers):
            # summed in branch order, as the original does: float addition order changes the last bits
            y = None
            for j, layer in enumerate(row):
                out = xs[j] if j == i else layer(xs[j])
                if j > i:
                    out = resize(out, xs[i].shape[-2:])
                y = out if y is None else y + out
            fused.append(self.relu(y))
        return tuple(fused)


class HRNetV2Encoder(nn.Module):
    """HRNetV2-W48 as CSAIL builds it; returns one map, the four branches resized to stride 4 and concatenated."""

    WIDTHS = (48, 96, 192, 384)
    MODULES_PER_STAGE = (1, 4, 3)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        downsample = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=downsample),
                                    *[Bottleneck(256, 64) for _ in range(3)])
        previous = (256,)
        for stage, num_modules in enumerate(self.MODULES_PER_STAGE, start=2):
            current = self.WIDTHS[:stage]
            self.add_module(f"transition{stage - 1}", self._transition(previous, current))
            self.add_module(f"stage{stage}", nn.Sequential(*[HighResolutionModule(current) for _ in range(num_modules)]))
            previous = current
        enable_checkpointing(self)

    @staticmethod
    def _transition(previous, current) -> nn.ModuleList:
        layers = []
        for i, channels in enumerate(current):
            if i < len(previous):
                layers.append(ConvNormAct(previous[i], channels, 3) if channels != previous[i] else None)
            else:  # a new, coarser branch grown from the coarsest existing one
                layers.append(nn.Sequential(*[
                    ConvNormAct(previous[-1], channels if k == i - len(previous) else previous[-1], 3, stride=2)
                    for k in range(i + 1 - len(previous))
                ]))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor):
        x = self.relu(self.bn1(self.conv1(x)))
        stem = x = self.relu(self.bn2(self.conv2(x)))
        xs = [checkpointed(self, self.layer1, x)]
        for stage in range(2, 2 + len(self.MODULES_PER_STAGE)):
            transition = getattr(self, f"transition{stage - 1}")
            xs = [xs[i] if layer is None else layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            for module in getattr(self, f"stage{stage}"):
                xs = checkpointed(self, module, *xs)
        size = xs[0].shape[-2:]
        features = [torch.cat([xs[0]] + [resize(x, size) for x in xs[1:]], dim=1)]
        return features, (stem, *features)


def build_encoder(name: str) -> nn.Module:
    if name.startswith("resnet"):
        depth = name[len("resnet"):].partition("dilated")[0]
        return ResNetEncoder(int(depth), output_stride=ENCODER_STRIDE[name])
    if name == "mobilenetv2dilated":
        return MobileNetV2Encoder()
    if name == "hrnetv2":
        return HRNetV2Encoder()
    raise ValueError(f"unknown CSAIL encoder {name!r}")


# --------------------------------------------------------------------------------------------------- decoders
class C1Decoder(nn.Module):
    """3x3 conv-BN-ReLU to fc_dim/4 channels, then the classifier; optional deep-supervision twin on the previous map."""

    def __init__(self, config: CsailConfig, deep_sup: bool):
        super().__init__()
        fc_dim = config.fc_dim
        self.cbr = ConvNormAct(fc_dim, fc_dim // 4)
        self.conv_last = nn.Conv2d(fc_dim // 4, config.num_labels, 1)
        if deep_sup:
            self.cbr_deepsup = ConvNormAct(fc_dim // 2, fc_dim // 4)
            self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, config.num_labels, 1)
        self.deep_sup = deep_sup

    def forward(self, features, with_aux: bool):
        logits = self.conv_last(self.cbr(features[-1]))
        if self.deep_sup and with_aux:
            return logits, self.conv_last_deepsup(self.cbr_deepsup(features[-2]))
        return logits, None


class PPMDecoder(nn.Module):
    """Pyramid pooling on the last map, 3x3 fusion, dropout, classifier; optional deep supervision."""

    def __init__(self, config: CsailConfig, deep_sup: bool):
        super().__init__()
        fc_dim = config.fc_dim
        self.ppm = PyramidPooling(fc_dim, 512, config.pool_scales)
        self.conv_last = nn.Sequential(
            ConvNormAct(fc_dim + self.ppm.out_channels_extra, 512),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, config.num_labels, 1),
        )
        if deep_sup:
            self.cbr_deepsup = ConvNormAct(fc_dim // 2, fc_dim // 4)
            self.dropout_deepsup = nn.Dropout2d(0.1)
            self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, config.num_labels, 1)
        self.deep_sup = deep_sup

    def forward(self, features, with_aux: bool):
        logits = self.conv_last(self.ppm(features[-1]))
        if self.deep_sup and with_aux:
            aux = self.conv_last_deepsup(self.dropout_deepsup(self.cbr_deepsup(features[-2])))
            return logits, aux
        return logits, None


class UPerNetDecoder(nn.Module):
    """Pyramid pooling on the last map, an FPN top-down path, and fusion of all levels at stride 4."""

    def __init__(self, config: CsailConfig):
        super().__init__()
        fpn_dim = UPERNET_FPN_DIM[config.arch_decoder]
        in_channels = config.encoder_channels
        self.ppm = PyramidPooling(config.fc_dim, 512, config.pool_scales, project_after_resize=True)
        self.ppm_last_conv = ConvNormAct(config.fc_dim + self.ppm.out_channels_extra, fpn_dim)
        self.fpn_in = nn.ModuleList(ConvNormAct(c, fpn_dim, 1) for c in in_channels[:-1])
        self.fpn_out = nn.ModuleList(ConvNormAct(fpn_dim, fpn_dim) for _ in in_channels[:-1])
        self.conv_last = nn.Sequential(
            ConvNormAct(len(in_channels) * fpn_dim, fpn_dim),
            nn.Conv2d(fpn_dim, config.num_labels, 1),
        )

    def forward(self, features, with_aux: bool):
        f = self.ppm_last_conv(self.ppm(features[-1]))
        pyramid = [f]
        for i in reversed(range(len(features) - 1)):
            lateral = self.fpn_in[i](features[i])
            f = lateral + resize(f, lateral.shape[-2:])
            pyramid.append(self.fpn_out[i](f))
        pyramid.reverse()
        size = pyramid[0].shape[-2:]
        fused = torch.cat([pyramid[0]] + [resize(p, size) for p in pyramid[1:]], dim=1)
        return self.conv_last(fused), None


def build_decoder(config: CsailConfig) -> nn.Module:
    if config.arch_decoder.startswith("c1"):
        return C1Decoder(config, deep_sup=config.arch_decoder.endswith("_deepsup"))
    if config.arch_decoder.startswith("ppm"):
        return PPMDecoder(config, deep_sup=config.arch_decoder.endswith("_deepsup"))
    return UPerNetDecoder(config)


# ------------------------------------------------------------------------------------------------------ model
class CsailPreTrainedModel(HfSegPreTrainedModel):
    config_class = CsailConfig
    base_model_prefix = "csail"
    _supports_sdpa = False  # no attention anywhere

    def _init_weights(self, module):
        # the original's ``weights_init``: Kaiming-normal conv weights, BatchNorm weight 1 / bias 1e-4 (conv biases,
        # which it leaves at PyTorch's default, start at zero here)
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init_norm(module, bias=1e-4)


class CsailForSemanticSegmentation(CsailPreTrainedModel):
    """``logits`` are the decoder's class scores at its own stride (8 for dilated encoders, 16 for dilated16 ones,
    32 for plain ResNets, 4 for UPerNet/HRNetV2).

    ``hidden_states``: the encoder's stem output, then the maps it hands the decoder. There is no attention:
    ``output_attentions=True`` raises.
    """

    def __init__(self, config: CsailConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.arch_encoder)
        self.decoder = build_decoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SemanticSegmenterOutput | tuple:
        output_hidden_states, output_attentions, return_dict = self._output_flags(
            output_hidden_states, output_attentions, return_dict)
        with self.attention_recorder(output_attentions):
            features, hidden_states = self.encoder(pixel_values)
        logits, aux_logits = self.decoder(features, with_aux=labels is not None)

        loss = None
        if labels is not None:
            loss = self.compute_loss(logits, aux_logits, labels)

        output = SemanticSegmenterOutput(loss=loss, logits=logits,
                                         hidden_states=hidden_states if output_hidden_states else None)
        return output if return_dict else output.to_tuple()

    def compute_loss(self, logits, aux_logits, labels):
        """CSAIL's loss: NLL of log-softmax averaged over labelled pixels, at the decoder's resolution.

        The original data loader shrinks the label map (nearest) to the decoder's output size instead of upsampling
        the prediction; full-size labels are shrunk the same way here.
        """
        ignore = self.config.semantic_loss_ignore_index
        check_labels(labels, self.config.num_labels, ignore)
        labels = resize_labels_nearest(labels, logits.shape[-2:])
        loss = cross_entropy(logits, labels, ignore)
        if aux_logits is not None:
            loss = loss + self.config.deep_sup_scale * cross_entropy(aux_logits, labels, ignore)
        return loss
