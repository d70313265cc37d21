"""Configuration of RegionProxy ("Semantic Segmentation by Early Region Proxy", CVPR 2022)."""

from __future__ import annotations

from ...configuration_utils import HfSegConfig
from ...sizes import int_pair

BACKBONE_TYPES = ("vit", "hybrid")
INTERPOLATE_MODES = ("bicubic", "bilinear")  # the original resizes pos-embeds with align_corners=False
HEAD_ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "leaky_relu")

# the ResNetV2 stage depths of the timm hybrid stems RegionProxy names by their timm model ("embed_type")
HYBRID_EMBED_LAYERS = {
    "vit_small_r26_s32_384": (2, 2, 2, 2),
    "vit_large_r50_s32_384": (3, 4, 6, 3),
    "vit_base_r50_s16_384": (3, 4, 9),
}
HYBRID_CHANNELS = (256, 512, 1024, 2048)  # timm ResNetV2 stage widths (the released stems use them unchanged)
HYBRID_GROUPS = 32  # GroupNorm groups of the timm hybrid stem


def _make_divisible(value: float, divisor: int = 8) -> int:
    """timm's channel rounding (used for the ResNetV2 bottleneck width)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class RegionProxyConfig(HfSegConfig):
    r"""RegionProxy: a plain ViT (or a ResNetV2 + ViT hybrid) whose tokens act as region proxies, and the ProxyHead.

    Every token is classified by a linear layer (``token logits``). A second branch on an earlier ("mid") token map
    predicts, for each of ``region_res`` sub-pixels of a token, softmax weights over the 3x3 neighbouring tokens; a
    sub-pixel's class scores are the weighted sum of its neighbours' token logits (the implicit proxy-to-pixel
    relation). ``logits`` therefore have stride ``patch/region_res`` (4 for /16 ViTs, 8 for /32 hybrids).

    Args:
        backbone_type: ``"vit"`` (patch-embedding conv) or ``"hybrid"`` (timm ResNetV2 stem + 1x1 projection).
        image_size: training crop ``[h, w]``; ``pos_embed`` is stored for the ``image_size // patch_size`` grid and
            resized (bicubic) when the token grid differs.
        patch_size: ViT patch size; for hybrids the size the position grid is computed with (32 for the /32 stems).
        hidden_size, num_hidden_layers, num_attention_heads, mlp_ratio, qkv_bias, layer_norm_eps: transformer shape.
            ``qkv_bias`` also switches the attention output projection's bias, as in the original.
        hidden_dropout_prob, attention_dropout_prob, drop_path_rate: training regularisation (linear drop-path ramp).
        with_cls_token: keep the class (and distillation) token in the sequence the layers see.
        distilled: DeiT-style extra distillation token (ViT-B rows).
        final_norm: LayerNorm after the last layer (only the last layer's output is normed).
        patch_norm: LayerNorm right after the patch embedding.
        interpolate_mode: how ``pos_embed`` is resized.
        out_indices: transformer layers whose token maps the backbone emits, in layer order; ``-1`` is the token map
            right after adding ``pos_embed``.
        hybrid_layers, hybrid_stem_channels, hybrid_channels, hybrid_std_conv_eps: the ResNetV2 stem (hybrid only).
        in_index: which two backbone outputs feed the head: ``(affinity/mid map, classifier/last map)``.
        head_channels: width of the affinity branch (depthwise-separable 3x3 conv); defaults to ``hidden_size``.
        region_res: sub-pixels per token ``[rh, rw]``.
        head_act, head_norm_eps: activation and BatchNorm eps of the affinity branch.
        align_corners: of the bilinear resizes of the logits (loss and post-processing).
        loss_weight, class_weight: of the cross entropy (mmseg 0.x: averaged over all pixels, ignored ones included).
    """

    model_type = "hfseg_regionproxy"

    def __init__(
        self,
        backbone_type: str = "vit",
        image_size=(512, 512),
        patch_size: int = 16,
        num_channels: int = 3,
        hidden_size: int = 192,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        hidden_dropout_prob: float = 0.0,
        attention_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.1,
        with_cls_token: bool = True,
        distilled: bool = False,
        final_norm: bool = True,
        patch_norm: bool = False,
        interpolate_mode: str = "bicubic",
        out_indices=(4, 11),
        hybrid_layers=(2, 2, 2, 2),
        hybrid_stem_channels: int = 64,
        hybrid_channels=None,
        hybrid_std_conv_eps: float = 1e-8,
        in_index=(-2, -1),
        head_channels: int | None = None,
        region_res=(4, 4),
        head_act: str = "relu",
        head_norm_eps: float = 1e-5,
        align_corners: bool = False,
        loss_weight: float = 1.0,
        class_weight=None,
        num_labels: int | None = None,
        **kwargs,
    ):
        self._check_choice("backbone_type", backbone_type, BACKBONE_TYPES)
        self._check_choice("interpolate_mode", interpolate_mode, INTERPOLATE_MODES)
        self._check_choice("head_act", head_act, HEAD_ACTIVATIONS)
        self.backbone_type = backbone_type
        self.image_size = list(int_pair(image_size, "image_size"))
        self.patch_size = int(patch_size)
        self.num_channels = int(num_channels)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.num_attention_heads = int(num_attention_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_eps = float(layer_norm_eps)
        self.hidden_dropout_prob = float(hidden_dropout_prob)
        self.attention_dropout_prob = float(attention_dropout_prob)
        self.drop_path_rate = float(drop_path_rate)
        self.with_cls_token = bool(with_cls_token)
        self.distilled = bool(distilled)
        self.final_norm = bool(final_norm)
        self.patch_norm = bool(patch_norm)
        self.interpolate_mode = interpolate_mode
        self.out_indices = [int(i) for i in ([out_indices] if isinstance(out_indices, int) else out_indices)]
        self.hybrid_layers = [int(n) for n in hybrid_layers]
        self.hybrid_stem_channels = int(hybrid_stem_channels)
        self.hybrid_channels = [int(c) for c in (hybrid_channels or HYBRID_CHANNELS[: len(self.hybrid_layers)])]
        self.hybrid_std_conv_eps = float(hybrid_std_conv_eps)
        self.in_index = [int(i) for i in in_index]
        self.head_channels = int(head_channels) if head_channels is not None else self.hidden_size
        self.region_res = list(int_pair(region_res, "region_res"))
        self.head_act = head_act
        self.head_norm_eps = float(head_norm_eps)
        self.align_corners = bool(align_corners)
        self.loss_weight = float(loss_weight)
        self.class_weight = [float(w) for w in class_weight] if class_weight is not None else None
        if num_labels is None and kwargs.get("id2label") is None:
            num_labels = 150  # ADE20K, the paper's main benchmark
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        kwargs.setdefault("test_align_corners", self.align_corners)  # the head's resizes use align_corners
        super().__init__(**kwargs)
        self._validate()

    def _validate(self) -> None:
        self._check_positive(
            image_size=self.image_size, patch_size=self.patch_size, num_channels=self.num_channels,
            hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, mlp_ratio=self.mlp_ratio, layer_norm_eps=self.layer_norm_eps,
            hybrid_layers=self.hybrid_layers, hybrid_stem_channels=self.hybrid_stem_channels,
            hybrid_channels=self.hybrid_channels, hybrid_std_conv_eps=self.hybrid_std_conv_eps,
            head_channels=self.head_channels, region_res=self.region_res, head_norm_eps=self.head_norm_eps)
        self._check_probability(hidden_dropout_prob=self.hidden_dropout_prob,
                                attention_dropout_prob=self.attention_dropout_prob, drop_path_rate=self.drop_path_rate)
        self._check_non_negative(loss_weight=self.loss_weight, class_weight=self.class_weight or [])
        if min(self.image_size) < self.patch_size:
            raise ValueError(f"image_size {self.image_size} is smaller than patch_size {self.patch_size}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.num_hidden_layers < 1:
            raise ValueError("num_hidden_layers must be >= 1")
        bad = [i for i in self.out_indices if not -1 <= i < self.num_hidden_layers]
        if bad:
            raise ValueError(f"out_indices {bad} are not layers of a {self.num_hidden_layers}-layer ViT "
                             "(-1 = the tokens after pos_embed, 0..num_hidden_layers-1 = layer outputs)")
        if len(self.in_index) != 2:
            raise ValueError(f"in_index must name two backbone outputs (mid map, last map), got {self.in_index}")
        n = len(self.feature_indices)
        if any(not -n <= i < n for i in self.in_index):
            raise ValueError(f"in_index {self.in_index} does not fit the {n} backbone outputs of "
                             f"out_indices {self.out_indices}")
        if min(self.region_res) < 1:
            raise ValueError(f"region_res must be positive, got {self.region_res}")
        if self.backbone_type == "hybrid":
            if self.distilled:
                raise ValueError("the hybrid backbone has no distillation token (distilled=True is ViT only)")
            if self.patch_norm:
                raise ValueError("patch_norm applies to the ViT patch embedding, not to the hybrid stem")
            if len(self.hybrid_channels) != len(self.hybrid_layers) or not self.hybrid_layers:
                raise ValueError(f"hybrid_channels {self.hybrid_channels} must give one width per stage of "
                                 f"hybrid_layers {self.hybrid_layers}")
            widths = [self.hybrid_stem_channels]
            for c in self.hybrid_channels:
                widths += [c, _make_divisible(c * 0.25)]
            if any(w % HYBRID_GROUPS for w in widths):
                raise ValueError(f"hybrid stem widths {sorted(set(widths))} must be multiples of {HYBRID_GROUPS} "
                                 "(GroupNorm groups)")
        if self.class_weight is not None and len(self.class_weight) != self.num_labels:
            raise ValueError(f"class_weight has {len(self.class_weight)} entries for {self.num_labels} labels")

    @property
    def feature_indices(self) -> list[int]:
        """The backbone outputs in the order the original emits them (layer order, -1 first)."""
        return sorted(set(self.out_indices))

    @property
    def num_extra_tokens(self) -> int:
        return 1 + int(self.distilled)

    @property
    def pos_grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def output_stride(self) -> tuple[float, float]:
        """Stride of ``logits`` relative to the (padded) input: the token stride over the sub-pixels per token (not
        an integer when ``region_res`` does not divide it, e.g. 8 / 3)."""
        stride = self.patch_size if self.backbone_type == "vit" else 2 ** (len(self.hybrid_layers) + 1)
        return stride / self.region_res[0], stride / self.region_res[1]
