"""Conversion of UN-EPT checkpoints (amazon-science/unified-ept, mmseg 0.11 style configs)."""

from __future__ import annotations

import math
from typing import Any

from ...conversion import ConfigError, ConversionError, OriginalConverter, Rule, mmseg
from ...label_sets import label_set_for
from .configuration_unept import UnEptConfig
from .modeling_unept import UnEptForSemanticSegmentation

# mmseg ResNetV1c deep stem (stem.N) -> timm deep stem (conv1.N, bn1)
_STEM = {"0": "conv1.0", "1": "conv1.1", "3": "conv1.3", "4": "conv1.4", "6": "conv1.6", "7": "bn1"}
_BOUNDARY_HEAD = {"0": "0.conv", "1": "0.bn", "3": "1"}
# mmseg ResNet defaults (mmseg 0.11 ``ResNet.__init__``) for keys an original config may omit
_RESNET_DEFAULTS = dict(stem_channels=64, base_channels=64, num_stages=4, strides=(1, 2, 2, 2),
                        dilations=(1, 1, 1, 1), out_indices=(0, 1, 2, 3), style="pytorch", contract_dilation=False)


def _refuse_if_set(cfg: dict, keys, what: str) -> None:
    for key in keys:
        value = cfg.get(key)
        if value not in (None, False, (), []) and not (isinstance(value, (tuple, list)) and not any(value)):
            raise ConfigError(f"{what} option {key}={value!r} is not supported")


class UnEptConverter(OriginalConverter):
    family = "unept"
    model_class = UnEptForSemanticSegmentation

    def matches(self, original: dict[str, Any]) -> bool:
        model = original.get("model")
        return isinstance(model, dict) and model.get("type") == "UN_EPT"

    # --------------------------------------------------------------------------------------------- config
    def build_config(self, original: dict[str, Any]) -> UnEptConfig:
        model = original["model"]
        test_cfg = mmseg.test_cfg(original)
        if "num_classes" not in test_cfg or "num_queries" not in test_cfg:
            raise ConfigError("UN-EPT configs give num_classes and num_queries in test_cfg; this one does not")
        num_labels = int(test_cfg["num_classes"])
        num_queries = int(test_cfg["num_queries"])
        levels = int(model.get("L", 3))
        if levels != 3:
            raise ConfigError(f"L={levels}: the original always builds three pyramid convs, so only L=3 runs")

        loss = model.get("loss_decode") or {}
        if loss.get("type", "CrossEntropyLoss") != "CrossEntropyLoss" or loss.get("use_sigmoid", False):
            raise ConfigError(f"loss_decode {loss} is not supported (UN-EPT uses softmax CrossEntropyLoss)")
        if loss.get("class_weight") is not None:
            raise ConfigError("loss_decode.class_weight is not supported")
        loss_weight = float(loss.get("loss_weight", 1.0))

        kwargs = dict(
            hidden_size=int(model["feat_dim"]), num_attention_heads=int(model["heads"]), num_points=int(model["k"]),
            num_feature_levels=levels, encoder_layers=int(model["depth"]), decoder_layers=int(model["depth"]),
            ffn_dim=int(model["hidden_dim"]), dropout=float(model.get("dropout", 0.1)),
            activation=model.get("activation", "relu"), num_queries=num_queries,
            seg_loss_weight=0.8 * loss_weight, refine_loss_weight=loss_weight,
            semantic_loss_ignore_index=int(model.get("ignore_index", 255)), num_labels=num_labels,
        )
        kwargs.update(self._backbone_kwargs(model["backbone_cfg"]))

        # the query embedding is added position-wise to the stride-8 grid of the crop the model was trained on
        crop = test_cfg.get("crop_size") or original.get("crop_size")
        layout = None
        if crop is not None and (crop[0] // 8) * (crop[1] // 8) == num_queries:
            layout = [crop[0] // 8, crop[1] // 8]
        elif math.isqrt(num_queries) ** 2 == num_queries:
            layout = [math.isqrt(num_queries)] * 2
        else:
            raise ConfigError(f"num_queries={num_queries} is neither the crop's stride-8 grid nor a square")
        kwargs["query_layout"] = layout
        # the original puts the decoder reference points on a square grid; for a non-square training crop the
        # weights were trained with that mismatch, so keep it (square crops: both layouts are the same)
        kwargs["decoder_layout"] = "original" if layout[0] != layout[1] else "resize"
        if math.isqrt(num_queries) ** 2 != num_queries:
            raise ConfigError(f"num_queries={num_queries} is not a square: the original cannot run this model")

        kwargs.update(mmseg.test_protocol(original))
        label_set = label_set_for(num_labels, hint=str(original.get("dataset_type", "")))
        if label_set is not None:
            kwargs["id2label"] = label_set.id2label
        return UnEptConfig(**kwargs)

    @staticmethod
    def _backbone_kwargs(backbone: dict[str, Any]) -> dict[str, Any]:
        kind = backbone.get("type")
        if kind == "DeiT":
            return dict(backbone="deit", deit_img_size=int(backbone["img_size"]),
                        deit_patch_size=int(backbone["patch_size"]), deit_embed_dim=int(backbone["embed_dim"]),
                        deit_depth=int(backbone["bb_depth"]), deit_num_heads=int(backbone["num_heads"]),
                        deit_mlp_ratio=float(backbone["mlp_ratio"]))
        if kind != "ResNetV1c":
            raise ConfigError(f"backbone type {kind!r} is not supported (UN-EPT builds DeiT or ResNetV1c)")
        cfg = {**_RESNET_DEFAULTS, **backbone}
        _refuse_if_set(cfg, ("dcn", "plugins", "multi_grid", "avg_down"), "ResNetV1c")
        if cfg.get("deep_stem") is False:
            raise ConfigError("ResNetV1c with deep_stem=False is not supported")
        if int(cfg["num_stages"]) != 4:
            raise ConfigError(f"ResNetV1c with num_stages={cfg['num_stages']} is not supported (UN-EPT uses 4)")
        norm = cfg.get("norm_cfg") or {"type": "BN"}
        if norm.get("type") not in ("BN", "SyncBN", "BN2d"):
            raise ConfigError(f"norm_cfg {norm} is not supported (BN/SyncBN)")
        return dict(backbone="resnet_v1c", resnet_depth=int(cfg["depth"]), stem_channels=int(cfg["stem_channels"]),
                    base_channels=int(cfg["base_channels"]), strides=list(cfg["strides"]),
                    dilations=list(cfg["dilations"]), contract_dilation=bool(cfg["contract_dilation"]),
                    resnet_style=cfg["style"], resnet_out_indices=list(cfg["out_indices"]),
                    norm_eps=float(norm.get("eps", 1e-5)))

    # ------------------------------------------------------------------------------------------ processor
    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        num_labels = int(mmseg.test_cfg(original)["num_classes"])
        return mmseg.processor_kwargs(original, num_labels, int(original["model"].get("ignore_index", 255)))

    # ------------------------------------------------------------------------------------------ checkpoint
    def rules(self, config: UnEptConfig) -> list[Rule]:
        rules = []
        if config.backbone == "resnet_v1c":
            rules += [
                Rule(r"backbone\.stem\.(\d+)\.(.+)", lambda m, t: self._stem(m, t)),
                Rule(r"backbone\.(layer\d\..+)", r"backbone.body.\1"),
            ]
        else:
            rules.append(Rule(r"backbone\.((?:cls_token|dist_token|pos_embed)|(?:patch_embed\.proj|blocks\.\d+)\..+)",
                              r"backbone.\1"))
        rules += [
            Rule(r"layers\.(\d+)\.(weight|bias)", r"pyramid_convs.\1.\2"),
            Rule(r"(context_branch\..+)", r"\1"),
            Rule(r"query_embed\.weight", "query_embed.weight"),
            Rule(r"spatial_branch\.convblock(\d)\.conv1\.(.+)",
                 lambda m, t: {f"spatial_branch.blocks.{int(m[1]) - 1}.conv.{m[2]}": t}),
            Rule(r"spatial_branch\.convblock(\d)\.bn\.(.+)",
                 lambda m, t: {f"spatial_branch.blocks.{int(m[1]) - 1}.bn.{m[2]}": t}),
            # the boundary heads are Sequential(conv, BN, ReLU, conv): a ConvNormAct, then the classifier conv
            Rule(r"(mask|dir)_head\.(\d)\.(.+)", lambda m, t: {
                f"{'boundary' if m[1] == 'mask' else 'direction'}_head.{_BOUNDARY_HEAD[m[2]]}.{m[3]}": t}),
            Rule(r"cls\.(weight|bias)", r"classifier.\1"),
        ]
        return rules

    @staticmethod
    def _stem(match, tensor):
        index, rest = match[1], match[2]
        if index not in _STEM:
            raise ConversionError(f"unexpected ResNetV1c stem layer backbone.stem.{index}")
        return {f"backbone.body.{_STEM[index]}.{rest}": tensor}
