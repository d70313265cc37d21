"""Configuration of SETR (Zheng et al., CVPR 2021 / IJCV 2023): ViT/DeiT/HLG encoders with Naive, PUP or MLA decoders."""

from __future__ import annotations

import copy

from ...configuration_utils import HfSegConfig
from ...sizes import int_pair

BACKBONES = ("vit", "vit_mla", "hlg")
# decode head / auxiliary head types each backbone can feed
MAIN_HEADS = {"vit": ("vit_up",), "vit_mla": ("mla",), "hlg": ("hlg_up",)}
AUX_HEADS = {"vit": ("vit_up",), "vit_mla": ("mla_aux",), "hlg": ("fcn",)}
# (num_conv, num_upsample_layers) pairs of VisionTransformerUpHead that compute something: Naive, PUP auxiliary, PUP
VIT_UP_LAYOUTS = ((2, 1), (2, 2), (4, 4))


def vit_up_head(in_index: int, num_conv: int = 2, num_upsample_layers: int = 1, conv3x3: bool = False,
                loss_weight: float = 1.0, align_corners: bool = False, img_size=None) -> dict:
    """A ``VisionTransformerUpHead``: Naive = (2, 1), PUP auxiliary = (2, 2, conv3x3), PUP = (4, 4, conv3x3).

    ``img_size`` (None = the input size) is the size the Naive / PUP-auxiliary head resizes to; the original's heads
    always resize to their configured ``img_size``, which equals the input in every released config."""
    return dict(type="vit_up", in_index=in_index, num_conv=num_conv, num_upsample_layers=num_upsample_layers,
                conv3x3=conv3x3, loss_weight=loss_weight, align_corners=align_corners, img_size=img_size)


def naive_head(in_index: int, loss_weight: float = 1.0, conv3x3: bool = False, align_corners: bool = False) -> dict:
    return vit_up_head(in_index, 2, 1, conv3x3, loss_weight, align_corners)


def pup_head(in_index: int, loss_weight: float = 1.0, align_corners: bool = False) -> dict:
    return vit_up_head(in_index, 4, 4, True, loss_weight, align_corners)


def pup_aux_head(in_index: int, loss_weight: float = 0.4, align_corners: bool = False) -> dict:
    return vit_up_head(in_index, 2, 2, True, loss_weight, align_corners)


def mla_head(mlahead_channels: int = 128, loss_weight: float = 1.0, align_corners: bool = False, img_size=None) -> dict:
    return dict(type="mla", mlahead_channels=mlahead_channels, loss_weight=loss_weight, align_corners=align_corners,
                img_size=img_size)


def mla_aux_head(in_index: int, loss_weight: float = 0.4, align_corners: bool = False, img_size=None) -> dict:
    return dict(type="mla_aux", in_index=in_index, loss_weight=loss_weight, align_corners=align_corners,
                img_size=img_size)


def hlg_up_head(channels: int = 512, depth: int = 2, sr_ratio: int = 8, fuse_level: int = 0, loss_weight: float = 1.0,
                align_corners: bool = False) -> dict:
    return dict(type="hlg_up", channels=channels, depth=depth, sr_ratio=sr_ratio, fuse_level=fuse_level,
                loss_weight=loss_weight, align_corners=align_corners)


def fcn_head(in_index: int, channels: int = 256, loss_weight: float = 0.4, align_corners: bool = False) -> dict:
    """mmseg FCNHead with one 3x3 conv and no input concatenation (the HLG configs' auxiliary head)."""
    return dict(type="fcn", in_index=in_index, channels=channels, loss_weight=loss_weight, align_corners=align_corners)


_HEAD_KEYS = {
    "vit_up": {"type", "in_index", "num_conv", "num_upsample_layers", "conv3x3", "loss_weight", "align_corners",
               "img_size"},
    "mla": {"type", "mlahead_channels", "loss_weight", "align_corners", "img_size"},
    "mla_aux": {"type", "in_index", "loss_weight", "align_corners", "img_size"},
    "hlg_up": {"type", "channels", "depth", "sr_ratio", "fuse_level", "loss_weight", "align_corners"},
    "fcn": {"type", "in_index", "channels", "loss_weight", "align_corners"},
}
_HEAD_DEFAULTS = {
    "vit_up": vit_up_head(0), "mla": mla_head(), "mla_aux": mla_aux_head(0), "hlg_up": hlg_up_head(),
    "fcn": fcn_head(0),
}


class SetrConfig(HfSegConfig):
    r"""SETR: a transformer encoder read by one main and several auxiliary decode heads.

    Backbones (``backbone``):
        * ``"vit"`` - SETR's ``VisionTransformer`` (ViT-L/16 in the paper; ViT-B and the DeiT-B variants use the same
          class with a cls token and no distillation token). Returns the tokens of every block.
        * ``"vit_mla"`` - the same ViT whose cls token is dropped after adding the position embedding, with four
          LayerNorms on the ``mla_index`` blocks and the multi-level feature aggregation neck (``mla_channels``).
        * ``"hlg"`` - the hierarchical local-global transformer of the IJCV version (see ``modeling_hlg.py``).

    Heads are dicts (build them with :func:`naive_head`, :func:`pup_head`, :func:`pup_aux_head`, :func:`mla_head`,
    :func:`mla_aux_head`, :func:`hlg_up_head`, :func:`fcn_head`): ``decode_head`` gives ``logits``;
    ``auxiliary_heads`` only train (their weighted losses are added to ``loss``). ``in_index`` picks a transformer
    block (ViT), an MLA level (0 = shallowest) or an HLG stage.

    Args:
        image_size: training crop ``[height, width]`` (an int means square). The position embedding is stored for this
            grid and interpolated bilinearly when another input size is given.
        patch_size, hidden_size, num_hidden_layers, num_attention_heads, mlp_ratio, qkv_bias, layer_norm_eps: ViT sizes.
        pos_embed_align_corners: ``align_corners`` of the position-embedding interpolation (the original backbone's
            ``align_corners``, used when ImageNet weights are resized to the crop grid).
        mla_index, mla_channels: the four tapped blocks and the neck width of ``vit_mla``.
        head_channels: the 256 intermediate channels SETR's ViT heads hard-code.
        hidden_dropout_prob, attention_dropout_prob, drop_path_rate: training-time regularisation (0 in every release
            except HLG's drop path).
        hlg_*: HLG sizes (``embed_dims``, ``num_heads``, ``depths``, ``mlp_ratio``, ``crs_interval`` = window count per
            side of the global step, ``window_size``, ``patch_size``).
    """

    model_type = "hfseg_setr"

    def __init__(
        self,
        backbone: str = "vit",
        image_size=768,
        num_channels: int = 3,
        patch_size: int = 16,
        hidden_size: int = 1024,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        pos_embed_align_corners: bool = False,
        mla_index=(5, 11, 17, 23),
        mla_channels: int = 256,
        head_channels: int = 256,
        decode_head: dict | None = None,
        auxiliary_heads: list | None = None,
        hidden_dropout_prob: float = 0.0,
        attention_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.0,
        hlg_embed_dims=(96, 192, 384, 768),
        hlg_num_heads=(3, 6, 12, 24),
        hlg_depths=(2, 2, 6, 2),
        hlg_mlp_ratio: float = 4.0,
        hlg_crs_interval=(8, 4, 2, 1),
        hlg_window_size: int = 7,
        hlg_patch_size: int = 4,
        num_labels: int | None = None,
        **kwargs,
    ):
        self._check_choice("backbone", backbone, BACKBONES)
        self.backbone = backbone
        self.image_size = list(int_pair(image_size, "image_size"))
        self.num_channels = int(num_channels)
        self.patch_size = int(patch_size)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.num_attention_heads = int(num_attention_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.layer_norm_eps = float(layer_norm_eps)
        self.pos_embed_align_corners = bool(pos_embed_align_corners)
        self.mla_index = [int(i) for i in mla_index]
        self.mla_channels = int(mla_channels)
        self.head_channels = int(head_channels)
        self.hidden_dropout_prob = float(hidden_dropout_prob)
        self.attention_dropout_prob = float(attention_dropout_prob)
        self.drop_path_rate = float(drop_path_rate)
        self.hlg_embed_dims = [int(d) for d in hlg_embed_dims]
        self.hlg_num_heads = [int(h) for h in hlg_num_heads]
        self.hlg_depths = [int(d) for d in hlg_depths]
        self.hlg_mlp_ratio = float(hlg_mlp_ratio)
        self.hlg_crs_interval = [int(c) for c in hlg_crs_interval]
        self.hlg_window_size = int(hlg_window_size)
        self.hlg_patch_size = int(hlg_patch_size)
        if decode_head is None:
            decode_head = {"vit": naive_head(self.num_hidden_layers - 1), "vit_mla": mla_head(),
                           "hlg": hlg_up_head()}[backbone]
        self.decode_head = self._normalize_head(decode_head, MAIN_HEADS[backbone], "decode_head")
        self.auxiliary_heads = [self._normalize_head(h, AUX_HEADS[backbone], f"auxiliary_heads[{i}]")
                                for i, h in enumerate(auxiliary_heads or [])]
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        elif "id2label" not in kwargs:
            kwargs["num_labels"] = 19
        # test protocol: mmseg's encode_decode resizes with the decode head's ``align_corners``; mmseg 0.6 (SETR's
        # code base) feeds a window smaller than the crop as is (the original ViT would refuse it, ours resizes its
        # position embedding)
        kwargs.setdefault("test_align_corners", self.decode_head["align_corners"])
        kwargs.setdefault("test_pad_to_crop", False)
        super().__init__(**kwargs)
        self._validate()

    # ------------------------------------------------------------------------------------------ validation
    @staticmethod
    def _normalize_head(head: dict, allowed, where: str) -> dict:
        if not isinstance(head, dict) or "type" not in head:
            raise ValueError(f"{where} must be a dict with a 'type', got {head!r}")
        kind = head["type"]
        if kind not in allowed:
            raise ValueError(f"{where}: head type {kind!r} cannot be used here; allowed: {list(allowed)}")
        unknown = set(head) - _HEAD_KEYS[kind]
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} for a {kind!r} head")
        out = copy.deepcopy(_HEAD_DEFAULTS[kind])
        out.update(head)
        out["loss_weight"] = float(out["loss_weight"])
        out["align_corners"] = bool(out["align_corners"])
        if out.get("img_size") is not None:
            out["img_size"] = list(int_pair(out["img_size"], f"{where}: img_size"))
        return out

    def _validate(self) -> None:
        self._check_positive(
            image_size=self.image_size, num_channels=self.num_channels, patch_size=self.patch_size,
            hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, mlp_ratio=self.mlp_ratio, layer_norm_eps=self.layer_norm_eps,
            mla_channels=self.mla_channels, head_channels=self.head_channels, hlg_embed_dims=self.hlg_embed_dims,
            hlg_num_heads=self.hlg_num_heads, hlg_depths=self.hlg_depths, hlg_mlp_ratio=self.hlg_mlp_ratio,
            hlg_crs_interval=self.hlg_crs_interval, hlg_window_size=self.hlg_window_size,
            hlg_patch_size=self.hlg_patch_size)
        self._check_probability(hidden_dropout_prob=self.hidden_dropout_prob,
                                attention_dropout_prob=self.attention_dropout_prob, drop_path_rate=self.drop_path_rate)
        for where, head in [("decode_head", self.decode_head)] + [
            (f"auxiliary_heads[{i}]", h) for i, h in enumerate(self.auxiliary_heads)
        ]:
            self._check_non_negative(**{f"{where}.loss_weight": head["loss_weight"]})
            for key in ("channels", "mlahead_channels", "depth", "sr_ratio"):
                if key in head:
                    self._check_positive(**{f"{where}.{key}": head[key]})
        if self.backbone in ("vit", "vit_mla"):
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                                 f"{self.num_attention_heads}")
            if min(self.image_size) < self.patch_size:
                raise ValueError(f"image_size {self.image_size} is smaller than patch_size {self.patch_size}")
        if self.backbone == "vit_mla":
            if len(self.mla_index) != 4:
                raise ValueError(f"mla_index must name 4 blocks, got {self.mla_index}")
            self.mla_index = [self._block_index(i, "mla_index") for i in self.mla_index]
        if self.backbone == "hlg":
            n = len(self.hlg_embed_dims)
            if not (len(self.hlg_num_heads) == len(self.hlg_depths) == len(self.hlg_crs_interval) == n == 4):
                raise ValueError("hlg_embed_dims, hlg_num_heads, hlg_depths and hlg_crs_interval need 4 stages each")
            for dim, heads in zip(self.hlg_embed_dims, self.hlg_num_heads):
                if dim % heads:
                    raise ValueError(f"HLG stage width {dim} is not divisible by its {heads} heads")
        for where, head in [("decode_head", self.decode_head)] + [
            (f"auxiliary_heads[{i}]", h) for i, h in enumerate(self.auxiliary_heads)
        ]:
            kind = head["type"]
            if kind == "vit_up":
                layout = (int(head["num_conv"]), int(head["num_upsample_layers"]))
                if layout not in VIT_UP_LAYOUTS:
                    raise ValueError(f"{where}: VisionTransformerUpHead (num_conv, num_upsampe_layer)={layout} does "
                                     f"not compute logits; supported: {list(VIT_UP_LAYOUTS)}")
                head["in_index"] = self._block_index(head["in_index"], f"{where}.in_index")
            elif kind == "mla_aux":
                if self.mla_channels not in (256, 1024):
                    raise ValueError(f"{where}: the original MLA auxiliary head only has a classifier for 256 or "
                                     f"1024 input channels, mla_channels is {self.mla_channels}")
                head["in_index"] = self._level_index(head["in_index"], 4, where)
            elif kind == "fcn":
                head["in_index"] = self._level_index(head["in_index"], 4, where)
            elif kind == "hlg_up":
                if int(head["sr_ratio"]) < 2 or int(head["channels"]) % 32:
                    raise ValueError(f"{where}: the HLG head needs sr_ratio >= 2 (its dilation interval) and channels "
                                     f"divisible by 32 (one head per 32 channels)")
                head["fuse_level"] = self._level_index(head["fuse_level"], 4, where + ".fuse_level")

    def _block_index(self, index: int, where: str) -> int:
        index = int(index)
        if not -self.num_hidden_layers <= index < self.num_hidden_layers:
            raise ValueError(f"{where}={index} is outside the {self.num_hidden_layers} transformer blocks")
        return index % self.num_hidden_layers

    @staticmethod
    def _level_index(index: int, levels: int, where: str) -> int:
        index = int(index)
        if not -levels <= index < levels:
            raise ValueError(f"{where}: in_index {index} is outside the {levels} feature levels")
        return index % levels

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid of the ViT at ``image_size`` (the grid the stored position embedding has)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size
