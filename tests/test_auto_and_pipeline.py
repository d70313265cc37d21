"""Registration with the Auto classes, the image-segmentation pipeline, remote code, and `hf-seg predict`."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hf_seg
from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation, pipeline

from fixture_utils import ROOT
from hf_seg.families import families
from hf_seg.zoo import build_model, build_processor

ADE_IMAGE = ROOT / "tests" / "data" / "ade20k" / "images" / "validation" / "ADE_val_00000002.jpg"


@pytest.fixture(scope="module")
def tiny_csail_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("csail")
    torch.manual_seed(0)
    model = build_model("csail-ade20k-mobilenetv2dilated-c1-deepsup").eval()
    model.save_pretrained(directory)
    build_processor("csail-ade20k-mobilenetv2dilated-c1-deepsup", short_side=128, max_size=256).save_pretrained(
        directory)
    return directory


def test_every_family_is_registered_without_name_clashes():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    for name, family in families().items():
        model_type = family.model_type
        assert model_type.startswith("hfseg_") and model_type not in CONFIG_MAPPING_NAMES, name
        assert isinstance(AutoConfig.for_model(model_type), family.config_class)
    assert set(families()) >= {"csail"}
    hf_seg.register_auto_classes()  # idempotent


def test_auto_classes_and_pipeline(tiny_csail_dir):
    model = AutoModelForSemanticSegmentation.from_pretrained(tiny_csail_dir)
    processor = AutoImageProcessor.from_pretrained(tiny_csail_dir)
    assert type(processor).__name__ == "HfSegImageProcessor"
    segmenter = pipeline("image-segmentation", model=str(tiny_csail_dir))
    image = Image.open(ADE_IMAGE)
    results = segmenter(image, subtask="semantic")
    assert results and all(r["mask"].size == image.size for r in results)
    assert {r["label"] for r in results} <= set(model.config.id2label.values())
    # the union of the masks covers the image exactly once
    coverage = sum(np.asarray(r["mask"], dtype=np.int64) // 255 for r in results)
    assert (coverage == 1).all()


def test_remote_code_loads_without_hf_seg(tiny_csail_dir, tmp_path):
    from hf_seg.remote_code import save_with_remote_code

    model = AutoModelForSemanticSegmentation.from_pretrained(tiny_csail_dir).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_csail_dir)
    save_with_remote_code(model, tmp_path, processor)
    # the caller's objects are not changed (a later save_pretrained must not point at code files it lacks)
    assert getattr(model.config, "auto_map", None) is None and getattr(processor, "auto_map", None) is None
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSemanticSegmentation"] == "modeling_csail.CsailForSemanticSegmentation"
    x = torch.randn(1, 3, 64, 64)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(pixel_values=x).logits
    script = f"""
import sys, torch
sys.modules['hf_seg'] = None  # as for a user without hf_seg installed
from transformers import AutoModelForSemanticSegmentation, AutoImageProcessor
model = AutoModelForSemanticSegmentation.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
assert type(model).__module__.startswith('transformers_modules'), type(model).__module__
with torch.no_grad():
    torch.save(model(pixel_values=torch.load({str(tmp_path / 'x.pt')!r})).logits, {str(tmp_path / 'y.pt')!r})
print(type(processor).__name__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HfSegImageProcessor" in result.stdout
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)
    # without trust_remote_code the load is refused
    refused = subprocess.run([sys.executable, "-c", script.replace("trust_remote_code=True", "trust_remote_code=False")],
                             capture_output=True, text=True, cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert refused.returncode != 0


def test_hf_seg_predict_writes_overlay_and_labels(tiny_csail_dir, tmp_path):
    out = tmp_path / "overlay.png"
    result = subprocess.run([sys.executable, "-m", "hf_seg.cli", "predict", str(ADE_IMAGE), "--model",
                             str(tiny_csail_dir), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    overlay, labels = Image.open(out), Image.open(tmp_path / "overlay_labels.png")
    image = Image.open(ADE_IMAGE)
    assert labels.size == image.size and overlay.mode == "RGB" and labels.mode == "L"
    # the overlay carries a colour legend of the classes present on its right
    assert overlay.height == image.height and overlay.width > image.width
    assert np.asarray(labels).max() < 150


def test_hf_seg_models_lists_the_zoo():
    result = subprocess.run([sys.executable, "-m", "hf_seg.cli", "models"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    assert "csail-ade20k-resnet50dilated-ppm-deepsup" in result.stdout and "42.14" in result.stdout


def test_hf_seg_pipeline_runs_the_test_protocol_and_reads_16_bit(tiny_csail_dir, tmp_path):
    """transformers' pipeline runs whole-image and reads 16-bit files as white; hf_seg's pipeline class slides the
    window of a slide-mode model and reads files with the one decoder, giving hf-seg predict's labels."""
    from hf_seg.pipeline import segmentation_pipeline
    from hf_seg.predict import segment

    model = AutoModelForSemanticSegmentation.from_pretrained(tiny_csail_dir).eval()
    model.config.test_mode, model.config.test_crop_size, model.config.test_stride = "slide", [64, 64], [48, 48]
    model.save_pretrained(tmp_path / "slide")
    AutoImageProcessor.from_pretrained(tiny_csail_dir).save_pretrained(tmp_path / "slide")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "slide")
    grey = np.array(Image.open(ADE_IMAGE).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    Image.fromarray(grey, mode="L").save(tmp_path / "eight.png")
    segmenter = segmentation_pipeline(str(tmp_path / "slide"))
    expected = segment(str(tmp_path / "eight.png"), model, processor)
    for path in ("eight.png", "sixteen.png"):
        segments = segmenter(str(tmp_path / path))
        labels = np.zeros(expected.shape, np.int64)
        label2id = {name: int(k) for k, name in model.config.id2label.items()}
        for s in segments:
            labels[np.asarray(s["mask"]) > 0] = label2id[s["label"]]
        assert np.array_equal(labels, expected), path
    # the slide protocol matters: whole-image inference gives other labels on this image
    from hf_seg.inference import predict

    whole = predict(model, processor(Image.open(tmp_path / "eight.png"))["pixel_values"], mode="whole",
                    output_size=expected.shape).argmax(1)[0].numpy()
    assert not np.array_equal(whole, expected)
