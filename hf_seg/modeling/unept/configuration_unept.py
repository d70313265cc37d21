"""Configuration of UN-EPT (A Unified Efficient Pyramid Transformer for Semantic Segmentation)."""

from __future__ import annotations

import math

from ...configuration_utils import HfSegConfig

BACKBONES = ("resnet_v1c", "deit")
RESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
RESNET_STYLES = ("pytorch", "caffe")
DECODER_SELF_ATTENTION = ("per_image", "batch_axis", "spatial")
DECODER_LAYOUTS = ("resize", "original")
MSDA_BACKENDS = ("auto", "compiled", "pytorch")
ACTIVATIONS = ("relu", "gelu")
NUM_DIRECTIONS = 8


class UnEptConfig(HfSegConfig):
    r"""UN-EPT: a CNN/ViT backbone, a deformable-attention context branch, a spatial branch and boundary heads.

    The backbone gives ``num_feature_levels`` maps that 1x1 convs project to ``hidden_size``; a deformable
    transformer encoder refines them, and a deformable decoder turns the stride-8 output of the spatial branch plus a
    learned query embedding into per-pixel features that a 1x1 conv classifies (``logits`` at stride 8).

    Args:
        backbone: ``"resnet_v1c"`` (mmseg ResNetV1c: deep stem, output stride set by ``strides``/``dilations``) or
            ``"deit"`` (distilled DeiT; the tokens after every ``deit_feature_interval``-th block are the levels).
        resnet_depth, stem_channels, base_channels, strides, dilations, contract_dilation, resnet_style,
        resnet_out_indices: mmseg ``ResNetV1c`` arguments. The model uses ``resnet_out_indices[1:]`` (stages 2-4 in
            every released config), as the original does with ``backbone_feats[1:]``.
        deit_img_size, deit_patch_size, deit_embed_dim, deit_depth, deit_num_heads, deit_mlp_ratio: DeiT arguments
            (``img_size`` etc. of the original config). Inputs of another size use a bicubically resized ``pos_embed``.
        hidden_size: ``feat_dim`` of the original (256 in every release; the spatial branch ends with this width).
        num_attention_heads: ``heads``; num_points: ``k``, sampling points per head and level; num_feature_levels: ``L``.
        encoder_layers, decoder_layers: ``depth`` of the original (it uses the same value for both).
        ffn_dim: ``hidden_dim`` of the original (the transformer FFN width). dropout, activation: as the original.
        num_queries: size of the learned query embedding (``test_cfg.num_queries``).
        query_layout: ``[h, w]`` in which the query embedding is laid out: the stride-8 grid of the training crop.
        decoder_self_attention: how the decoder's self-attention treats the batch.
            ``"per_image"`` (default) attends within each image only. The original hands a ``[B, HW, C]`` tensor to a
            sequence-first ``nn.MultiheadAttention``, so every pixel attends over the *batch*; for one image this is
            exactly ``out_proj(v_proj(x))``, which is what ``"per_image"`` computes for every image of a batch, so the
            released models' single-image predictions are reproduced and do not depend on the other images.
            ``"batch_axis"`` is the original's behaviour (predictions depend on the batch). ``"spatial"`` attends over
            the pixels of each image (what the layer was presumably meant to do; new weights needed).
        decoder_layout: ``"resize"`` (default): the query embedding, viewed as a ``query_layout`` grid, is resized
            (bilinear) to the input's stride-8 grid and the decoder reference points are that grid's pixel centres, so
            any input size runs (whole-image inference works). ``"original"``: the embedding is added position-wise
            and the reference points lie on a square grid of side ``floor(sqrt(num_queries))``, as the original does;
            only inputs whose stride-8 grid has exactly ``num_queries`` cells run. At the training size of a square
            crop both are identical; the converter picks ``"original"`` only when the training crop was not square.
        msda_backend: backend of :func:`hf_seg.kernels.ms_deform_attn` (``"auto"``, ``"compiled"``, ``"pytorch"``).
        refine_inference: also return ``refined_logits`` (input resolution): the resized logits shifted along the
            predicted boundary directions, the refinement the training loss supervises. The original's inference
            (and every reported number) uses the unrefined logits, so it is off by default.
        seg_loss_weight, mask_loss_weight, direction_loss_weight, refine_loss_weight: weights of the four loss terms
            (0.8, 5, 0.6, 1 in the original). boundary_distance: pixels with ``0 <= distance_map <= 5`` are boundary.
    """

    model_type = "hfseg_unept"

    def __init__(
        self,
        backbone: str = "resnet_v1c",
        resnet_depth: int = 50,
        stem_channels: int = 64,
        base_channels: int = 64,
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        contract_dilation: bool = True,
        resnet_style: str = "pytorch",
        resnet_out_indices=(0, 1, 2, 3),
        norm_eps: float = 1e-5,
        deit_img_size: int = 480,
        deit_patch_size: int = 16,
        deit_embed_dim: int = 768,
        deit_depth: int = 12,
        deit_num_heads: int = 12,
        deit_mlp_ratio: float = 4.0,
        deit_feature_interval: int = 4,
        deit_layer_norm_eps: float = 1e-6,
        hidden_size: int = 256,
        num_attention_heads: int = 8,
        num_points: int = 16,
        num_feature_levels: int = 3,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        num_queries: int = 3600,
        query_layout=None,
        spatial_channels=(64, 128),
        decoder_self_attention: str = "per_image",
        decoder_layout: str = "resize",
        msda_backend: str = "auto",
        refine_inference: bool = False,
        seg_loss_weight: float = 0.8,
        mask_loss_weight: float = 5.0,
        direction_loss_weight: float = 0.6,
        refine_loss_weight: float = 1.0,
        boundary_distance: int = 5,
        num_labels: int | None = None,
        **kwargs,
    ):
        self._check_choice("backbone", backbone, BACKBONES)
        self._check_choice("resnet_style", resnet_style, RESNET_STYLES)
        self._check_choice("decoder_self_attention", decoder_self_attention, DECODER_SELF_ATTENTION)
        self._check_choice("decoder_layout", decoder_layout, DECODER_LAYOUTS)
        self._check_choice("msda_backend", msda_backend, MSDA_BACKENDS)
        self._check_choice("activation", activation, ACTIVATIONS)
        if backbone == "resnet_v1c":
            self._check_choice("resnet_depth", int(resnet_depth), RESNET_DEPTHS)
            if len(strides) != 4 or len(dilations) != 4:
                raise ValueError(f"strides and dilations need 4 values (one per stage), got {strides}, {dilations}")
            if stem_channels % 2:
                raise ValueError(f"the deep stem halves stem_channels in its first convs; got odd {stem_channels}")
            used = list(resnet_out_indices)[1:]
            if len(used) != num_feature_levels or any(not 0 <= i < 4 for i in resnet_out_indices):
                raise ValueError(f"resnet_out_indices {list(resnet_out_indices)}: the model uses the stages after the "
                                 f"first, which must be num_feature_levels={num_feature_levels} valid stage indices")
        else:
            levels = deit_depth // deit_feature_interval
            if levels < num_feature_levels:
                raise ValueError(f"DeiT with {deit_depth} blocks gives {levels} feature maps (one every "
                                 f"{deit_feature_interval} blocks) but num_feature_levels={num_feature_levels}")
            if deit_embed_dim % deit_num_heads:
                raise ValueError(f"deit_embed_dim {deit_embed_dim} is not divisible by deit_num_heads {deit_num_heads}")
        self._check_positive(
            stem_channels=stem_channels, base_channels=base_channels, strides=list(strides),
            dilations=list(dilations), norm_eps=norm_eps, deit_img_size=deit_img_size, deit_patch_size=deit_patch_size,
            deit_embed_dim=deit_embed_dim, deit_depth=deit_depth, deit_num_heads=deit_num_heads,
            deit_mlp_ratio=deit_mlp_ratio, deit_feature_interval=deit_feature_interval,
            deit_layer_norm_eps=deit_layer_norm_eps, hidden_size=hidden_size, num_attention_heads=num_attention_heads,
            num_points=num_points, num_feature_levels=num_feature_levels, ffn_dim=ffn_dim, num_queries=num_queries,
            spatial_channels=list(spatial_channels))
        self._check_non_negative(encoder_layers=encoder_layers, decoder_layers=decoder_layers,
                                 seg_loss_weight=seg_loss_weight, mask_loss_weight=mask_loss_weight,
                                 direction_loss_weight=direction_loss_weight, refine_loss_weight=refine_loss_weight,
                                 boundary_distance=boundary_distance)
        self._check_probability(dropout=dropout)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        if query_layout is None:
            side = math.isqrt(num_queries)
            if side * side != num_queries:
                raise ValueError(f"num_queries={num_queries} is not a square; give query_layout=[h, w] explicitly")
            query_layout = (side, side)
        query_layout = [int(v) for v in query_layout]
        if len(query_layout) != 2 or query_layout[0] * query_layout[1] != num_queries:
            raise ValueError(f"query_layout {query_layout} does not hold num_queries={num_queries} queries")
        if decoder_layout == "original" and math.isqrt(num_queries) ** 2 != num_queries:
            raise ValueError(f"decoder_layout='original' puts the reference points on a square grid of side "
                             f"floor(sqrt(num_queries)); num_queries={num_queries} is not a square, so the original "
                             f"cannot run this model")

        self.backbone = backbone
        self.resnet_depth = int(resnet_depth)
        self.stem_channels = int(stem_channels)
        self.base_channels = int(base_channels)
        self.strides = [int(s) for s in strides]
        self.dilations = [int(d) for d in dilations]
        self.contract_dilation = bool(contract_dilation)
        self.resnet_style = resnet_style
        self.resnet_out_indices = [int(i) for i in resnet_out_indices]
        self.norm_eps = float(norm_eps)
        self.deit_img_size = int(deit_img_size)
        self.deit_patch_size = int(deit_patch_size)
        self.deit_embed_dim = int(deit_embed_dim)
        self.deit_depth = int(deit_depth)
        self.deit_num_heads = int(deit_num_heads)
        self.deit_mlp_ratio = float(deit_mlp_ratio)
        self.deit_feature_interval = int(deit_feature_interval)
        self.deit_layer_norm_eps = float(deit_layer_norm_eps)
        self.hidden_size = int(hidden_size)
        self.num_attention_heads = int(num_attention_heads)
        self.num_points = int(num_points)
        self.num_feature_levels = int(num_feature_levels)
        self.encoder_layers = int(encoder_layers)
        self.decoder_layers = int(decoder_layers)
        self.ffn_dim = int(ffn_dim)
        self.dropout = float(dropout)
        self.activation = activation
        self.num_queries = int(num_queries)
        self.query_layout = query_layout
        self.spatial_channels = [int(c) for c in spatial_channels]
        self.decoder_self_attention = decoder_self_attention
        self.decoder_layout = decoder_layout
        self.msda_backend = msda_backend
        self.refine_inference = bool(refine_inference)
        self.seg_loss_weight = float(seg_loss_weight)
        self.mask_loss_weight = float(mask_loss_weight)
        self.direction_loss_weight = float(direction_loss_weight)
        self.refine_loss_weight = float(refine_loss_weight)
        self.boundary_distance = int(boundary_distance)
        if num_labels is None and kwargs.get("id2label") is None:
            num_labels = 150  # ADE20K, the dataset of most released rows
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        super().__init__(**kwargs)

    @property
    def backbone_channels(self) -> list[int]:
        """Channels of the maps the pyramid convs read."""
        if self.backbone == "deit":
            return [self.deit_embed_dim] * self.num_feature_levels
        expansion = 1 if self.resnet_depth in (18, 34) else 4
        return [self.base_channels * 2**i * expansion for i in self.resnet_out_indices[1:]]
