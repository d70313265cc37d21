"""Configuration of the MIT CSAIL ADE20K models (semantic-segmentation-pytorch)."""

from __future__ import annotations

from ...configuration_utils import HfSegConfig

# channels of the feature maps each encoder returns, shallow to deep (the last one feeds the decoder)
# ``dilated`` = output stride 8 (dilate_scale=8: layer3 and layer4 dilated), ``dilated16`` = output stride 16
# (dilate_scale=16: layer4 only; the README's resnetXX_dilated16 of 2018, which today's ModelBuilder no longer names)
ENCODER_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet18dilated": (64, 128, 256, 512),
    "resnet18dilated16": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet50dilated": (256, 512, 1024, 2048),
    "resnet50dilated16": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
    "resnet101dilated": (256, 512, 1024, 2048),
    "resnet101dilated16": (256, 512, 1024, 2048),
    # CSAIL taps MobileNetV2 after the first block of the stride-4/8/16(dilated)/32(dilated) stages and at the end
    "mobilenetv2dilated": (24, 32, 64, 160, 320),
    # HRNetV2-W48 returns one map: its four branches upsampled and concatenated
    "hrnetv2": (720,),
}
ENCODER_STRIDE = {name: 8 if name.endswith("dilated") else 16 if name.endswith("dilated16") else 32
                  for name in ENCODER_CHANNELS}
ENCODER_STRIDE["hrnetv2"] = 4

DECODERS = ("c1", "c1_deepsup", "ppm", "ppm_deepsup", "upernet", "upernet_lite")
UPERNET_FPN_DIM = {"upernet": 512, "upernet_lite": 256}


class CsailConfig(HfSegConfig):
    r"""Encoder/decoder pair of the MIT CSAIL scene-parsing models.

    Args:
        arch_encoder: one of ``resnet18[dilated|dilated16]``, ``resnet50[dilated|dilated16]``,
            ``resnet101[dilated|dilated16]``, ``mobilenetv2dilated``, ``hrnetv2`` (``dilated`` = output stride 8,
            ``dilated16`` = output stride 16, plain ResNets 32); the original's ``MODEL.arch_encoder``.
        arch_decoder: ``c1``, ``c1_deepsup``, ``ppm``, ``ppm_deepsup``, ``upernet`` (FPN width 512) or
            ``upernet_lite`` (256); the original's ``MODEL.arch_decoder``.
        fc_dim: channels of the encoder's last map, as the original configs state it; checked against the encoder.
        deep_sup_scale: weight of the deep-supervision loss (decoders ending in ``_deepsup``); 0.4 in every release.
        pool_scales: grid sizes of the pyramid pooling in PPM/UPerNet.

    ``encoder=`` / ``decoder=`` (the names of hf_seg <= 0.1 config files) are read as ``arch_encoder`` /
    ``arch_decoder``: transformers reads a config attribute named ``decoder`` as a sub-config.
    """

    model_type = "hfseg_csail"

    def __init__(
        self,
        arch_encoder: str = "resnet50dilated",
        arch_decoder: str = "ppm_deepsup",
        fc_dim: int | None = None,
        deep_sup_scale: float = 0.4,
        pool_scales=(1, 2, 3, 6),
        num_labels: int | None = None,
        **kwargs,
    ):
        arch_encoder = kwargs.pop("encoder", arch_encoder)
        arch_decoder = kwargs.pop("decoder", arch_decoder)
        self._check_choice("arch_encoder", arch_encoder, ENCODER_CHANNELS)
        self._check_choice("arch_decoder", arch_decoder, DECODERS)
        channels = ENCODER_CHANNELS[arch_encoder]
        if fc_dim is None:
            fc_dim = channels[-1]
        if fc_dim != channels[-1]:
            raise ValueError(f"fc_dim={fc_dim} does not match arch_encoder {arch_encoder!r}, whose last map has "
                             f"{channels[-1]}")
        if arch_decoder.endswith("_deepsup") and len(channels) < 2:
            raise ValueError(f"arch_decoder {arch_decoder!r} needs the encoder's second-to-last map; {arch_encoder!r} "
                             "returns one map")
        if arch_decoder.startswith("upernet") and channels != (256, 512, 1024, 2048):
            raise ValueError(f"arch_decoder {arch_decoder!r} is built for ResNet-50/101 maps (256, 512, 1024, 2048), "
                             f"not {arch_encoder!r} {channels}")
        pool_scales = [int(s) for s in pool_scales]
        self._check_positive(pool_scales=pool_scales)
        self._check_non_negative(deep_sup_scale=deep_sup_scale)
        self.arch_encoder = arch_encoder
        self.arch_decoder = arch_decoder
        self.fc_dim = int(fc_dim)
        self.deep_sup_scale = float(deep_sup_scale)
        self.pool_scales = pool_scales
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        elif "id2label" not in kwargs:  # a saved config carries id2label; its length is the number of labels
            kwargs["num_labels"] = 150
        super().__init__(**kwargs)

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        return ENCODER_CHANNELS[self.arch_encoder]

    @property
    def output_stride(self) -> int:
        """Stride of ``logits`` relative to the input."""
        return 4 if self.arch_decoder.startswith("upernet") else ENCODER_STRIDE[self.arch_encoder]
