"""Conversion of CSAIL checkpoints (``encoder_epoch_N.pth`` + ``decoder_epoch_N.pth``) and their configs.

Two config layouts: the repository's yacs ``.yaml`` (``MODEL.arch_encoder``, ``DATASET.num_class``, ...; 2019 on), or
for checkpoints of the 2018 code, which had no config files, train.py's arguments as a flat YAML mapping::

    arch_encoder: resnet50_dilated16
    arch_decoder: ppm_bilinear_deepsup
    fc_dim: 2048

(optional: ``num_class``, ``deep_sup_scale``, ``imgSize``, ``imgMaxSize``, ``padding_constant``; train.py's defaults
otherwise). Architecture names of either era are accepted in both layouts. A flat mapping also selects that code's
preprocessing: BGR input in 0..255 minus its mean, resized without antialiasing (cv2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...conversion import ConfigError, ConversionError, OriginalConverter, Rule, drop, load_checkpoint_file
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

_PARAM = r"weight|bias|running_mean|running_var|num_batches_tracked"
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


# The code from 2018-04 to 2018-11-28 (train.py/test.py arguments, no config files) named the architectures
# differently; the modules and their state-dict keys are the same as mit-semseg 1.0.0's (compared line by line).
_ARGPARSE_ERA_ENCODERS = {
    **{f"resnet{depth}_dilated8": f"resnet{depth}dilated" for depth in (18, 50, 101)},
    **{f"resnet{depth}_dilated16": f"resnet{depth}dilated16" for depth in (18, 50, 101)},
}
_ARGPARSE_ERA_DECODERS = {"c1_bilinear": "c1", "c1_bilinear_deepsup": "c1_deepsup", "ppm_bilinear": "ppm",
                          "ppm_bilinear_deepsup": "ppm_deepsup"}
# what the argparse-era code fed the network: BGR, 0..255, minus a per-channel mean (dataset.py until 2019-08-03)
_ARGPARSE_ERA_NORMALISATION = dict(channel_order="BGR", do_rescale=False,
                                   image_mean=[102.9801, 115.9465, 122.7717], image_std=[1.0, 1.0, 1.0])


def _architecture(name: str, aliases: dict[str, str]) -> str:
    name = str(name).lower()
    if name == "upernet_tmp":
        raise ConfigError("arch_decoder upernet_tmp: the original ModelBuilder names UPerNetTmp but never defines "
                          "it, so no checkpoint of it can exist")
    return aliases.get(name, name)


def original_fields(original: dict[str, Any]) -> dict[str, Any]:
    """The fields that define a CSAIL model, from a yacs config (MODEL/DATASET/TRAIN sections, since 2019-06) or
    the flat train.py/test.py arguments of the argparse era (``arch_encoder: resnet50_dilated8`` and so on).
    Names of either era are accepted in both."""
    if isinstance(original.get("MODEL"), dict):
        model, dataset, train = original["MODEL"], original.get("DATASET", {}), original.get("TRAIN", {})
        sizes, era = dataset.get("imgSizes", [450]), "yacs"
    else:  # argparse era: the defaults are train.py's / eval.py's
        model = dataset = train = original
        sizes, era = original.get("imgSize", [450]), "argparse"
    if "arch_encoder" not in model or "arch_decoder" not in model:
        raise ConfigError("a CSAIL config names both arch_encoder and arch_decoder")
    return dict(
        era=era,
        encoder=_architecture(model["arch_encoder"], _ARGPARSE_ERA_ENCODERS),
        decoder=_architecture(model["arch_decoder"], _ARGPARSE_ERA_DECODERS),
        fc_dim=int(model.get("fc_dim", 0)) or None,
        num_class=int(dataset.get("num_class", 150)),
        root_dataset=str(dataset.get("root_dataset", "")),
        deep_sup_scale=float(train.get("deep_sup_scale", 0.4)),
        img_sizes=[sizes] if isinstance(sizes, int) else list(sizes),
        img_max_size=int(dataset.get("imgMaxSize", 1000)),
        padding_constant=int(dataset.get("padding_constant", 8)),
    )


class CsailConverter(OriginalConverter):
    family = "csail"
    model_class = CsailForSemanticSegmentation
    # checkpoints saved before torch 0.4.1 have no BN batch counters; the model does not need them
    target_optional = (r".*\.num_batches_tracked",)

    def matches(self, original: dict[str, Any]) -> bool:
        if isinstance(original.get("MODEL"), dict):
            return "arch_encoder" in original["MODEL"]
        return "arch_encoder" in original and "arch_decoder" in original  # train.py arguments as a mapping

    def build_config(self, original: dict[str, Any]) -> CsailConfig:
        fields = original_fields(original)
        num_labels = fields["num_class"]
        label_set = label_set_for(num_labels, hint=fields["root_dataset"] + "ade20k")
        extra = {"id2label": label_set.id2label} if label_set else {}
        return CsailConfig(
            arch_encoder=fields["encoder"],
            arch_decoder=fields["decoder"],
            fc_dim=fields["fc_dim"],
            deep_sup_scale=fields["deep_sup_scale"],
            num_labels=num_labels,
            **extra,
        )

    def processor_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        fields = original_fields(original)
        sizes = fields["img_sizes"]
        # single-scale testing used 450 (the pre-config eval.py default); the configs list the multi-scale set
        short_side = 450 if 450 in sizes else sizes[len(sizes) // 2]
        kwargs = dict(
            resize_mode="short_side", short_side=short_side, max_size=fields["img_max_size"],
            size_divisor=fields["padding_constant"], antialias=True, do_reduce_labels=True, ignore_index=255,
        )
        if fields["era"] == "argparse":
            # that code resized with cv2.resize (bilinear, no antialiasing) and normalised in BGR
            kwargs.update(antialias=False, **_ARGPARSE_ERA_NORMALISATION)
        return kwargs

    def read_checkpoints(self, paths):
        encoder_path, decoder_path = encoder_decoder_paths(paths)
        state = {f"encoder.{k}": v for k, v in load_checkpoint_file(encoder_path).items()}
        state.update({f"decoder.{k}": v for k, v in load_checkpoint_file(decoder_path).items()})
        return state

    def rules(self, config: CsailConfig) -> list[Rule]:
        rules = [drop(r".*\.(_tmp_running_mean|_tmp_running_var|_running_iter)",
                      "SynchronizedBatchNorm2d bookkeeping; inference uses running_mean/var")]
        if config.arch_encoder.startswith("resnet"):
            stem = "|".join(_RESNET_STEM)
            rules += [
                Rule(rf"encoder\.({stem})\.(.+)", lambda m, t: {f"encoder.backbone.{_RESNET_STEM[m[1]]}.{m[2]}": t}),
                Rule(r"encoder\.(layer\d\..+)", r"encoder.backbone.\1"),
            ]
        elif config.arch_encoder == "mobilenetv2dilated":
            rules += [
                Rule(r"encoder\.features\.0\.0\.(.+)", r"encoder.conv_stem.\1"),
                Rule(r"encoder\.features\.0\.1\.(.+)", r"encoder.bn1.\1"),
                Rule(r"encoder\.features\.(?P<index>\d+)\.conv\.(?P<layer>\d+)\.(?P<rest>.+)", _mobilenet_block),
            ]
        else:  # hrnetv2 keeps the original's names, except its conv-BN(-ReLU) Sequentials
            rules += [
                Rule(rf"encoder\.((?:transition\d|stage\d\.\d+\.fuse_layers)\..+)\.0\.({_PARAM})", r"encoder.\1.conv.\2"),
                Rule(rf"encoder\.((?:transition\d|stage\d\.\d+\.fuse_layers)\..+)\.1\.({_PARAM})", r"encoder.\1.bn.\2"),
                Rule(r"encoder\.(.+)", r"encoder.\1"),
            ]
        if config.arch_decoder.startswith("ppm"):
            rules += [
                Rule(rf"decoder\.ppm\.(\d+)\.1\.({_PARAM})", r"decoder.ppm.projections.\1.conv.\2"),
                Rule(rf"decoder\.ppm\.(\d+)\.2\.({_PARAM})", r"decoder.ppm.projections.\1.bn.\2"),
                Rule(rf"decoder\.conv_last\.0\.({_PARAM})", r"decoder.conv_last.0.conv.\1"),
                Rule(rf"decoder\.conv_last\.1\.({_PARAM})", r"decoder.conv_last.0.bn.\1"),
                Rule(rf"decoder\.conv_last\.4\.({_PARAM})", r"decoder.conv_last.2.\1"),
            ]
        elif config.arch_decoder.startswith("upernet"):
            rules += [
                Rule(rf"decoder\.ppm_conv\.(\d+)\.0\.({_PARAM})", r"decoder.ppm.projections.\1.conv.\2"),
                Rule(rf"decoder\.ppm_conv\.(\d+)\.1\.({_PARAM})", r"decoder.ppm.projections.\1.bn.\2"),
                Rule(rf"decoder\.fpn_out\.(\d+)\.0\.0\.({_PARAM})", r"decoder.fpn_out.\1.conv.\2"),
                Rule(rf"decoder\.fpn_out\.(\d+)\.0\.1\.({_PARAM})", r"decoder.fpn_out.\1.bn.\2"),
                Rule(rf"decoder\.conv_last\.0\.0\.({_PARAM})", r"decoder.conv_last.0.conv.\1"),
                Rule(rf"decoder\.conv_last\.0\.1\.({_PARAM})", r"decoder.conv_last.0.bn.\1"),
            ]
        # the remaining conv-BN-ReLU Sequentials (``cbr``, ``ppm_last_conv``, ``fpn_in.i``): 0 -> conv, 1 -> bn
        rules += [
            Rule(rf"decoder\.((?:cbr|cbr_deepsup|ppm_last_conv|fpn_in\.\d+))\.0\.({_PARAM})", r"decoder.\1.conv.\2"),
            Rule(rf"decoder\.((?:cbr|cbr_deepsup|ppm_last_conv|fpn_in\.\d+))\.1\.({_PARAM})", r"decoder.\1.bn.\2"),
            Rule(r"decoder\.(.+)", r"decoder.\1"),
        ]
        return rules
