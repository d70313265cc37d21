"""Conversion of SeMask-FPN checkpoints (mmseg 0.11 fork, ``SeMaskSwinTransformer`` + ``BranchFPNHead``)."""

from __future__ import annotations

from typing import Any

from ...conversion import ConfigError, OriginalConverter, Rule, drop, mmseg
from ...label_sets import label_set_for
from .configuration_semask import SeMaskConfig
from .modeling_semask import SeMaskForSemanticSegmentation

# defaults of the original classes, used when a config leaves a key out
_BACKBONE_DEFAULTS = dict(
    pretrain_img_size=224, patch_size=4, num_cls=150, sem_window_size=7, num_sem_blocks=[1, 1, 1, 1], in_chans=3,
    embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0, qkv_bias=True,
    qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.2, ape=False, patch_norm=True,
    out_indices=(0, 1, 2, 3),
)
_HEAD_DEFAULTS = dict(dropout_ratio=0.1, cate_w=0.4, align_corners=False, ignore_index=255, sampler=None,
                      act_cfg=dict(type="ReLU"), conv_cfg=None)


def _refuse(condition: bool, message: str) -> None:
    if condition:
        raise ConfigError(f"SeMask-FPN config cannot be converted: {message}")


def _head_conv(match, tensor):
    """``scale_heads.i`` interleaves ConvModules (even indices) with parameter-free upsamplings (odd indices)."""
    index = int(match["index"])
    if index % 2:
        raise ConfigError(f"unexpected parameter at an upsampling position: {match.string}")
    return {f"decode_head.scale_heads.{match['scale']}.{index // 2}.{match['part']}.{match['rest']}": tensor}


class SeMaskConverter(OriginalConverter):
    family = "semask"
    model_class = SeMaskForSemanticSegmentation

    def matches(self, original: dict[str, Any]) -> bool:
        model = original.get("model")
        return isinstance(model, dict) and isinstance(model.get("backbone"), dict) \
            and model["backbone"].get("type") == "SeMaskSwinTransformer"

    def build_config(self, original: dict[str, Any]) -> SeMaskConfig:
        model = original["model"]
        backbone = {**_BACKBONE_DEFAULTS, **model["backbone"]}
        head = {**_HEAD_DEFAULTS, **(model.get("decode_head") or {})}
        _refuse(model.get("type", "EncoderDecoder") != "EncoderDecoder", f"segmentor {model.get('type')!r}")
        _refuse(head.get("type") != "BranchFPNHead", f"decode head {head.get('type')!r} (expected BranchFPNHead)")
        _refuse(model.get("neck") is not None, "the released models have no neck")
        _refuse(model.get("auxiliary_head") is not None, "the released models have no auxiliary head")
        _refuse(backbone["qk_scale"] is not None, "qk_scale other than None (SDPA uses head_dim ** -0.5)")
        depths = list(backbone["depths"])
        num_stages = len(depths)
        stages = list(range(num_stages))
        _refuse(list(backbone["out_indices"]) != stages, f"out_indices {backbone['out_indices']} (needs {stages})")
        _refuse(list(head.get("in_index", [])) != stages, f"in_index {head.get('in_index')} (needs {stages})")
        widths = [backbone["embed_dim"] * 2**i for i in stages]
        _refuse(list(head.get("in_channels", [])) != widths, f"in_channels {head.get('in_channels')} != {widths}")
        strides = list(head.get("feature_strides", []))
        _refuse(len(strides) != num_stages or any(s != strides[0] * 2**i for i, s in enumerate(strides))
                or strides[0] != backbone["patch_size"],
                f"feature_strides {strides} (the backbone's strides are {[backbone['patch_size'] * 2**i for i in stages]})")
        _refuse(head["conv_cfg"] is not None, "conv_cfg other than None")
        _refuse((head["act_cfg"] or {}).get("type") != "ReLU", f"act_cfg {head['act_cfg']}")
        norm = (head.get("norm_cfg") or {}).get("type")
        _refuse(norm not in ("BN", "SyncBN"), f"head norm_cfg {head.get('norm_cfg')} (expected BN/SyncBN)")
        _refuse(head.get("input_transform", "multiple_select") != "multiple_select", "input_transform")
        loss = head.get("loss_decode", {"type": "CrossEntropyLoss"})
        _refuse(loss.get("type") != "CrossEntropyLoss" or loss.get("use_sigmoid", False) or loss.get("use_mask", False),
                f"loss_decode {loss} (only softmax CrossEntropyLoss)")
        sampler = head["sampler"]
        if sampler is not None:
            _refuse(sampler.get("type") != "OHEMPixelSampler", f"sampler {sampler}")
            sampler = {"min_kept": 100000, "thresh": None, **sampler}

        num_labels = int(head["num_classes"])
        label_set = label_set_for(num_labels, hint=str(original.get("dataset_type", "")))
        extra = {"id2label": label_set.id2label} if label_set else {}
        test = mmseg.test_protocol(original)
        return SeMaskConfig(
            embed_dim=backbone["embed_dim"], depths=depths, num_heads=backbone["num_heads"],
            window_size=backbone["window_size"], semantic_window_size=backbone["sem_window_size"],
            num_semantic_blocks=backbone["num_sem_blocks"], num_prior_classes=backbone["num_cls"],
            mlp_ratio=backbone["mlp_ratio"], qkv_bias=backbone["qkv_bias"], drop_rate=backbone["drop_rate"],
            attn_drop_rate=backbone["attn_drop_rate"], drop_path_rate=backbone["drop_path_rate"],
            patch_size=backbone["patch_size"], num_channels=backbone["in_chans"], patch_norm=backbone["patch_norm"],
            use_absolute_pos_embed=backbone["ape"], pretrain_img_size=backbone["pretrain_img_size"],
            decoder_channels=head["channels"], decoder_dropout=head["dropout_ratio"],
            align_corners=head["align_corners"], prior_loss_weight=head["cate_w"],
            loss_weight=loss.get("loss_weight", 1.0), class_weight=loss.get("class_weight"),
            ohem_min_kept=sampler["min_kept"] if sampler else None, ohem_thresh=sampler["thresh"] if sampler else None,
            semantic_loss_ignore_index=head["ignore_index"], num_labels=num_labels, **test, **extra,
        )

    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        head = original["model"].get("decode_head") or {}
        return mmseg.processor_kwargs(original, int(head["num_classes"]), int(head.get("ignore_index", 255)))

    def rules(self, config: SeMaskConfig) -> list[Rule]:
        return [
            drop(r"backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index",
                 "fixed index buffer; timm's WindowAttention recomputes it from the window size"),
            Rule(r"backbone\.norm(\d+)\.(weight|bias)", r"backbone.norms.\1.\2"),
            Rule(r"backbone\.(patch_embed|layers|absolute_pos_embed)(.*)", r"backbone.\1\2"),
            Rule(r"decode_head\.scale_heads\.(?P<scale>\d+)\.(?P<index>\d+)\.(?P<part>conv|bn)\.(?P<rest>.+)",
                 _head_conv),
            Rule(r"decode_head\.conv_seg\.(weight|bias)", r"decode_head.conv_seg.\1"),
        ]

