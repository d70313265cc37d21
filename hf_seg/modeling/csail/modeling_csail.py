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
from transformers import PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from ...layers import PyramidPooling, conv_bn_relu, resize
from ...losses import check_labels, cross_entropy, resize_labels_nearest
from .configuration_csail import ENCODER_STRIDE, UPERNET_FPN_DIM, CsailConfig


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
            f"resnet{depth}", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4),
            output_stride=output_stride, stem_type="deep", stem_width=64,
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)


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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        features = []
        for stage_index, stage in enumerate(self.blocks):
            for block_index, block in enumerate(stage):
                x = block(x)
                if (stage_index, block_index) in self.TAPS:
                    features.append(x)
        features.append(x)
        return features


def _conv_bn(in_channels, out_channels, kernel_size, stride, relu):
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
              nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


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
                    row.append(_conv_bn(channels[j], channels[i], 1, 1, relu=False))
                elif j == i:
                    row.append(None)
                else:  # finer branch: i - j stride-2 convs, ReLU between them but not after the last
                    steps = [
                        _conv_bn(channels[j], channels[i] if k == i - j - 1 else channels[j], 3, 2, relu=k < i - j - 1)
                        for k in range(i - j)
                    ]
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers) if n > 1 else None
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
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
        return fused


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

    @staticmethod
    def _transition(previous, current) -> nn.ModuleList:
        layers = []
        for i, channels in enumerate(current):
            if i < len(previous):
                layers.append(_conv_bn(previous[i], channels, 3, 1, relu=True) if channels != previous[i] else None)
            else:  # a new, coarser branch grown from the coarsest existing one
                steps = [_conv_bn(previous[-1], channels if k == i - len(previous) else previous[-1], 3, 2, relu=True)
                         for k in range(i + 1 - len(previous))]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in range(2, 2 + len(self.MODULES_PER_STAGE)):
            transition = getattr(self, f"transition{stage - 1}")
            xs = [xs[i] if layer is None else layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)
        size = xs[0].shape[-2:]
        return [torch.cat([xs[0]] + [resize(x, size) for x in xs[1:]], dim=1)]


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
        self.cbr = conv_bn_relu(fc_dim, fc_dim // 4)
        self.conv_last = nn.Conv2d(fc_dim // 4, config.num_labels, 1)
        if deep_sup:
            self.cbr_deepsup = conv_bn_relu(fc_dim // 2, fc_dim // 4)
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
            nn.Conv2d(fc_dim + self.ppm.out_channels_extra, 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, config.num_labels, 1),
        )
        if deep_sup:
            self.cbr_deepsup = conv_bn_relu(fc_dim // 2, fc_dim // 4)
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
        fpn_dim = UPERNET_FPN_DIM[config.decoder]
        in_channels = config.encoder_channels
        self.ppm = PyramidPooling(config.fc_dim, 512, config.pool_scales, project_after_resize=True)
        self.ppm_last_conv = conv_bn_relu(config.fc_dim + self.ppm.out_channels_extra, fpn_dim)
        self.fpn_in = nn.ModuleList(conv_bn_relu(c, fpn_dim, 1) for c in in_channels[:-1])
        self.fpn_out = nn.ModuleList(nn.Sequential(conv_bn_relu(fpn_dim, fpn_dim)) for _ in in_channels[:-1])
        self.conv_last = nn.Sequential(
            conv_bn_relu(len(in_channels) * fpn_dim, fpn_dim),
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
    if config.decoder.startswith("c1"):
        return C1Decoder(config, deep_sup=config.decoder.endswith("_deepsup"))
    if config.decoder.startswith("ppm"):
        return PPMDecoder(config, deep_sup=config.decoder.endswith("_deepsup"))
    return UPerNetDecoder(config)


# ------------------------------------------------------------------------------------------------------ model
class CsailPreTrainedModel(PreTrainedModel):
    config_class = CsailConfig
    base_model_prefix = "csail"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # forward takes **kwargs but averages its loss itself: without this, transformers' Trainer would treat it as
    # a token-count-normalised loss and scale the loss (and gradients) by the number of processes
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        # the original initialises decoders with Kaiming-normal convs and BN weight 1 / bias 1e-4
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.constant_(module.bias, 1e-4)


class CsailForSemanticSegmentation(CsailPreTrainedModel):
    """``logits`` are the decoder's class scores at its own stride (8 for dilated encoders, 16 for dilated16 ones,
    32 for plain ResNets, 4 for UPerNet/HRNetV2)."""

    def __init__(self, config: CsailConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.encoder)
        self.decoder = build_decoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SemanticSegmenterOutput | tuple:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.encoder(pixel_values)
        logits, aux_logits = self.decoder(features, with_aux=labels is not None)

        loss = None
        if labels is not None:
            loss = self.compute_loss(logits, aux_logits, labels)

        hidden_states = tuple(features) if output_hidden_states else None
        if not return_dict:
            output = (logits,) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states)

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
