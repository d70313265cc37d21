"""Conversion of SETR checkpoints (fudan-zvg/SETR, an mmsegmentation 0.6 fork) and their mmseg-style configs.

Config facts come from the merged ``model`` dict; the model classes' ``__init__`` defaults are filled in here, because
the original configs leave many of them implicit (e.g. ``VisionTransformerUpHead.num_conv`` defaults to 1, which
computes no logits, and ``conv3x3_conv1x1`` defaults to True).
"""

from __future__ import annotations

import logging
from typing import Any

from ...conversion import ConfigError, OriginalConverter, Rule, drop, mmseg
from ...label_sets import label_set_for
from ...sizes import int_pair
from .configuration_setr import SetrConfig, fcn_head, hlg_up_head, mla_aux_head, mla_head, vit_up_head
from .modeling_setr import SetrForSemanticSegmentation

logger = logging.getLogger(__name__)

VIT_TYPES = {"VisionTransformer": "vit", "VIT_MLA": "vit_mla", "HLGTransformer": "hlg"}
HEAD_TYPES = {"VisionTransformerUpHead", "VIT_MLAHead", "VIT_MLA_AUXIHead", "HLGUPHead", "FCNHead"}

# class defaults of the original (mmseg/models/backbones/vit.py, vit_mla.py, decode_heads/*.py)
_VIT_DEFAULTS = dict(img_size=384, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0,
                     qkv_bias=True, qk_scale=None, drop_rate=0.1, attn_drop_rate=0.0, drop_path_rate=0.0,
                     hybrid_backbone=None, align_corners=False, mla_channels=256, mla_index=(5, 11, 17, 23))
_HEAD_DEFAULTS = dict(in_index=-1, input_transform=None, ignore_index=255, sampler=None, align_corners=False,
                      img_size=768, embed_dim=1024, num_conv=1, upsampling_method="bilinear", num_upsampe_layer=1,
                      conv3x3_conv1x1=True, mla_channels=256, mlahead_channels=128)


def _get(head: dict, key: str):
    return head.get(key, _HEAD_DEFAULTS.get(key))


_PARAM = r"weight|bias|running_mean|running_var|num_batches_tracked"


def _conv_norm_act(match, tensor):
    """``<prefix>.<i>.<param>`` of a Sequential of (conv, BN, act) triples -> ``<prefix>[.<i // 3>].conv|bn.<param>``
    (the index is kept only where the Sequential holds more than one triple)."""
    prefix, index, param = match[1], int(match[2]), match[3]
    part = ("conv", "bn")[index % 3]
    several = prefix.endswith("spatial_smooth.0") or ".mlahead.head" in prefix
    return {f"{prefix}.{index // 3}.{part}.{param}" if several else f"{prefix}.{part}.{param}": tensor}


def _up_head_conv(config: SetrConfig, match, tensor):
    head, kind, index, param = match["head"], match["kind"], int(match["index"]), match["param"]
    if head == "decode_head":
        spec, target = config.decode_head, "decode_head"
    else:
        i = int(head.rpartition(".")[2]) if "." in head else 0
        if i >= len(config.auxiliary_heads):
            raise ConfigError(f"{match.string}: the config has {len(config.auxiliary_heads)} auxiliary heads")
        spec, target = config.auxiliary_heads[i], f"auxiliary_heads.{i}"
    if spec["type"] == "hlg_up":
        if index != 0:
            raise ConfigError(f"{match.string}: HLGUPHead has conv_0 / syncbn_fc_0 only")
        return {f"{target}.fuse.{'conv' if kind == 'conv' else 'bn'}.{param}": tensor}
    layers = 1 if spec["num_conv"] == 2 else 4  # conv-BN-ReLU layers before the classifier
    if kind == "syncbn_fc":
        return {f"{target}.convs.{index}.bn.{param}": tensor}
    return {f"{target}.convs.{index}.conv.{param}" if index < layers else f"{target}.classifier.{param}": tensor}


class SetrConverter(OriginalConverter):
    family = "setr"
    model_class = SetrForSemanticSegmentation
    # mmcv/torch < 0.4.1 checkpoints may lack BN batch counters; the model does not need them
    target_optional = (r".*\.num_batches_tracked",)

    def matches(self, original: dict[str, Any]) -> bool:
        model = original.get("model")
        if not isinstance(model, dict):
            return False
        backbone, head = model.get("backbone") or {}, model.get("decode_head") or {}
        return backbone.get("type") in VIT_TYPES and head.get("type") in HEAD_TYPES

    # ------------------------------------------------------------------------------------------------ config
    def build_config(self, original: dict[str, Any]) -> SetrConfig:
        model = original["model"]
        if model.get("type", "EncoderDecoder") != "EncoderDecoder":
            raise ConfigError(f"SETR models are EncoderDecoder segmentors, got {model.get('type')!r}")
        bb = {**_VIT_DEFAULTS, **model["backbone"]}
        kind = VIT_TYPES[bb["type"]]
        decode = model["decode_head"]
        aux = model.get("auxiliary_head") or []
        aux = [aux] if isinstance(aux, dict) else list(aux)
        heads = [decode] + aux
        for head in heads:
            self._check_common_head(head)
        ignore = {int(_get(h, "ignore_index")) for h in heads}
        if len(ignore) != 1:
            raise ConfigError(f"heads disagree on ignore_index: {sorted(ignore)}")
        num_labels = int(decode["num_classes"])
        if any(int(h["num_classes"]) != num_labels for h in heads):
            raise ConfigError("auxiliary heads predict a different number of classes than the decode head")

        kwargs: dict[str, Any] = dict(backbone=kind, num_labels=num_labels, semantic_loss_ignore_index=ignore.pop())
        if kind == "hlg":
            kwargs.update(self._hlg_backbone(bb))
            kwargs["qkv_bias"] = bool(bb.get("qkv_bias", False))
        else:
            if bb.get("hybrid_backbone") is not None:
                raise ConfigError("SETR with a hybrid CNN stem (HybridEmbed) is not supported: no release uses it")
            if bb.get("qk_scale") is not None:
                raise ConfigError("a custom qk_scale is not supported (every release uses head_dim ** -0.5)")
            image_size = list(int_pair(bb["img_size"]))
            kwargs.update(
                image_size=image_size, num_channels=int(bb["in_chans"]), patch_size=int(bb["patch_size"]),
                hidden_size=int(bb["embed_dim"]), num_hidden_layers=int(bb["depth"]),
                num_attention_heads=int(bb["num_heads"]), mlp_ratio=float(bb["mlp_ratio"]),
                qkv_bias=bool(bb["qkv_bias"]), pos_embed_align_corners=bool(bb["align_corners"]),
                hidden_dropout_prob=float(bb["drop_rate"]), attention_dropout_prob=float(bb["attn_drop_rate"]),
                drop_path_rate=float(bb["drop_path_rate"]),
            )
            if kind == "vit_mla":
                kwargs.update(mla_index=list(bb["mla_index"]), mla_channels=int(bb["mla_channels"]))
        kwargs["decode_head"] = self._head_spec(decode, kwargs, main=True)
        kwargs["auxiliary_heads"] = [self._head_spec(h, kwargs, main=False) for h in aux]

        kwargs.update(mmseg.test_protocol(original))
        label_set = label_set_for(num_labels, hint=str(original.get("dataset_type", "")))
        if label_set is not None:
            kwargs["id2label"] = label_set.id2label
        return SetrConfig(**kwargs)

    @staticmethod
    def _check_common_head(head: dict) -> None:
        if head.get("type") not in HEAD_TYPES:
            raise ConfigError(f"unsupported SETR head type {head.get('type')!r}")
        if _get(head, "input_transform") is not None:
            raise ConfigError(f"{head['type']}: input_transform={head['input_transform']!r} is not supported")
        if _get(head, "sampler") is not None:
            raise ConfigError(f"{head['type']}: pixel samplers (OHEM) are not supported")
        loss = head.get("loss_decode") or {"type": "CrossEntropyLoss"}
        if loss.get("type") != "CrossEntropyLoss" or loss.get("use_sigmoid") or loss.get("use_mask"):
            raise ConfigError(f"{head['type']}: only softmax CrossEntropyLoss is supported, got {loss}")
        if loss.get("class_weight") is not None:
            raise ConfigError(f"{head['type']}: class-weighted losses are not supported")

    def _head_spec(self, head: dict, kwargs: dict, main: bool) -> dict:
        kind = head["type"]
        weight = float((head.get("loss_decode") or {}).get("loss_weight", 1.0))
        align = bool(_get(head, "align_corners"))
        backbone = kwargs["backbone"]
        image_size = kwargs.get("image_size")
        img_size = list(int_pair(_get(head, "img_size"))) if kind in ("VisionTransformerUpHead", "VIT_MLAHead",
                                                                  "VIT_MLA_AUXIHead") else None
        # a head that resizes to the backbone's crop resizes to the input (the only input the original accepts)
        out_size = None if img_size == image_size else img_size
        if kind == "VisionTransformerUpHead":
            if backbone != "vit":
                raise ConfigError("VisionTransformerUpHead reads the tokens of a VisionTransformer backbone")
            if _get(head, "upsampling_method") != "bilinear":
                raise ConfigError(f"upsampling_method={head['upsampling_method']!r}: the original only computes "
                                  f"anything for 'bilinear'")
            embed_dim = int(_get(head, "embed_dim"))
            if embed_dim != kwargs["hidden_size"]:
                # released ADE20K / Pascal-Context PUP-DeiT configs say 1024 for a 768-wide backbone and cannot run
                # as written; the trained heads must have been as wide as the backbone (the checkpoint decides)
                logger.warning("head embed_dim %d != backbone embed_dim %d; using the backbone's width",
                               embed_dim, kwargs["hidden_size"])
            return vit_up_head(int(_get(head, "in_index")), int(_get(head, "num_conv")),
                               int(_get(head, "num_upsampe_layer")), bool(_get(head, "conv3x3_conv1x1")),
                               weight, align, out_size)
        if kind == "VIT_MLAHead":
            if backbone != "vit_mla" or not main:
                raise ConfigError("VIT_MLAHead is the main head of a VIT_MLA backbone")
            if int(_get(head, "mla_channels")) != kwargs["mla_channels"]:
                raise ConfigError(f"VIT_MLAHead mla_channels={head['mla_channels']} != backbone "
                                  f"mla_channels={kwargs['mla_channels']}")
            return mla_head(int(_get(head, "mlahead_channels")), weight, align, out_size)
        if kind == "VIT_MLA_AUXIHead":
            if backbone != "vit_mla":
                raise ConfigError("VIT_MLA_AUXIHead reads the MLA levels of a VIT_MLA backbone")
            if int(head["in_channels"]) != kwargs["mla_channels"]:
                raise ConfigError(f"VIT_MLA_AUXIHead in_channels={head['in_channels']} != mla_channels="
                                  f"{kwargs['mla_channels']}: the original builds no classifier or a wrong one")
            return mla_aux_head(int(_get(head, "in_index")), weight, align, out_size)
        if kind == "HLGUPHead":
            return hlg_up_head(int(head.get("channels", 512)), int(head.get("depth", 2)),
                               int(head.get("sr_ratio", 8)), int(head.get("fuse_level", 0)), weight, align)
        # FCNHead (HLG auxiliary)
        if int(head.get("num_convs", 2)) != 1 or head.get("concat_input", True):
            raise ConfigError("only the HLG configs' FCNHead (num_convs=1, concat_input=False) is supported")
        return fcn_head(int(_get(head, "in_index")), int(head["channels"]), weight, align)

    @staticmethod
    def _hlg_backbone(bb: dict) -> dict:
        if bb.get("h0_h1_method", "mean") not in (None, "mean", "avgpool"):
            raise ConfigError(f"HLG window tokens by {bb['h0_h1_method']!r}: only the mean (every release) is supported")
        if not bb.get("dynamic_position_bias", True):
            raise ConfigError("HLG without dynamic position bias is not supported (every release uses it)")
        return dict(
            image_size=list(int_pair(bb.get("img_size", 224))), num_channels=int(bb.get("in_chans", 3)),
            hlg_patch_size=int(bb.get("patch_size", 4)), hlg_embed_dims=list(bb["embed_dims"]),
            hlg_num_heads=list(bb["num_heads"]), hlg_depths=list(bb["depths"]),
            hlg_crs_interval=list(bb.get("crs_interval", (8, 4, 2, 1))),
            drop_path_rate=float(bb.get("drop_path_rate", 0.0)), hidden_dropout_prob=float(bb.get("drop_rate", 0.0)),
        )

    # --------------------------------------------------------------------------------------------- processor
    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        head = original["model"]["decode_head"]
        return mmseg.processor_kwargs(original, int(head["num_classes"]), int(_get(head, "ignore_index")))

    # ------------------------------------------------------------------------------------------------- rules
    def rules(self, config: SetrConfig) -> list[Rule]:
        rules = []
        if config.backbone != "hlg":  # HLGUPHead and FCNHead do classify with conv_seg
            rules.append(drop(r"(decode_head|auxiliary_head(\.\d+)?)\.conv_seg\.(weight|bias)",
                              "mmseg BaseDecodeHead.conv_seg: built from `channels` but never called by SETR heads"))
        # the original's conv-BN(-act) Sequentials (indices) are hf_seg ConvNormAct modules (``conv`` / ``bn``)
        rules += [
            Rule(rf"(backbone\.mla\.mla_p\d(?:_1x1)?)\.([01])\.({_PARAM})", _conv_norm_act),
            Rule(rf"(decode_head\.mlahead\.head\d)\.([0134])\.({_PARAM})", _conv_norm_act),
            Rule(rf"(backbone\.s0_conv\.\d)\.([01])\.({_PARAM})", _conv_norm_act),
            Rule(rf"(backbone\.block\d\.\d+\.down_proj\.proj)\.([01])\.({_PARAM})", _conv_norm_act),
            Rule(rf"((?:backbone\.block\d|decode_head\.decode_transformer)\.\d+\.spatial_smooth\.0)\.([013467])"
                 rf"\.({_PARAM})", _conv_norm_act),
        ]
        # VisionTransformerUpHead's conv_i + syncbn_fc_i pairs (its last conv_i classifies); HLGUPHead's conv_0 + BN
        rules.append(Rule(r"(?P<head>decode_head|auxiliary_head(?:\.\d+)?)\.(?P<kind>conv|syncbn_fc)_(?P<index>\d)\."
                          r"(?P<param>.+)", lambda m, t: _up_head_conv(config, m, t)))
        if config.backbone in ("vit", "hlg"):  # names kept as in the original
            rules.append(Rule(r"backbone\.(.+)", r"backbone.\1"))
        elif config.backbone == "vit_mla":
            rules += [
                Rule(r"backbone\.((patch_embed|blocks)\..+|cls_token|pos_embed)", r"backbone.vit.\1"),
                Rule(r"backbone\.((norm_\d|mla)\..+)", r"backbone.\1"),
            ]
        rules.append(Rule(r"decode_head\.(.+)", r"decode_head.\1"))
        if len(config.auxiliary_heads) == 1:
            rules.append(Rule(r"auxiliary_head\.(?!\d+\.)(.+)", r"auxiliary_heads.0.\1"))
        rules.append(Rule(r"auxiliary_head\.(\d+)\.(.+)", r"auxiliary_heads.\1.\2"))
        return rules
