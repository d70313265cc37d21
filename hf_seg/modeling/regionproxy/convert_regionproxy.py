"""Conversion of the original RegionProxy checkpoints (mmseg 0.17 + timm 0.4.12) and their mmseg configs."""

from __future__ import annotations

import re
from typing import Any

import torch

from ...conversion import ConfigError, ConversionError, OriginalConverter, Rule, mmseg
from ...label_sets import label_set_for
from ...sizes import int_pair
from .configuration_regionproxy import HYBRID_CHANNELS, HYBRID_EMBED_LAYERS, RegionProxyConfig
from .modeling_regionproxy import RegionProxyForSemanticSegmentation

_STEM_PREFIX = "backbone.patch_embed.backbone."
_ACTIVATIONS = {"ReLU": "relu", "ReLU6": "relu6", "GELU": "gelu", "SiLU": "silu", "Swish": "silu",
                "LeakyReLU": "leaky_relu"}


def _split_qkv_free(match: re.Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    # nn.MultiheadAttention's in_proj packs q, k, v in that order along dim 0, exactly like timm's qkv Linear
    return {f"backbone.blocks.{match[1]}.attn.qkv.{match[2]}": tensor}


class RegionProxyConverter(OriginalConverter):
    family = "regionproxy"
    model_class = RegionProxyForSemanticSegmentation
    target_optional = (r".*\.num_batches_tracked",)

    # ------------------------------------------------------------------------------------------- config
    def matches(self, original: dict[str, Any]) -> bool:
        model = original.get("model")
        return isinstance(model, dict) and (model.get("decode_head") or {}).get("type") == "ProxyHead"

    def build_config(self, original: dict[str, Any], state: dict[str, torch.Tensor] | None = None):
        model = original["model"]
        backbone, head = dict(model["backbone"]), dict(model["decode_head"])
        if model.get("auxiliary_head"):
            raise ConfigError("RegionProxy releases have no auxiliary head; this config adds one")
        if model.get("neck"):
            raise ConfigError("RegionProxy releases have no neck; this config adds one")
        if model.get("type", "EncoderDecoder") != "EncoderDecoder":
            raise ConfigError(f"segmentor {model.get('type')!r} is not RegionProxy's EncoderDecoder")

        kind = backbone.get("type")
        if kind == "VisionTransformer":
            backbone_type, hybrid = "vit", {}
        elif kind == "VisionTransformerHybrid":
            backbone_type, hybrid = "hybrid", self._hybrid_fields(backbone, state)
        else:
            raise ConfigError(f"backbone {kind!r} is not a RegionProxy backbone (VisionTransformer[Hybrid])")
        norm_cfg = backbone.get("norm_cfg", {"type": "LN"})
        if norm_cfg.get("type") != "LN":
            raise ConfigError(f"backbone norm {norm_cfg.get('type')!r} is not supported (LayerNorm only)")
        if (backbone.get("act_cfg") or {"type": "GELU"}).get("type") != "GELU":
            raise ConfigError(f"backbone activation {backbone['act_cfg']} is not supported (GELU only)")
        if backbone.get("num_fcs", 2) != 2:
            raise ConfigError(f"num_fcs={backbone['num_fcs']} is not supported (the releases use 2)")
        if backbone.get("output_cls_token", False):
            raise ConfigError("output_cls_token=True would feed [map, cls] pairs to ProxyHead, which the original "
                              "cannot run")
        if backbone_type == "vit" and backbone.get("patch_pad", "corner") not in ("corner", None):
            raise ConfigError("only bottom/right patch padding (the original's) is supported")

        head_type_args = self._head_fields(head)
        num_labels = int(head["num_classes"])
        test = mmseg.test_protocol(original)
        dataset_type = str(original.get("dataset_type", ""))
        label_set = label_set_for(num_labels, hint=dataset_type)
        extra = {"id2label": label_set.id2label} if label_set else {}
        out_indices = backbone.get("out_indices", 11)
        if isinstance(out_indices, int) and out_indices == -1:  # mmseg: an int -1 means the last layer
            out_indices = int(backbone.get("num_layers", 12)) - 1

        return RegionProxyConfig(
            backbone_type=backbone_type,
            image_size=list(int_pair(backbone.get("img_size", 224), "backbone.img_size")),
            patch_size=int(backbone.get("patch_size", 16)),
            # the timm hybrid stem is always built for 3 channels (the original ignores in_channels there)
            num_channels=int(backbone.get("in_channels", 3)) if backbone_type == "vit" else 3,
            hidden_size=int(backbone.get("embed_dims", 768)),
            num_hidden_layers=int(backbone.get("num_layers", 12)),
            num_attention_heads=int(backbone.get("num_heads", 12)),
            mlp_ratio=float(backbone.get("mlp_ratio", 4)),
            qkv_bias=bool(backbone.get("qkv_bias", True)),
            layer_norm_eps=float(norm_cfg.get("eps", 1e-5)),
            hidden_dropout_prob=float(backbone.get("drop_rate", 0.0)),
            attention_dropout_prob=float(backbone.get("attn_drop_rate", 0.0)),
            drop_path_rate=float(backbone.get("drop_path_rate", 0.0)),
            with_cls_token=bool(backbone.get("with_cls_token", True)),
            distilled=bool(backbone.get("deit", False)),
            final_norm=bool(backbone.get("final_norm", False)),
            patch_norm=bool(backbone.get("patch_norm", False)) if backbone_type == "vit" else False,
            interpolate_mode=backbone.get("interpolate_mode", "bicubic"),
            out_indices=out_indices,
            **hybrid,
            **head_type_args,
            num_labels=num_labels,
            semantic_loss_ignore_index=int(head.get("ignore_index", 255)),
            **test,
            **extra,
        )

    @staticmethod
    def _hybrid_fields(backbone: dict[str, Any], state) -> dict[str, Any]:
        if not backbone.get("use_origin", True):
            raise ConfigError("use_origin=False (mmseg ResNet stem) is not supported; the releases use the timm "
                              "ResNetV2 stem (use_origin=True)")
        embed_type = backbone.get("embed_type")
        if embed_type not in HYBRID_EMBED_LAYERS:
            raise ConfigError(f"hybrid embed_type {embed_type!r} unknown; known: {sorted(HYBRID_EMBED_LAYERS)}")
        layers = HYBRID_EMBED_LAYERS[embed_type]
        stem, channels = 64, list(HYBRID_CHANNELS[: len(layers)])
        if state is not None:  # widths as the checkpoint has them (the fixtures shrink the stem)
            key = f"{_STEM_PREFIX}stem.conv.weight"
            if key in state:
                stem = int(state[key].shape[0])
            for i in range(len(layers)):
                key = f"{_STEM_PREFIX}stages.{i}.blocks.0.conv3.weight"
                if key in state:
                    channels[i] = int(state[key].shape[0])
        return dict(hybrid_layers=list(layers), hybrid_stem_channels=stem, hybrid_channels=channels)

    @staticmethod
    def _head_fields(head: dict[str, Any]) -> dict[str, Any]:
        if head.get("input_transform", "multiple_select") != "multiple_select":
            raise ConfigError(f"ProxyHead input_transform {head['input_transform']!r}: only multiple_select is "
                              "supported")
        in_channels = head.get("in_channels")
        if isinstance(in_channels, int) or len(in_channels) != 2 or in_channels[0] != in_channels[1]:
            raise ConfigError(f"ProxyHead in_channels {in_channels} must be two equal backbone widths")
        norm = head.get("norm_cfg") or {}
        if norm.get("type") not in ("BN", "SyncBN", "BN2d"):
            raise ConfigError(f"ProxyHead norm {norm.get('type')!r} is not supported (BN/SyncBN)")
        act = (head.get("act_cfg") or {"type": "ReLU"}).get("type")
        if act not in _ACTIVATIONS:
            raise ConfigError(f"ProxyHead activation {act!r} is not supported ({sorted(_ACTIVATIONS)})")
        loss = head.get("loss_decode", {"type": "CrossEntropyLoss"})
        if isinstance(loss, (list, tuple)):
            if len(loss) != 1:
                raise ConfigError("several decode losses are not supported (the releases use one CrossEntropyLoss)")
            loss = loss[0]
        if loss.get("type") != "CrossEntropyLoss" or loss.get("use_sigmoid") or loss.get("use_mask"):
            raise ConfigError(f"decode loss {loss} is not supported (softmax CrossEntropyLoss only)")
        if loss.get("reduction", "mean") != "mean":
            raise ConfigError(f"loss reduction {loss['reduction']!r} is not supported (mean only)")
        if head.get("sampler"):
            raise ConfigError("pixel samplers are not supported (the releases use none)")
        in_index = head.get("in_index", (-2, -1))
        return dict(
            in_index=list(in_index),
            head_channels=int(head["channels"]),
            region_res=list(int_pair(head.get("region_res", (4, 4)), "decode_head.region_res")),
            head_act=_ACTIVATIONS[act],
            head_norm_eps=float(norm.get("eps", 1e-5)),
            align_corners=bool(head.get("align_corners", False)),
            loss_weight=float(loss.get("loss_weight", 1.0)),
            class_weight=loss.get("class_weight"),
        )

    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        head = original["model"]["decode_head"]
        return mmseg.processor_kwargs(original, int(head["num_classes"]), int(head.get("ignore_index", 255)))

    # -------------------------------------------------------------------------------------------- weights
    def rules(self, config: RegionProxyConfig) -> list[Rule]:
        block = r"backbone\.layers\.(\d+)\."
        return [
            Rule(r"backbone\.(cls_token|dist_token|pos_embed)", r"backbone.\1"),
            Rule(r"backbone\.patch_embed\.projection\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
            Rule(r"backbone\.patch_embed\.norm\.(weight|bias)", r"backbone.patch_embed.norm.\1"),
            Rule(r"backbone\.patch_embed\.backbone\.(.+)", r"backbone.patch_embed.backbone.\1"),
            Rule(r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
            Rule(block + r"ln1\.(weight|bias)", r"backbone.blocks.\1.norm1.\2"),
            Rule(block + r"ln2\.(weight|bias)", r"backbone.blocks.\1.norm2.\2"),
            Rule(block + r"attn\.attn\.in_proj_(weight|bias)", _split_qkv_free),
            Rule(block + r"attn\.attn\.out_proj\.(weight|bias)", r"backbone.blocks.\1.attn.proj.\2"),
            Rule(block + r"ffn\.layers\.0\.0\.(weight|bias)", r"backbone.blocks.\1.mlp.fc1.\2"),
            Rule(block + r"ffn\.layers\.1\.(weight|bias)", r"backbone.blocks.\1.mlp.fc2.\2"),
            Rule(r"backbone\.ln1\.(weight|bias)", r"backbone.norm.\1"),
            Rule(r"decode_head\.mlp\.0\.0\.(weight|bias)", r"head.classifier.\1"),
            Rule(r"decode_head\.affinity_head\.0\.depthwise_conv\.conv\.weight", r"head.affinity_depthwise.conv.weight"),
            Rule(r"decode_head\.affinity_head\.0\.depthwise_conv\.bn\.(.+)", r"head.affinity_depthwise.bn.\1"),
            Rule(r"decode_head\.affinity_head\.0\.pointwise_conv\.conv\.weight", r"head.affinity_pointwise.conv.weight"),
            Rule(r"decode_head\.affinity_head\.0\.pointwise_conv\.bn\.(.+)", r"head.affinity_pointwise.bn.\1"),
            Rule(r"decode_head\.affinity_head\.1\.conv\.(weight|bias)", r"head.affinity_logits.\1"),
        ]

    def config_for(self, original: dict[str, Any], source: dict[str, torch.Tensor]):
        """The hybrid stem's widths are read from the checkpoint's tensors."""
        return self.build_config(original, source)


__all__ = ["RegionProxyConverter", "ConversionError"]
