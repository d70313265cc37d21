"""Configuration of SeMask-FPN (SeMask Swin backbone + Semantic-FPN head with a class-prior branch)."""

from __future__ import annotations

from ...configuration_utils import HfSegConfig

SEMANTIC_LAYER_TYPES = ("windowed", "global")


def default_semantic_layer_types(embed_dim: int, num_prior_classes: int, num_stages: int) -> list[str]:
    """The layout the original backbone picks from its arguments.

    With ``embed_dim`` 96 or 192 and more than 19 prior classes (the released ADE20K / COCO-Stuff Swin-T/S/L models)
    stages 0 and 1 use the windowed semantic layer and later stages the global one; every other combination (Swin-B,
    all Cityscapes models) uses the windowed layer everywhere.
    """
    if embed_dim in (96, 192) and num_prior_classes > 19:
        return ["windowed" if i < 2 else "global" for i in range(num_stages)]
    return ["windowed"] * num_stages


class SeMaskConfig(HfSegConfig):
    r"""SeMask-FPN: a Swin backbone whose stages end in a *semantic layer* that predicts a class-prior map and uses it
    to re-weight the stage's tokens, and a Semantic-FPN head that also sums the per-stage class-prior maps.

    Args:
        embed_dim: channels of stage 0 (doubled at every later stage).
        depths / num_heads: Swin blocks and attention heads per stage.
        window_size: Swin window size (shifted every other block).
        semantic_window_size: window of the windowed semantic layers (never shifted).
        num_semantic_blocks: semantic-attention blocks chained inside each stage's semantic layer (>= 1; an int
            or one per stage; ``None`` = 1 everywhere, as released).
        num_prior_classes: channels of the class-prior maps (the original backbone's ``num_cls``); ``None`` = the
            number of labels. The released COCO-Stuff models keep 150 while predicting 171 labels.
        semantic_layer_types: ``"windowed"`` or ``"global"`` per stage; ``None`` applies the original's rule
            (:func:`default_semantic_layer_types`).
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate, patch_size, patch_norm, use_absolute_pos_embed,
        pretrain_img_size, layer_norm_eps: Swin hyper-parameters as in the original.
        semantic_dropout: dropout after the semantic attention's output projection (hard-coded 0.1 in the original).
        decoder_channels: width of the Semantic-FPN head (256 in every release).
        decoder_dropout: Dropout2d before the classifier.
        align_corners: of every bilinear resize in the head and the loss.
        prior_loss_weight: weight of the class-prior loss (the original's ``cate_w``, 0.4).
        loss_weight: weight of the decode loss (multiplies both terms, as the original's ``loss_decode`` does).
        class_weight: optional per-class CE weights.
        ohem_min_kept / ohem_thresh: the OHEM pixel sampler of the main loss (``None`` = no sampler).
    """

    model_type = "hfseg_semask"

    def __init__(
        self,
        embed_dim: int = 96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size: int = 7,
        semantic_window_size: int = 7,
        num_semantic_blocks=None,
        num_prior_classes: int | None = None,
        semantic_layer_types=None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        patch_size: int = 4,
        num_channels: int = 3,
        patch_norm: bool = True,
        use_absolute_pos_embed: bool = False,
        pretrain_img_size: int = 224,
        layer_norm_eps: float = 1e-5,
        semantic_dropout: float = 0.1,
        decoder_channels: int = 256,
        decoder_dropout: float = 0.1,
        align_corners: bool = False,
        prior_loss_weight: float = 0.4,
        loss_weight: float = 1.0,
        class_weight=None,
        ohem_min_kept: int | None = None,
        ohem_thresh: float | None = None,
        num_labels: int = 150,
        **kwargs,
    ):
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        num_stages = len(depths)
        if num_stages == 0:
            raise ValueError("depths must list at least one stage")
        if len(num_heads) != num_stages:
            raise ValueError(f"num_heads has {len(num_heads)} entries but depths has {num_stages} stages")
        if num_semantic_blocks is None:
            num_semantic_blocks = 1
        if isinstance(num_semantic_blocks, int):
            num_semantic_blocks = [num_semantic_blocks] * num_stages
        num_semantic_blocks = [int(n) for n in num_semantic_blocks]
        if len(num_semantic_blocks) != num_stages:
            raise ValueError(f"num_semantic_blocks has {len(num_semantic_blocks)} entries for {num_stages} stages")
        if any(n < 1 for n in num_semantic_blocks):
            raise ValueError("every stage needs at least one semantic block: the head reads a class-prior map from "
                             f"each stage, got num_semantic_blocks={num_semantic_blocks}")
        if any(d < 1 for d in depths):
            raise ValueError(f"every stage needs at least one Swin block, got depths={depths}")
        for i, heads in enumerate(num_heads):
            width = embed_dim * 2**i
            if heads < 1 or width % heads:
                raise ValueError(f"stage {i}: width {width} is not divisible by num_heads {heads}")
        self._check_positive(embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=window_size,
                             semantic_window_size=semantic_window_size, patch_size=patch_size,
                             num_channels=num_channels, mlp_ratio=mlp_ratio, pretrain_img_size=pretrain_img_size,
                             layer_norm_eps=layer_norm_eps, decoder_channels=decoder_channels)
        self._check_probability(drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                                semantic_dropout=semantic_dropout, decoder_dropout=decoder_dropout)
        self._check_non_negative(prior_loss_weight=prior_loss_weight, loss_weight=loss_weight,
                                 class_weight=list(class_weight or []))
        if ohem_thresh is not None and not 0 <= ohem_thresh <= 1:
            raise ValueError(f"ohem_thresh is a probability threshold in [0, 1], got {ohem_thresh!r}")
        num_labels = int(num_labels)
        if "id2label" in kwargs and kwargs["id2label"] is not None:
            num_labels = len(kwargs["id2label"])
        if num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {num_labels}")
        if num_prior_classes is None:
            num_prior_classes = num_labels
        num_prior_classes = int(num_prior_classes)
        if num_prior_classes < 1:
            raise ValueError(f"num_prior_classes must be positive, got {num_prior_classes}")
        if semantic_layer_types is None:
            semantic_layer_types = default_semantic_layer_types(embed_dim, num_prior_classes, num_stages)
        semantic_layer_types = list(semantic_layer_types)
        if len(semantic_layer_types) != num_stages:
            raise ValueError(f"semantic_layer_types has {len(semantic_layer_types)} entries for {num_stages} stages")
        for kind in semantic_layer_types:
            self._check_choice("semantic_layer_types[i]", kind, SEMANTIC_LAYER_TYPES)
        if ohem_min_kept is not None and int(ohem_min_kept) <= 1:
            raise ValueError(f"ohem_min_kept must be > 1 (as the original sampler asserts), got {ohem_min_kept}")
        if class_weight is not None and len(class_weight) != num_labels:
            raise ValueError(f"class_weight has {len(class_weight)} entries for {num_labels} labels")

        self.embed_dim = int(embed_dim)
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = int(window_size)
        self.semantic_window_size = int(semantic_window_size)
        self.num_semantic_blocks = num_semantic_blocks
        self.num_prior_classes = num_prior_classes
        self.semantic_layer_types = semantic_layer_types
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.drop_rate = float(drop_rate)
        self.attn_drop_rate = float(attn_drop_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.patch_size = int(patch_size)
        self.num_channels = int(num_channels)
        self.patch_norm = bool(patch_norm)
        self.use_absolute_pos_embed = bool(use_absolute_pos_embed)
        self.pretrain_img_size = int(pretrain_img_size)
        self.layer_norm_eps = float(layer_norm_eps)
        self.semantic_dropout = float(semantic_dropout)
        self.decoder_channels = int(decoder_channels)
        self.decoder_dropout = float(decoder_dropout)
        self.align_corners = bool(align_corners)
        self.prior_loss_weight = float(prior_loss_weight)
        self.loss_weight = float(loss_weight)
        self.class_weight = [float(w) for w in class_weight] if class_weight is not None else None
        self.ohem_min_kept = int(ohem_min_kept) if ohem_min_kept is not None else None
        self.ohem_thresh = float(ohem_thresh) if ohem_thresh is not None else None
        # mmseg 0.11's slide_inference (SeMask's code base) feeds a window smaller than the crop unpadded
        kwargs.setdefault("test_pad_to_crop", False)
        super().__init__(num_labels=num_labels, **kwargs)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def hidden_sizes(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(self.num_stages)]

    @property
    def feature_strides(self) -> list[int]:
        return [self.patch_size * 2**i for i in range(self.num_stages)]
