"""hf_seg.fusion.optimize_for_inference: the rewritten model computes the same logits, refuses to be saved or trained,
and leaves alone what it cannot prove safe."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

import hf_seg
from hf_seg import fusion
from hf_seg.families import family_module, get_family
from hf_seg.fusion import optimize_for_inference

# every family's tiny config; the hybrid RegionProxy has timm's standardised convs, the dilated ResNet a PPM
CASES = {
    "setr": ("setr", {}),
    "regionproxy": ("regionproxy", {}),
    "regionproxy-hybrid": ("regionproxy", dict(backbone_type="hybrid", image_size=[64, 64], patch_size=32,
                                               out_indices=[-1, 1], num_hidden_layers=2, hybrid_layers=[1, 1, 1, 1],
                                               hybrid_stem_channels=32, hybrid_channels=[128, 128, 128, 128])),
    "unept": ("unept", dict(msda_backend="pytorch")),
    "semask": ("semask", {}),
    "csail-mobilenetv2-c1": ("csail", {}),
    "csail-resnet18dilated-ppm": ("csail", dict(encoder="resnet18dilated", decoder="ppm")),
}


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from the identity, so a wrong fold cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _model(case: str, **extra) -> nn.Module:
    family, overrides = CASES[case]
    torch.manual_seed(0)
    module = family_module(family)
    model = get_family(family).model_class(module.tiny_config(**overrides, **extra)).eval()
    _randomise_norms(model)
    return model


def _logits(model, x):
    with torch.no_grad():
        return model(pixel_values=x).logits


def _inputs(size=64, batch=2, seed=1):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# channels_last too where convolutions carry the model (the ViT-only ones convert just their heads)
FORMATS = [(case, False) for case in CASES] + [(case, True) for case in CASES if case not in ("setr", "regionproxy")]


@pytest.mark.parametrize("case,channels_last", FORMATS,
                         ids=[f"{c}-{'channels_last' if cl else 'contiguous'}" for c, cl in FORMATS])
def test_fused_logits_equal_unfused(case, channels_last):
    model = _model(case)
    x = _inputs(96)
    expected = _logits(model, x)
    bns = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    optimize_for_inference(model, x[:1, :, :64, :64], channels_last=channels_last)
    report = model.hf_seg_inference_optimization
    assert report.channels_last is channels_last
    if bns:
        assert report.folded_batch_norms > 0
    # each family has convolution + BatchNorm pairs on its eval path; the folded ones are gone from the model
    remaining = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert remaining == bns - report.folded_batch_norms
    if case == "regionproxy-hybrid":
        assert report.standardised_convs > 0
    got = _logits(model, x)  # a different size and batch than the example
    assert got.shape == expected.shape
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4 * scale  # the project's fp32 parity tolerance


def test_every_folded_batch_norm_of_a_csail_encoder():
    """CSAIL's MobileNetV2 runs timm's BatchNormAct2d (BN + ReLU6 in one module): the BN folds and the activation
    stays; only the deep-supervision head's BN (not run in eval) is left."""
    model = _model("csail-mobilenetv2-c1")
    x = _inputs(64)
    expected = _logits(model, x)
    optimize_for_inference(model, x[:1], channels_last=False)
    left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert left and all("aux" in n or "deepsup" in n for n in left), left
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())
    assert torch.allclose(_logits(model, x), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_standardised_weights_are_bit_identical():
    """timm's StdConv2dSame recomputes its standardised weight each forward; the cached one is the same tensor, so
    the output is bit-for-bit the same (odd input size: the dynamic 'same' padding stays)."""
    from timm.layers import StdConv2d, StdConv2dSame

    class Stem(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = StdConv2dSame(3, 8, 7, stride=2, eps=1e-8)
            self.b = StdConv2d(8, 4, 3, eps=1e-5)

        def forward(self, pixel_values):
            return self.b(self.a(pixel_values))

    torch.manual_seed(0)
    model = Stem().eval()
    x = torch.randn(1, 3, 37, 45)
    expected = _logits_plain(model, x)
    optimize_for_inference(model, x, channels_last=False)
    assert model.hf_seg_inference_optimization.standardised_convs == 2
    assert type(model.a) is not StdConv2dSame
    assert torch.equal(_logits_plain(model, x), expected)


def _logits_plain(model, x):
    with torch.no_grad():
        return model(pixel_values=x)


class _Shared(nn.Module):
    """Conv outputs that a fold would corrupt: one also feeds a residual, one is changed in place before its BN, one
    BN runs twice; plus a pair that is safe."""

    def __init__(self):
        super().__init__()
        self.conv_residual, self.bn_residual = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv_inplace, self.bn_inplace = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv_twice, self.bn_twice = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)
        self.conv_ok, self.bn_ok = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, pixel_values):
        y = self.conv_residual(pixel_values)
        x = self.bn_residual(y) + y
        z = self.conv_inplace(x)
        z += 1.0
        x = self.bn_inplace(z)
        x = self.bn_twice(self.conv_twice(x)) + self.bn_twice(x)
        return self.bn_ok(self.conv_ok(x))


def test_only_safe_pairs_fold():
    torch.manual_seed(0)
    model = _Shared().eval()
    _randomise_norms(model)
    x = torch.randn(1, 3, 16, 16)
    expected = _logits_plain(model, x)
    optimize_for_inference(model, x, channels_last=False)
    assert model.hf_seg_inference_optimization.folded_batch_norms == 1
    assert isinstance(model.bn_ok, nn.Identity)
    for name in ("bn_residual", "bn_inplace", "bn_twice"):
        assert isinstance(getattr(model, name), nn.BatchNorm2d), name
    assert torch.allclose(_logits_plain(model, x), expected, atol=1e-5)


def test_parametrized_conv_is_left_alone():
    """A weight-normed convolution computes its weight per call: folding into it would be overwritten."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3)), nn.BatchNorm2d(4)).eval()
    _randomise_norms(model)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, pixel_values):
            return self.body(pixel_values)

    wrapped = Wrapped().eval()
    x = torch.randn(1, 3, 16, 16)
    expected = _logits_plain(wrapped, x)
    optimize_for_inference(wrapped, x, channels_last=False)
    assert wrapped.hf_seg_inference_optimization.folded_batch_norms == 0
    assert torch.equal(_logits_plain(wrapped, x), expected)


def test_save_and_train_refused_eval_and_copies_still_work(tmp_path):
    model = _model("csail-mobilenetv2-c1")
    optimize_for_inference(model, _inputs(64, 1), channels_last=False)
    assert fusion.is_optimized(model)
    with pytest.raises(RuntimeError, match="save the model before optimizing it"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError, match="cannot train"):
        model.train()
    model.eval()  # still allowed
    assert not model.training
    clone = copy.deepcopy(model)
    with pytest.raises(RuntimeError):
        clone.save_pretrained(tmp_path / "clone")
    x = _inputs(64, 1)
    assert torch.equal(_logits(clone, x), _logits(model, x))
    restored = pickle.loads(pickle.dumps(model))  # torch.save / load of the whole module keeps the refusals
    with pytest.raises(RuntimeError):
        restored.save_pretrained(tmp_path / "restored")
    assert torch.equal(_logits(restored, x), _logits(model, x))


def test_unfused_model_still_saves(tmp_path):
    """channels_last alone changes no weight, so nothing is refused."""

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, pixel_values):
            return self.conv(pixel_values).relu()

    model = Plain().eval()
    optimize_for_inference(model, torch.randn(1, 3, 8, 8), channels_last=True)
    report = model.hf_seg_inference_optimization
    assert not report.weights_changed and report.channels_last
    model.train()  # no refusal: nothing was folded
    assert model.training


def test_training_mode_refused_and_model_untouched():
    model = _model("csail-mobilenetv2-c1").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="eval mode"):
        optimize_for_inference(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not fusion.is_optimized(model)


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv("HF_SEG_NO_FUSE", "1")
    model = _model("csail-mobilenetv2-c1")
    keys = set(model.state_dict())
    assert optimize_for_inference(model) is model
    assert set(model.state_dict()) == keys and not fusion.is_optimized(model)
    monkeypatch.setenv("HF_SEG_NO_FUSE", "0")
    assert not fusion.fusion_disabled()


def test_mismatch_restores_every_module(monkeypatch):
    """A fold whose check fails (simulated: a wrong fused weight) is undone completely, with a warning."""

    def wrong_fuse(conv, bn):
        fused = copy.deepcopy(conv)
        fused.weight = nn.Parameter(conv.weight * 2)
        return fused

    monkeypatch.setattr(fusion, "fuse_conv_bn_eval", wrong_fuse)
    model = _model("csail-mobilenetv2-c1")
    modules_before = dict(model.named_modules())
    x = _inputs(64, 1)
    expected = _logits(model, x)
    with pytest.warns(UserWarning, match="rewrite undone"):
        optimize_for_inference(model, x, channels_last=False)
    assert dict(model.named_modules()) == modules_before
    assert torch.equal(_logits(model, x), expected)
    assert "save_pretrained" not in vars(model)


def test_auto_channels_last_follows_the_structure():
    """'auto' is a rule on the structure (the same in every run and process): conv nets of narrow convolutions go
    channels_last on the CPU; a wide dense convolution, a transformer backbone or another device keeps the default.
    A second call is a no-op; the public name is exported."""
    assert hf_seg.optimize_for_inference is optimize_for_inference
    model = _model("csail-mobilenetv2-c1")
    optimize_for_inference(model, _inputs(64, 1))
    report = model.hf_seg_inference_optimization
    assert report.channels_last and "optimize_s" in report.timings
    assert optimize_for_inference(model) is model and model.hf_seg_inference_optimization is report
    assert not fusion._prefers_channels_last(_model("csail-resnet18dilated-ppm"), torch.device("cpu"))  # PPM's 3x3
    assert not fusion._prefers_channels_last(_model("csail-mobilenetv2-c1"), torch.device("cuda"))
    for case in ("setr", "regionproxy", "semask"):
        assert not fusion._prefers_channels_last(_model(case), torch.device("cpu")), case
    wide = nn.Sequential(nn.Conv2d(512, 512, 3), nn.Conv2d(512, 8, 1))  # ResNet-50's last-stage 3x3
    assert not fusion._prefers_channels_last(wide, torch.device("cpu"))
    assert fusion._prefers_channels_last(wide[1:], torch.device("cpu"))


def test_example_input_follows_the_window():
    model = _model("semask")
    model.config.test_crop_size = [96, 128]
    x = fusion.example_input(model)
    assert x.shape == (1, 3, 96, 128) and x.dtype == next(model.parameters()).dtype
    assert fusion.example_input(model, 64).shape == (1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fusion._shrunk(torch.zeros(1, 3, 512, 683), 4).shape == (1, 3, 128, 160)
        assert fusion._shrunk(torch.zeros(1, 3, 48, 48), 4).shape == (1, 3, 48, 48)


def test_commands_fuse_by_default_and_no_fuse_turns_it_off(tmp_path):
    """hf-seg predict / evaluate own their model, so they rewrite it; the labels match the unrewritten model's and
    the evaluation JSON says what was done (null with --no-fuse)."""
    import json

    import numpy as np
    from PIL import Image

    from hf_seg import zoo
    from hf_seg.cli import main

    root = fusion.__file__.rsplit("/hf_seg/", 1)[0]
    image = f"{root}/tests/data/ade20k/images/validation/ADE_val_00000001.jpg"
    folder = tmp_path / "model"
    _model("csail-mobilenetv2-c1", num_labels=150).save_pretrained(folder)
    zoo.build_processor("csail-ade20k-mobilenetv2dilated-c1-deepsup").save_pretrained(folder)
    labels = {}
    for flag in ([], ["--no-fuse"]):
        out = tmp_path / f"overlay{len(flag)}.png"
        assert main(["predict", image, "--model", str(folder), "--out", str(out), "--no-progress", *flag]) == 0
        labels[bool(flag)] = np.asarray(Image.open(out.with_name(out.stem + "_labels.png")))
    assert labels[True].shape == labels[False].shape
    assert (labels[True] == labels[False]).mean() > 0.999  # argmax of logits equal to ~1e-6: ties may flip a pixel
    records = {}
    for flag in ([], ["--no-fuse"]):
        out = tmp_path / f"eval{len(flag)}.json"
        main(["evaluate", "--model", str(folder), "--dataset", f"{root}/tests/data/ade20k", "--max-samples", "1",
              "--no-progress", "--quiet", "--output", str(out), *flag])
        records[bool(flag)] = json.loads(out.read_text())
    assert records[False]["inference_optimization"]["folded_batch_norms"] > 0
    assert records[True]["inference_optimization"] is None
    assert records[True]["num_parameters"] == records[False]["num_parameters"]
    assert abs(records[True]["metrics"]["mean_iou"] - records[False]["metrics"]["mean_iou"]) < 1e-3


def test_half_precision_folds_in_fp32():
    model = _model("csail-mobilenetv2-c1").to(torch.bfloat16)
    x = _inputs(64, 1).to(torch.bfloat16)
    expected = _logits(model, x).float()
    optimize_for_inference(model, x, channels_last=False)
    report = model.hf_seg_inference_optimization
    assert report.folded_batch_norms > 0 and next(model.parameters()).dtype == torch.bfloat16
    got = _logits(model, x).float()
    assert (got - expected).abs().max() <= 0.25 * expected.abs().max()
