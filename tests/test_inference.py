"""hf_seg.inference: mmseg window grid, batched slide == crop-by-crop, slide == whole, flip/scale TTA."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hf_seg.inference import (
    aug_inference,
    num_windows,
    predict,
    scaled_size,
    slide_inference,
    slide_inference_reference,
    slide_windows,
    whole_inference,
)


pytestmark = pytest.mark.usefixtures("single_thread")


class StridedNet(nn.Module):
    """Conv net with output stride 4 and a non-symmetric receptive field (not flip-equivariant)."""

    def __init__(self, classes=5):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, classes, 3, stride=2, padding=1))
        self.calls = []

    def forward(self, pixel_values):
        self.calls.append(tuple(pixel_values.shape))
        return self.body(pixel_values)


class PointwiseNet(nn.Module):
    """1x1 convolutions only: translation- and flip-equivariant, so window placement does not matter."""

    def __init__(self, classes=4):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Tanh(), nn.Conv2d(16, classes, 1))

    def forward(self, pixel_values):
        return self.body(pixel_values)


class SymmetricNet(nn.Module):
    """3x3 conv with a left-right symmetric kernel at stride 2: flip-equivariant but not pointwise."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, classes, 3, padding=1)
        with torch.no_grad():
            w = self.conv.weight
            w.copy_((w + w.flip(-1)) / 2)

    def forward(self, pixel_values):
        return F.avg_pool2d(self.conv(pixel_values), 2)


@pytest.mark.parametrize("height, width, crop, stride", [(512, 683, 512, 341), (1024, 2048, 768, 512),
                                                          (100, 130, 48, 32), (30, 40, 64, 48), (65, 65, 64, 64)])
def test_window_grid_is_mmsegs(height, width, crop, stride):
    windows = slide_windows(height, width, crop, stride)
    h_grids = max(height - crop + stride - 1, 0) // stride + 1
    w_grids = max(width - crop + stride - 1, 0) // stride + 1
    assert len(windows) == h_grids * w_grids == num_windows(height, width, crop, stride)
    cover = torch.zeros(height, width)
    for y1, y2, x1, x2 in windows:
        assert y2 - y1 == min(crop, height) and x2 - x1 == min(crop, width)
        assert 0 <= y1 and y2 <= height and 0 <= x1 and x2 <= width
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    # the last window of each row/column touches the border
    assert max(w[1] for w in windows) == height and max(w[3] for w in windows) == width
    assert windows[0][:1] == (0,) and windows[0][2] == 0


def test_known_grids():
    assert num_windows(512, 683, 512, 341) == 2  # ADE20K-size, SETR protocol
    assert num_windows(1024, 2048, 768, 512) == 8  # Cityscapes, SETR protocol
    assert slide_windows(100, 130, (48, 64), (32, 40))[-1] == (52, 100, 66, 130)


@pytest.mark.parametrize("size", [(100, 130), (77, 51), (48, 48), (30, 200)])
@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_batched_slide_equals_crop_by_crop(size, batch_size):
    net = StridedNet().eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast = slide_inference(net, x, (48, 40), (32, 24), num_labels=5, batch_size=batch_size)
        ref = slide_inference_reference(net, x, (48, 40), (32, 24), num_labels=5)
    assert fast.shape == (2, 5, *size)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_batching_reduces_forward_calls():
    net = StridedNet().eval()
    x = torch.randn(2, 3, 100, 130)
    n = num_windows(100, 130, 48, 32)
    with torch.no_grad():
        slide_inference(net, x, 48, 32, batch_size=5)
    assert len(net.calls) == math.ceil(2 * n / 5)
    assert all(c[2:] == (48, 48) for c in net.calls)


def test_cpu_default_is_one_window_per_forward():
    """On the CPU the windows go one at a time (as the originals run them): batching them was slower there and held
    every window's activations at once."""
    net = StridedNet().eval()
    x = torch.randn(2, 3, 100, 130)
    with torch.no_grad():
        default = slide_inference(net, x, 48, 32)
    assert net.calls == [(1, 3, 48, 48)] * (2 * num_windows(100, 130, 48, 32))
    with torch.no_grad():
        torch.testing.assert_close(default, slide_inference_reference(net, x, 48, 32, num_labels=5),
                                   rtol=1e-5, atol=1e-5)


def test_slide_equals_whole_when_the_crop_covers_the_image():
    net = StridedNet().eval()
    x = torch.randn(1, 3, 90, 70)
    with torch.no_grad():
        whole = whole_inference(net, x)
        slide = slide_inference(net, x, (128, 96), 64, pad_to_crop=False)
        torch.testing.assert_close(slide, whole)
        # with padding, the model sees a zero-padded crop-size input; the result is the cropped whole output on it
        padded = slide_inference(net, x, (128, 96), 64, pad_to_crop=True)
        ref = whole_inference(net, F.pad(x, (0, 96 - 70, 0, 128 - 90)))[:, :, :90, :70]
        torch.testing.assert_close(padded, ref)
        assert net.calls[-2][2:] == (128, 96)


@pytest.mark.parametrize("size, crop, stride", [((100, 130), 48, 32), ((61, 97), (40, 50), (17, 23))])
def test_slide_equals_whole_for_a_pointwise_model(size, crop, stride):
    net = PointwiseNet().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(slide_inference(net, x, crop, stride, batch_size=4), whole_inference(net, x),
                                   rtol=1e-5, atol=1e-6)


def test_slide_checks_num_labels():
    with pytest.raises(ValueError):
        slide_inference(PointwiseNet(4), torch.randn(1, 3, 20, 20), 16, 8, num_labels=150)


def test_flip_tta_is_a_no_op_for_a_flip_equivariant_model():
    net = SymmetricNet().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        plain = aug_inference(net, x, scales=[1.0], flip=False)
        flipped = aug_inference(net, x, scales=[1.0], flip=True)
        torch.testing.assert_close(flipped, plain, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain, whole_inference(net, x).softmax(1))


def test_flip_tta_output_is_flip_equivariant_for_any_model():
    net = StridedNet().eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        for mode, extra in (("whole", {}), ("slide", {"crop_size": 48, "stride": 32})):
            a = aug_inference(net, x, scales=[0.75, 1.0, 1.5], flip=True, mode=mode, **extra)
            b = aug_inference(net, x.flip(-1), scales=[0.75, 1.0, 1.5], flip=True, mode=mode, **extra)
            torch.testing.assert_close(b, a.flip(-1), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(a.sum(1), torch.ones(1, 64, 80))


def test_tta_view_order_and_sizes_follow_mmseg():
    net = StridedNet().eval()
    x = torch.randn(1, 3, 40, 60)
    scales = [0.5, 1.0, 1.75]
    with torch.no_grad():
        out = aug_inference(net, x, scales=scales, flip=True, output_size=(20, 30))
    expected = []
    for s in scales:
        expected += [(1, 3, *scaled_size(40, 60, s))] * 2  # unflipped then flipped per scale
    assert net.calls == expected
    assert out.shape == (1, 5, 20, 30)


def test_tta_average_matches_manual_computation():
    net = StridedNet().eval()
    x = torch.randn(1, 3, 40, 60)
    with torch.no_grad():
        out = aug_inference(net, x, scales=[0.5, 1.0], flip=True)
        manual = 0
        for s in (0.5, 1.0):
            view = F.interpolate(x, size=scaled_size(40, 60, s), mode="bilinear", align_corners=False) if s != 1 else x
            for flip in (False, True):
                inp = view.flip(-1) if flip else view
                logits = F.interpolate(net.body(inp), size=inp.shape[-2:], mode="bilinear", align_corners=False)
                logits = F.interpolate(logits, size=(40, 60), mode="bilinear", align_corners=False)
                p = logits.softmax(1)
                manual = manual + (p.flip(-1) if flip else p)
        torch.testing.assert_close(out, manual / 4)
        # views given explicitly (e.g. by the processor) give the same result
        views = [F.interpolate(x, size=(20, 30), mode="bilinear", align_corners=False), x]
        torch.testing.assert_close(aug_inference(net, views, flip=True, output_size=(40, 60)), out)


class _HFLike(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.net = StridedNet(config.num_labels)

    def forward(self, pixel_values, labels=None):
        return SimpleNamespace(logits=self.net(pixel_values))


def test_predict_reads_the_protocol_from_the_config():
    config = SimpleNamespace(num_labels=5, test_mode="slide", test_crop_size=[32, 32], test_stride=[20, 20])
    model = _HFLike(config).eval()
    x = torch.randn(1, 3, 50, 70)
    out = predict(model, x, output_size=(100, 140))
    with torch.no_grad():
        ref = slide_inference(model.net, x, 32, 20)
    torch.testing.assert_close(out, F.interpolate(ref, size=(100, 140), mode="bilinear", align_corners=False))
    assert model.net.calls[0][2:] == (32, 32)
    # explicit arguments win over the config
    model.net.calls.clear()
    whole = predict(model, x, mode="whole")
    assert model.net.calls == [(1, 3, 50, 70)]
    assert whole.shape == (1, 5, 50, 70)


def test_predict_tta_returns_log_probabilities():
    model = _HFLike(SimpleNamespace(num_labels=5)).eval()
    x = torch.randn(2, 3, 32, 48)
    logp = predict(model, x, scales=[0.5, 1.0], flip=True)
    probs = predict(model, x, scales=[0.5, 1.0], flip=True, return_probabilities=True)
    torch.testing.assert_close(logp.softmax(1), probs)
    torch.testing.assert_close(logp.exp(), probs)
    plain = predict(model, x)
    torch.testing.assert_close(predict(model, x, return_probabilities=True), plain.softmax(1))
