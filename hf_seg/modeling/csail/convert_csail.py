"""Conversion of CSAIL checkpoints (``encoder_epoch_N.pth`` + ``decoder_epoch_N.pth``) and their yacs configs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...conversion import ConversionError, OriginalConverter, Rule, drop, load_checkpoint_file
from ...label_sets import label_set_for
from .configuration_csail import CsailConfig
from .modeling_csail import CsailForSemanticSegmentation

# CSAIL's MobileNetV2 ``features`` index -> (stage, block) of timm's ``blocks``; index 0 is the stem
_MOBILENET_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)
_MOBILENET_BLOCK = {}
_index = 1
for _stage, _depth in enumerate(_MOBILENET_STAGE_DEPTHS):
    for _block in range(_depth):
        _MOBILENET_BLOCK[_index] = (_stage, _block)
        _index += 1
# inside ``features.k.conv``: the expansion-1 block is dw, bn, relu6, pw, bn; the others pw, bn, relu6, dw, bn, relu6, pwl, bn
_MOBILENET_LAYER = {
    True: {"0": "conv_dw", "1": "bn1", "3": "conv_pw", "4": "bn2"},
    False: {"0": "conv_pw", "1": "bn1", "3": "conv_dw", "4": "bn2", "6": "conv_pwl", "7": "bn3"},
}

_RESNET_STEM = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4", "conv3": "conv1.6",
                "bn3": "bn1"}


def _mobilenet_block(match: re.Match, tensor):
    index, layer, rest = int(match["index"]), match["layer"], match["rest"]
    if index not in _MOBILENET_BLOCK:
        raise ConversionError(f"MobileNetV2 has no block features.{index}")
    stage, block = _MOBILENET_BLOCK[index]
    names = _MOBILENET_LAYER[index == 1]
    if layer not in names:
        raise ConversionError(f"unexpected layer features.{index}.conv.{layer}")
    return {f"encoder.blocks.{stage}.{block}.{names[layer]}.{rest}": tensor}


def encoder_decoder_paths(paths) -> tuple:
    """(encoder, decoder) checkpoint paths: by file name when the names say which is which, else in the given order."""
    if len(paths) != 2:
        raise ConversionError("CSAIL models are two files: the encoder and the decoder checkpoint")
    named = {("encoder" if "encoder" in Path(p).name else "decoder" if "decoder" in Path(p).name else None): p
             for p in paths}
    return (named["encoder"], named["decoder"]) if set(named) == {"encoder", "decoder"} else tuple(paths)


class CsailConverter(OriginalConverter):
    family = "csail"
    model_class = CsailForSemanticSegmentation
    # checkpoints saved before torch 0.4.1 have no BN batch counters; the model does not need them
    target_optional = (r".*\.num_batches_tracked",)

    def matches(self, original: dict[str, Any]) -> bool:
        return isinstance(original.get("MODEL"), dict) and "arch_encoder" in original["MODEL"]

    def build_config(self, original: dict[str, Any]) -> CsailConfig:
        model, dataset = original["MODEL"], original.get("DATASET", {})
        num_labels = int(dataset.get("num_class", 150))
        label_set = label_set_for(num_labels, hint=str(dataset.get("root_dataset", "")) + "ade20k")
        extra = {"id2label": label_set.id2label} if label_set else {}
        return CsailConfig(
            encoder=model["arch_encoder"].lower(),
            decoder=model["arch_decoder"].lower(),
            fc_dim=int(model.get("fc_dim", 0)) or None,
            deep_sup_scale=float(original.get("TRAIN", {}).get("deep_sup_scale", 0.4)),
            num_labels=num_labels,
            **extra,
        )

    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        dataset = original.get("DATASET", {})
        sizes = dataset.get("imgSizes", [450])
        sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        # single-scale testing used 450 (the pre-config eval.py default); the configs list the multi-scale set
        short_side = 450 if 450 in sizes else sizes[len(sizes) // 2]
        return dict(
            resize_mode="short_side", short_side=short_side, max_size=int(dataset.get("imgMaxSize", 1000)),
            size_divisor=int(dataset.get("padding_constant", 8)), antialias=True,
            do_reduce_labels=True, ignore_index=255,
        )

    def read_checkpoints(self, paths):
        encoder_path, decoder_path = encoder_decoder_paths(paths)
        state = {f"encoder.{k}": v for k, v in load_checkpoint_file(encoder_path).items()}
        state.update({f"decoder.{k}": v for k, v in load_checkpoint_file(decoder_path).items()})
        return state

    def rules(self, config: CsailConfig) -> list[Rule]:
        rules = [drop(r".*\.(_tmp_running_mean|_tmp_running_var|_running_iter)",
                      "SynchronizedBatchNorm2d bookkeeping; inference uses running_mean/var")]
        if config.encoder.startswith("resnet"):
            stem = "|".join(_RESNET_STEM)
            rules += [
                Rule(rf"encoder\.({stem})\.(.+)", lambda m, t: {f"encoder.backbone.{_RESNET_STEM[m[1]]}.{m[2]}": t}),
                Rule(r"encoder\.(layer\d\..+)", r"encoder.backbone.\1"),
            ]
        elif config.encoder == "mobilenetv2dilated":
            rules += [
                Rule(r"encoder\.features\.0\.0\.(.+)", r"encoder.conv_stem.\1"),
                Rule(r"encoder\.features\.0\.1\.(.+)", r"encoder.bn1.\1"),
                Rule(r"encoder\.features\.(?P<index>\d+)\.conv\.(?P<layer>\d+)\.(?P<rest>.+)", _mobilenet_block),
            ]
        else:  # hrnetv2 keeps the original's names
            rules.append(Rule(r"encoder\.(.+)", r"encoder.\1"))
        if config.decoder.startswith("ppm"):
            rules += [
                Rule(r"decoder\.ppm\.(\d+)\.1\.(.+)", r"decoder.ppm.projections.\1.0.\2"),
                Rule(r"decoder\.ppm\.(\d+)\.2\.(.+)", r"decoder.ppm.projections.\1.1.\2"),
            ]
        elif config.decoder.startswith("upernet"):
            rules.append(Rule(r"decoder\.ppm_conv\.(\d+)\.(.+)", r"decoder.ppm.projections.\1.\2"))
        rules.append(Rule(r"decoder\.(.+)", r"decoder.\1"))
        return rules
