"""CSAIL family: parity against the original code (PyPI mit-semseg, built live), model behaviour, presets."""

import json
import os
import re
from pathlib import Path
import subprocess
import sys

import pytest
import torch

import hf_seg  # noqa: F401  (registers the Auto classes)
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from csail_reference import Reference, available
from fixture_utils import ROOT, assert_close
from hf_seg.conversion import ConfigError, ConversionError, convert_original
from hf_seg.modeling.csail import CsailConfig, CsailConverter, CsailForSemanticSegmentation
from hf_seg.modeling.csail.configuration_csail import DECODERS
from hf_seg.zoo import build_config, list_models

# every released pair (README table) plus pairs the code supports beyond it
RELEASED = [(e.config["arch_encoder"], e.config["arch_decoder"]) for e in list_models("csail")]
EXTRA = [("resnet50dilated", "ppm"), ("resnet18dilated", "c1"), ("resnet50", "upernet_lite"), ("resnet18", "c1")]
FC_DIM = {"mobilenetv2dilated": 320, "resnet18dilated": 512, "resnet18dilated16": 512, "resnet18": 512, "hrnetv2": 720}

needs_reference = pytest.mark.skipif(not available(), reason="mit-semseg (the original code) is not installed")
# small inputs through full-size models: OpenMP threads only add contention (7x slower on a loaded 2-core machine)
pytestmark = pytest.mark.usefixtures("single_thread")


def convert_with(config, checkpoints, out):
    cmd = [sys.executable, str(ROOT / "scripts" / "convert_original.py"), "--config", str(config),
           "--checkpoint", *map(str, checkpoints), "--output", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


@needs_reference
@pytest.mark.parity
@pytest.mark.parametrize("encoder,decoder", RELEASED + EXTRA, ids=lambda v: str(v))
def test_parity_with_original(encoder, decoder, tmp_path, record_property):
    ref = Reference(encoder, decoder, FC_DIM.get(encoder, 2048), seed=len(encoder) + len(decoder))
    if (encoder, decoder) == RELEASED[0]:  # one pair through the command line (a fresh process costs ~10 s)
        result = convert_with(ref.config_path, ref.checkpoints, tmp_path)
        assert result.returncode == 0, result.stderr
    else:  # the same routine in this process: config, tensors, folder
        convert_original(ref.config_path, ref.checkpoints, output_dir=tmp_path)
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(model, CsailForSemanticSegmentation)
    check_parity(ref, model, AutoImageProcessor.from_pretrained(tmp_path), f"{encoder}+{decoder}", record_property)


def check_parity(ref, model, processor, what, record_property):
    """Logits, the training loss (labels at the decoder's resolution and at full size) and test.py's prediction."""
    expected = ref.logits()
    with torch.no_grad():
        logits = model(pixel_values=ref.pixel_values).logits
    diff = assert_close(logits, expected, f"{what} logits")
    record_property("max_abs_diff", diff)
    record_property("logits_scale", expected.abs().max().item())

    # the training loss: labels at the decoder's resolution (what the original loader produces), -1 = ignore
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 150, (1, *expected.shape[-2:]), generator=generator)
    labels[:, : labels.shape[1] // 4] = -1
    expected_loss = ref.loss(labels)
    ours = labels.masked_fill(labels == -1, model.config.semantic_loss_ignore_index)
    with torch.no_grad():
        loss = model(pixel_values=ref.pixel_values, labels=ours).loss
    assert_close(loss, expected_loss, "loss")
    record_property("loss_diff", (loss - expected_loss).abs().item())
    # full-resolution labels (each label repeated over its stride block) shrink to the same targets
    stride = ref.pixel_values.shape[-1] // expected.shape[-1]
    assert stride == model.config.output_stride
    full = ours.repeat_interleave(stride, 1).repeat_interleave(stride, 2)
    with torch.no_grad():
        assert_close(model(pixel_values=ref.pixel_values, labels=full).loss, expected_loss, "loss, full-size labels")

    # test.py's single-scale output: probabilities at the image size; our post-processing gives their argmax
    size = tuple(ref.pixel_values.shape[-2:])
    (pred,) = processor.post_process_semantic_segmentation(
        model(pixel_values=ref.pixel_values), target_sizes=[size])
    assert torch.equal(pred, ref.probabilities(size)[0].argmax(0))


# Output stride 16 (ResnetDilated(dilate_scale=16), the README's resnetXX_dilated16 of 2018) with every decoder the
# encoder can feed (UPerNet's lateral convs are sized for ResNet-50/101 maps, in the original too). The configs use
# the names of both eras: 2018's train.py arguments (a flat mapping) with 2018's names, the yacs layout with 2018's
# names, and the yacs layout with ours.
ARGPARSE_ERA_DECODER = {"c1": "c1_bilinear", "c1_deepsup": "c1_bilinear_deepsup", "ppm": "ppm_bilinear",
                        "ppm_deepsup": "ppm_bilinear_deepsup", "upernet": "upernet", "upernet_lite": "upernet_lite"}
CONFIG_STYLE = {"c1": "yacs", "ppm": "yacs", "c1_deepsup": "argparse", "ppm_deepsup": "argparse",
                "upernet": "argparse", "upernet_lite": "ours"}


def _feeds(encoder, decoder):
    try:
        CsailConfig(arch_encoder=encoder, arch_decoder=decoder)
    except ValueError:
        return False
    return True


# ResNet-101 takes 10-20 s a pair on a loaded 2-core machine: CI runs its PPM_deepsup pair (the released decoder)
DILATED16 = [pytest.param(e, d, id=f"{e}+{d}",
                          marks=[pytest.mark.slow] if e.startswith("resnet101") and d != "ppm_deepsup" else [])
             for e in ("resnet18dilated16", "resnet50dilated16", "resnet101dilated16") for d in DECODERS
             if _feeds(e, d)]


@needs_reference
@pytest.mark.parity
@pytest.mark.parametrize("encoder,decoder", DILATED16)
def test_parity_with_original_output_stride_16(encoder, decoder, record_property):
    style = CONFIG_STYLE[decoder]
    names = (encoder, decoder) if style == "ours" else (encoder.replace("dilated16", "_dilated16"),
                                                        ARGPARSE_ERA_DECODER[decoder])
    ref = Reference(encoder, decoder, FC_DIM.get(encoder, 2048), seed=len(encoder) + len(decoder), input_hw=(64, 96),
                    config_names=names, config_style="yacs" if style == "ours" else style)
    model, processor, _ = convert_original(ref.config_path, ref.checkpoints)
    assert (model.config.arch_encoder, model.config.arch_decoder) == (encoder, decoder)
    assert model.config.output_stride == (4 if decoder.startswith("upernet") else 16)
    check_parity(ref, model, processor, f"{encoder}+{decoder}", record_property)
    if style == "argparse":  # that code's input: BGR in 0..255 minus its mean, cv2 (not antialiased) resizing
        assert (processor.channel_order, processor.do_rescale, processor.antialias) == ("BGR", False, False)
        assert processor.image_mean == [102.9801, 115.9465, 122.7717] and processor.image_std == [1.0, 1.0, 1.0]
    else:
        assert (processor.channel_order, processor.do_rescale, processor.antialias) == ("RGB", True, True)


@needs_reference
def test_dilated16_places_dilation_like_the_original(tmp_path):
    """timm's output_stride=16 against ResnetDilated(dilate_scale=16), conv by conv: kernel, stride, dilation and
    padding, including layer4's first block (its strided conv gets dilation 1, the BasicBlock's second conv 2)."""
    from hf_seg.modeling.csail.original import build_original

    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    for depth in (18, 50, 101):
        with torch.device("meta"):
            ours = CsailForSemanticSegmentation(CsailConfig(arch_encoder=f"resnet{depth}dilated16", arch_decoder="c1",
                                                            num_labels=2)).encoder.backbone
            original, _ = build_original(f"resnet{depth}dilated16", "c1", 2048, 2, empty)

        def geometry(module):
            return {name: (m.kernel_size, m.stride, m.dilation, m.padding) for name, m in module.named_modules()
                    if isinstance(m, torch.nn.Conv2d) and name.startswith("layer")}

        assert geometry(ours) == geometry(original), depth
        assert geometry(original)["layer4.0.conv1" if depth == 18 else "layer4.0.conv2"][1:3] == ((1, 1), (1, 1))
        assert geometry(original)["layer4.1.conv1" if depth == 18 else "layer4.1.conv2"][2] == (2, 2)


@needs_reference
def test_release_reference_reads_configs_of_both_eras():
    """``original_logits`` (what scripts/release.py checks converted weights against) builds dilated16 encoders and
    reads 2018's train.py arguments and names."""
    from hf_seg.conversion import read_config
    from hf_seg.modeling.csail.original import original_logits

    ref = Reference("resnet18dilated16", "c1_deepsup", 512, config_names=("resnet18_dilated16", "c1_bilinear_deepsup"),
                    config_style="argparse")
    assert torch.equal(original_logits(read_config(ref.config_path), ref.checkpoints, ref.pixel_values), ref.logits())


def test_converter_reads_argparse_era_names_and_refuses_unknown_ones(tmp_path):
    converter = CsailConverter()
    old = {"arch_encoder": "resnet50_dilated8", "arch_decoder": "ppm_bilinear_deepsup", "fc_dim": 2048}
    assert converter.matches(old)
    config = converter.build_config(old)
    assert (config.arch_encoder, config.arch_decoder, config.num_labels) == ("resnet50dilated", "ppm_deepsup", 150)
    yacs = {"MODEL": {"arch_encoder": "ResNet18_dilated16", "arch_decoder": "c1_bilinear", "fc_dim": 512},
            "DATASET": {"num_class": 150}}
    config = converter.build_config(yacs)
    assert (config.arch_encoder, config.arch_decoder, config.output_stride) == ("resnet18dilated16", "c1", 16)
    # a yacs config means the code of 2019 and later (RGB, ImageNet mean/std), train.py arguments the 2018 code (BGR)
    assert converter.processor_kwargs(yacs).get("channel_order", "RGB") == "RGB"
    assert converter.processor_kwargs(old)["channel_order"] == "BGR"
    with pytest.raises(ConfigError, match="UPerNetTmp"):
        converter.build_config({"arch_encoder": "resnet50", "arch_decoder": "upernet_tmp"})
    with pytest.raises(ValueError, match="encoder must be one of"):
        converter.build_config({"arch_encoder": "resnet34_dilated8", "arch_decoder": "c1_bilinear"})
    assert not converter.matches({"arch_encoder": "resnet50"})  # a mapping that names no decoder is not ours


@needs_reference
def test_converter_refuses_mismatched_checkpoints(tmp_path):
    # in this process (the command line prints the same message: test_converter_refuses_other_family_configs)
    ref = Reference("mobilenetv2dilated", "c1_deepsup", 320)

    def refused(checkpoints, out):
        with pytest.raises(ConversionError) as err:
            convert_original(ref.config_path, checkpoints, output_dir=tmp_path / out)
        assert not (tmp_path / out / "model.safetensors").exists()
        return str(err.value)

    # the decoder file of a c1 model has no deep-supervision branch: missing keys are listed
    other = Reference("mobilenetv2dilated", "c1", 320)
    message = refused([ref.checkpoints[0], other.checkpoints[1]], "a")
    assert "missing" in message and "conv_last_deepsup" in message
    # an extra tensor is an unknown key
    state = torch.load(ref.checkpoints[1], weights_only=True)
    state["surprise.weight"] = torch.zeros(1)
    extra = tmp_path / "decoder_extra.pth"
    torch.save(state, extra)
    assert "decoder.surprise.weight" in refused([ref.checkpoints[0], extra], "b")
    # a truncated file
    truncated = tmp_path / "decoder_truncated.pth"
    truncated.write_bytes(ref.checkpoints[1].read_bytes()[:1000])
    assert "cannot read" in refused([ref.checkpoints[0], truncated], "c")
    # the checkpoint of another architecture: its keys are listed
    r18 = Reference("resnet18dilated", "c1_deepsup", 512)
    assert "unknown source keys" in refused(r18.checkpoints, "d")


def test_converter_refuses_other_family_configs(tmp_path):
    config = tmp_path / "config.py"
    config.write_text("model = dict(type='EncoderDecoder', backbone=dict(type='Unknown'))\n")
    checkpoint = tmp_path / "ckpt.pth"
    torch.save({"a": torch.zeros(1)}, checkpoint)
    result = convert_with(config, [checkpoint], tmp_path / "out")
    assert result.returncode == 2 and "not a config of any family" in result.stderr
    # configs are data: code in them is refused, never run
    evil = tmp_path / "evil.py"
    evil.write_text("import os\nmodel = dict()\n")
    with pytest.raises(ConfigError, match="imports are not allowed"):
        convert_original(evil, [checkpoint], output_dir=tmp_path / "out")


# ---------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("kwargs,match", [
    ({"arch_encoder": "resnet34"}, "arch_encoder must be one of"),
    ({"arch_decoder": "psp"}, "arch_decoder must be one of"),
    ({"arch_encoder": "hrnetv2", "arch_decoder": "c1_deepsup"}, "second-to-last"),
    ({"arch_encoder": "resnet18", "arch_decoder": "upernet"}, "ResNet-50/101"),
    ({"arch_encoder": "resnet18dilated16", "arch_decoder": "upernet_lite"}, "ResNet-50/101"),
    ({"arch_encoder": "resnet50dilated16", "fc_dim": 512}, "fc_dim=512"),
    ({"arch_encoder": "resnet50dilated", "fc_dim": 512}, "fc_dim=512"),
])
def test_config_refuses_what_cannot_be_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CsailConfig(**kwargs)


def test_presets_cover_the_readme_table_with_full_size_models():
    # the nine rows of the README at the fixtures' commit plus ResNet50dilated + C1_deepsup of its 2018 versions
    facts = Path(os.environ.get("HF_SEG_FIXTURES", "")) / "csail" / "zoo.json"  # the full fixture set, when given
    rows = json.loads(facts.read_text())["models"] if os.environ.get("HF_SEG_FIXTURES") and facts.is_file() else None
    names = {e.name for e in list_models("csail")}
    assert len(names) == 10
    if rows is not None:
        assert names == {"csail-" + r["name"].replace("_", "-") for r in rows} | {
            "csail-ade20k-resnet50dilated-c1-deepsup"}
    for entry in list_models("csail"):
        config = build_config(entry.name)
        assert config.num_labels == 150 and config.id2label[0] == "wall"
        with torch.device("meta"):
            model = CsailForSemanticSegmentation(config)
        params = sum(p.numel() for p in model.parameters())
        assert 2e6 < params < 1e8, (entry.name, params)


# The README's performance table as it stood from 2018-09-22 to 2018-11-27 (commits 0539224..b19b335), the version
# with the ResNet50_dilated8 + c1_bilinear_deepsup row and the training-time column, plus the two MobileNetV2 rows
# added in December 2018 (training times as printed then): (mIoU, pixel acc., overall) single / multi-scale,
# training time. Later versions changed some numbers (the rows' notes say which); the cards carry both.
SEED_README_TABLE = {
    "csail-ade20k-resnet18dilated-c1-deepsup": ((33.82, 76.05, 54.94), (35.34, 77.41, 56.38), (0.42, 20, 8.4)),
    "csail-ade20k-resnet18dilated-ppm-deepsup": ((38.00, 78.64, 58.32), (38.81, 79.29, 59.05), (1.1, 20, 22.0)),
    "csail-ade20k-resnet50dilated-c1-deepsup": ((34.88, 76.54, 55.71), (35.49, 77.53, 56.66), (1.38, 20, 27.6)),
    "csail-ade20k-resnet50dilated-ppm-deepsup": ((41.26, 79.73, 60.50), (42.04, 80.23, 61.14), (1.67, 20, 33.4)),
    "csail-ade20k-resnet101dilated-ppm-deepsup": ((42.19, 80.59, 61.39), (42.53, 80.91, 61.72), (3.82, 25, 95.5)),
    "csail-ade20k-resnet50-upernet": ((40.44, 79.80, 60.12), (41.55, 80.23, 60.89), (1.75, 20, 35.0)),
    "csail-ade20k-resnet101-upernet": ((41.98, 80.63, 61.34), (42.66, 81.01, 61.84), (2.5, 25, 62.5)),
    "csail-ade20k-mobilenetv2dilated-c1-deepsup": ((32.39, 75.75, 54.07), (33.75, 76.75, 55.25), (0.8, 20, 16)),
    "csail-ade20k-mobilenetv2dilated-ppm-deepsup": ((35.76, 77.77, 56.27), (36.28, 78.26, 57.27), (0.9, 20, 18.0)),
}


def test_cards_carry_every_number_of_the_seed_readme_table():
    from hf_seg.model_cards import CARD_FILE

    for name, (single, multi, training) in SEED_README_TABLE.items():
        text = (ROOT / "model_cards" / name / CARD_FILE).read_text()
        printed = {float(v) for v in re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])", text)}
        missing = [v for v in (*single, *multi, *training) if float(v) not in printed]
        assert not missing, f"{name}: the card lacks {missing}"
        hours_per_epoch, epochs, total = training
        assert f"{hours_per_epoch:g} x {epochs} = " in text and f"= {total:g}" in text, name
