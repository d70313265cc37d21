"""CSAIL family: parity against the original code (PyPI mit-semseg, built live), model behaviour, presets."""

import json
import re
import subprocess
import sys

import pytest
import torch

import hf_seg  # noqa: F401  (registers the Auto classes)
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from csail_reference import Reference, available
from fixture_utils import ROOT, assert_close
from hf_seg.modeling.csail import CsailConfig, CsailForSemanticSegmentation
from hf_seg.modeling.csail import tiny_config as csail_tiny_config
from hf_seg.zoo import build_config, list_models

# every released pair (README table) plus pairs the code supports beyond it
RELEASED = [(e.config["encoder"], e.config["decoder"]) for e in list_models("csail")]
EXTRA = [("resnet50dilated", "ppm"), ("resnet18dilated", "c1"), ("resnet50", "upernet_lite"), ("resnet18", "c1")]
FC_DIM = {"mobilenetv2dilated": 320, "resnet18dilated": 512, "resnet18": 512, "hrnetv2": 720}

needs_reference = pytest.mark.skipif(not available(), reason="mit-semseg (the original code) is not installed")


def convert(ref, out_dir):
    cmd = [sys.executable, str(ROOT / "scripts" / "convert_original.py"), "--config", str(ref.config_path),
           "--checkpoint", *map(str, ref.checkpoints), "--output", str(out_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


@needs_reference
@pytest.mark.parity
@pytest.mark.parametrize("encoder,decoder", RELEASED + EXTRA, ids=lambda v: str(v))
def test_parity_with_original(encoder, decoder, tmp_path, record_property):
    ref = Reference(encoder, decoder, FC_DIM.get(encoder, 2048), seed=len(encoder) + len(decoder))
    result = convert(ref, tmp_path)
    assert result.returncode == 0, result.stderr
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(model, CsailForSemanticSegmentation)

    expected = ref.logits()
    with torch.no_grad():
        logits = model(pixel_values=ref.pixel_values).logits
    diff = assert_close(logits, expected, f"{encoder}+{decoder} logits")
    record_property("max_abs_diff", diff)

    # the training loss: labels at the decoder's resolution (what the original loader produces), -1 = ignore
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 150, (1, *expected.shape[-2:]), generator=generator)
    labels[:, : labels.shape[1] // 4] = -1
    expected_loss = ref.loss(labels)
    ours = labels.masked_fill(labels == -1, model.config.semantic_loss_ignore_index)
    with torch.no_grad():
        loss = model(pixel_values=ref.pixel_values, labels=ours).loss
    assert_close(loss, expected_loss, "loss")
    # full-resolution labels (each label repeated over its stride block) shrink to the same targets
    stride = ref.pixel_values.shape[-1] // expected.shape[-1]
    full = ours.repeat_interleave(stride, 1).repeat_interleave(stride, 2)
    with torch.no_grad():
        assert_close(model(pixel_values=ref.pixel_values, labels=full).loss, expected_loss, "loss, full-size labels")

    # test.py's single-scale output: probabilities at the image size; our post-processing gives their argmax
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    size = tuple(ref.pixel_values.shape[-2:])
    (pred,) = processor.post_process_semantic_segmentation(
        model(pixel_values=ref.pixel_values), target_sizes=[size])
    assert torch.equal(pred, ref.probabilities(size)[0].argmax(0))


@needs_reference
def test_converter_refuses_mismatched_checkpoints(tmp_path):
    ref = Reference("mobilenetv2dilated", "c1_deepsup", 320)
    # the decoder file of a c1 model has no deep-supervision branch: missing keys are listed
    other = Reference("mobilenetv2dilated", "c1", 320)
    result = convert_with(ref.config_path, [ref.checkpoints[0], other.checkpoints[1]], tmp_path / "a")
    assert result.returncode != 0 and "missing" in result.stderr and "conv_last_deepsup" in result.stderr
    # an extra tensor is an unknown key
    state = torch.load(ref.checkpoints[1], weights_only=True)
    state["surprise.weight"] = torch.zeros(1)
    extra = tmp_path / "decoder_extra.pth"
    torch.save(state, extra)
    result = convert_with(ref.config_path, [ref.checkpoints[0], extra], tmp_path / "b")
    assert result.returncode != 0 and "decoder.surprise.weight" in result.stderr
    # a truncated file
    truncated = tmp_path / "decoder_truncated.pth"
    truncated.write_bytes(ref.checkpoints[1].read_bytes()[:1000])
    result = convert_with(ref.config_path, [ref.checkpoints[0], truncated], tmp_path / "c")
    assert result.returncode != 0 and "cannot read" in result.stderr
    # the checkpoint of another architecture: shape mismatches are listed
    r18 = Reference("resnet18dilated", "c1_deepsup", 512)
    result = convert_with(ref.config_path, r18.checkpoints, tmp_path / "d")
    assert result.returncode != 0 and "unknown source keys" in result.stderr
    assert not (tmp_path / "d" / "model.safetensors").exists()


def convert_with(config, checkpoints, out):
    cmd = [sys.executable, str(ROOT / "scripts" / "convert_original.py"), "--config", str(config),
           "--checkpoint", *map(str, checkpoints), "--output", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


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
    result = convert_with(evil, [checkpoint], tmp_path / "out")
    assert result.returncode == 2 and "imports are not allowed" in result.stderr


# ---------------------------------------------------------------------------------------------- behaviour
def tiny_model(decoder="c1_deepsup", encoder="mobilenetv2dilated", num_labels=5):
    torch.manual_seed(0)
    return CsailForSemanticSegmentation(csail_tiny_config(encoder=encoder, decoder=decoder, num_labels=num_labels))


def test_forward_contract_and_hidden_states():
    model = tiny_model().eval()
    x = torch.randn(2, 3, 64, 96)
    out = model(pixel_values=x, output_hidden_states=True)
    assert out.logits.shape == (2, 5, 8, 12)
    assert [h.shape[1] for h in out.hidden_states] == [24, 32, 64, 160, 320]
    assert out.loss is None
    as_tuple = model(pixel_values=x, return_dict=False)
    assert torch.equal(as_tuple[0], out.logits)


def test_loss_backward_and_label_checks():
    model = tiny_model().train()
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 5, (2, 64, 64))
    labels[0, :10] = 255
    out = model(pixel_values=x, labels=labels)
    out.loss.backward()
    assert model.decoder.conv_last_deepsup.weight.grad is not None  # deep supervision takes part in the loss
    with pytest.raises(ValueError, match="outside"):
        model(pixel_values=x, labels=torch.full((2, 64, 64), 7))


def test_save_load_round_trip(tmp_path):
    model = tiny_model(decoder="ppm_deepsup").eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded(pixel_values=x).logits)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "hfseg_csail"


@pytest.mark.parametrize("kwargs,match", [
    ({"encoder": "resnet34"}, "encoder must be one of"),
    ({"decoder": "psp"}, "decoder must be one of"),
    ({"encoder": "hrnetv2", "decoder": "c1_deepsup"}, "second-to-last"),
    ({"encoder": "resnet18", "decoder": "upernet"}, "ResNet-50/101"),
    ({"encoder": "resnet50dilated", "fc_dim": 512}, "fc_dim=512"),
])
def test_config_refuses_what_cannot_be_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CsailConfig(**kwargs)


def test_presets_cover_the_readme_table_with_full_size_models():
    # the nine rows of the README at the fixtures' commit plus ResNet50dilated + C1_deepsup of its 2018 versions
    rows = json.loads((ROOT.parent / "shared" / "fixtures" / "csail" / "zoo.json").read_text())["models"] \
        if (ROOT.parent / "shared").is_dir() else None
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


@pytest.mark.slow
def test_torch_compile_smoke():
    model = tiny_model(decoder="c1").eval()
    compiled = torch.compile(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close(compiled(pixel_values=x).logits, model(pixel_values=x).logits, "compiled")
