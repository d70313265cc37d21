"""The training pipeline's pieces against the originals' semantics: mmseg's Resize (ratio range and SeMask's ratio
list, sizes truncated), RandomCrop's 10 cat_max_ratio checks, PhotoMetricDistortion (OpenCV 8-bit HSV arithmetic),
CSAIL's bias-corrected BatchNorm average, and UN-EPT's boundary targets (made on the full label map, then moved and
padded like the labels) as the collator hands them to the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from hf_seg import HfSegImageProcessor
from hf_seg.training.batchnorm import apply_batchnorm_recipe, bias_corrected_momentum
from hf_seg.training.model_inputs import SegmentationCollator, TrainDataset
from hf_seg.families import get_family
from hf_seg.training.recipes import Pipeline
from hf_seg.training.transforms import (CatMaxRatioCrop, PhotoMetricDistortion, RandomRescale,
                                        build_train_transforms, hsv_to_rgb_u8, rgb_to_hsv_u8, seeded)


# ------------------------------------------------------------------------------------------------ resize
def _rescaled(transform, height, width, seed=0):
    with seeded(seed):
        out = transform(tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8)))
    return tuple(out.shape[-2:])


def test_ratio_choices_draw_only_the_listed_ratios():
    choices = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    transform = RandomRescale((2048, 512), ratio_choices=choices)
    seen = {_rescaled(transform, 512, 683, seed) for seed in range(60)}
    # an image already at the scale: the short side becomes int(512 x ratio) exactly
    assert {s[0] for s in seen} == {int(512 * r) for r in choices}


def test_resize_truncates_the_scaled_img_scale_then_rounds_the_size():
    """mmseg: scale = (int(2048 r), int(512 r)); factor = min(long'/long, short'/short); side = int(side f + 0.5)."""
    transform = RandomRescale((2048, 512), ratio_range=(0.5, 2.0))
    for seed in range(20):
        with seeded(seed):
            ratio = 0.5 + 1.5 * float(torch.rand(()))
        long_side, short_side = int(2048 * ratio), int(512 * ratio)
        factor = min(long_side / 500, short_side / 375)
        assert _rescaled(transform, 375, 500, seed) == (int(375 * factor + 0.5), int(500 * factor + 0.5))


def test_short_side_resize_truncates_like_the_original():
    transform = RandomRescale(short_sides=(300,), max_size=1000, rounding="floor")
    # 300 / 481 * 641 = 399.79...: the original's int32 assignment gives 399, rounding would give 400
    assert _rescaled(transform, 481, 641) == (300, 399)


def test_cat_max_ratio_makes_ten_checks():
    """A map where every crop fails the check: 10 checks, i.e. 11 crops drawn (mmseg: the one after the 10th is
    kept)."""
    mask = tv_tensors.Mask(torch.zeros(1, 64, 64, dtype=torch.int64))  # one class everywhere: every check fails
    image = tv_tensors.Image(torch.zeros(3, 64, 64, dtype=torch.uint8))
    crop = CatMaxRatioCrop((32, 32), cat_max_ratio=0.75)
    draws = []
    original = crop._offsets
    crop._offsets = lambda h, w: draws.append(1) or original(h, w)
    with seeded(0):
        crop(image, mask)
    assert len(draws) == 11


# ------------------------------------------------------------------------------------------------ colour
def test_hsv_conversions_match_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20000, 1, 3), dtype=np.uint8)  # one column: OpenCV's scalar code path
    rgb[:256, 0] = np.arange(256)[:, None]  # greys: saturation 0
    ours = rgb_to_hsv_u8(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.array_equal(ours, cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    hsv = np.stack([rng.integers(0, 180, 20000), rng.integers(0, 256, 20000), rng.integers(0, 256, 20000)],
                   -1).astype(np.uint8)[:, None]
    back = hsv_to_rgb_u8(torch.from_numpy(hsv).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.array_equal(back, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def _mmseg_photometric(bgr: np.ndarray, params: dict, cv2) -> np.ndarray:
    """mmseg 0.x PhotoMetricDistortion on a uint8 BGR image, with the random draws given."""
    def convert(img, alpha=1.0, beta=0.0):
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    img = bgr
    if params["brightness"] is not None:
        img = convert(img, beta=params["brightness"])
    if params["contrast_first"] is not None:
        img = convert(img, alpha=params["contrast_first"])
    if params["saturation"] is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=params["saturation"])
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if params["hue"] is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + params["hue"]) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if params["contrast_last"] is not None:
        img = convert(img, alpha=params["contrast_last"])
    return img


def test_photometric_distortion_matches_mmseg():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(4000, 1, 3), dtype=np.uint8)
    transform = PhotoMetricDistortion()
    for seed in range(12):
        with seeded(seed):
            params = transform.make_params([])
        ours = transform.transform(tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1)), params)
        expected = _mmseg_photometric(rgb[..., ::-1].copy(), params, cv2)[..., ::-1]
        assert np.array_equal(ours.permute(1, 2, 0).numpy(), expected), params


def test_photometric_draws_follow_mmseg():
    """Each step with probability 1/2, the brightness delta in [-32, 32], hue shifts numpy's randint(-18, 18)."""
    transform = PhotoMetricDistortion()
    draws = []
    for seed in range(400):
        with seeded(seed):
            draws.append(transform.make_params([]))
    hues = [d["hue"] for d in draws if d["hue"] is not None]
    assert min(hues) == -18 and max(hues) == 17
    assert all(-32 <= d["brightness"] <= 32 for d in draws if d["brightness"] is not None)
    assert not any(d["contrast_first"] is not None and d["contrast_last"] is not None for d in draws)
    for key in ("brightness", "saturation", "hue"):
        assert 150 < sum(d[key] is not None for d in draws) < 250


# ------------------------------------------------------------------------------------------------ batchnorm
def test_bias_corrected_batchnorm_average_equals_the_original_rule():
    """running = tmp / n with tmp <- (1-m) tmp + x and n <- (1-m) n + 1, n starting at 1 (CSAIL's
    SynchronizedBatchNorm), through PyTorch's BatchNorm with a per-update momentum."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    bn.running_mean.fill_(0.5)
    apply_batchnorm_recipe(bn, 0.001, bias_corrected=True)
    tmp, count = bn.running_mean.clone(), 1.0
    tmp_var = bn.running_var.clone()
    bn.train()
    for step in range(6):
        x = torch.randn(4, 3, 5, 5) * (step + 1) + step
        bn(x)
        tmp = 0.999 * tmp + x.mean((0, 2, 3))
        tmp_var = 0.999 * tmp_var + x.var((0, 2, 3), unbiased=True)
        count = 0.999 * count + 1
        torch.testing.assert_close(bn.running_mean, tmp / count, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, tmp_var / count, rtol=1e-5, atol=1e-6)
    assert bias_corrected_momentum(0.001, 1) == pytest.approx(1 / 1.999)


# ------------------------------------------------------------------------------------------ UN-EPT targets
def _labels(height=48, width=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), dtype=np.int64)
    labels[:, width // 2:] = 1
    labels[height // 3:, : width // 3] = 2
    labels[rng.integers(0, height, 30), rng.integers(0, width, 30)] = 255
    return labels


def _nearest(array: np.ndarray, size) -> np.ndarray:
    """mmcv.imrescale(..., interpolation='nearest') (OpenCV INTER_NEAREST): source index floor(i x in / out)."""
    rows = np.minimum((np.arange(size[0]) * (array.shape[0] / size[0])).astype(int), array.shape[0] - 1)
    cols = np.minimum((np.arange(size[1]) * (array.shape[1] / size[1])).astype(int), array.shape[1] - 1)
    return array[rows][:, cols]


class _Rows:
    def __init__(self, image, labels):
        self.row = {"image": image, "annotation": labels}

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.row


def _batch(mirror: bool):
    from hf_seg.modeling.unept.dt_offset import dt_offset_maps, maps_to_targets

    targets = get_family("unept").hook("training_targets")
    labels = _labels()
    image = np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    # fixed scale, no ratio: 48x40 fit inside (60, 50) -> 60x50; the crop is larger: padded to 64x64; always flipped
    pipeline = Pipeline(scale=(60, 50), ratio_range=None, crop_size=(64, 64), cat_max_ratio=1.0, flip_prob=1.0,
                        photometric=False)
    processor = HfSegImageProcessor(resize_mode="none")
    transforms = build_train_transforms(pipeline, processor, 255, target_fill=255,
                                        flip_fixes=targets.on_flip if mirror else None)
    dataset = TrainDataset(_Rows(image, labels), transforms, label_fn=lambda raw: raw, extra_targets=targets)
    batch = SegmentationCollator(ignore_index=255, fills=dict(targets.fills))([dataset[0]])
    # the original: maps on the full label map, then Resize(nearest) -> RandomCrop -> RandomFlip -> Pad(255)
    distance, angle = (t.numpy() for t in maps_to_targets(*dt_offset_maps(labels)))
    reference = {}
    for name, array in (("labels", labels), ("distance_map", distance), ("angle_map", angle)):
        resized = _nearest(array, (60, 50))[:, ::-1]
        padded = np.full((64, 64), 255, dtype=np.int64)
        padded[:60, :50] = resized
        reference[name] = padded
    return batch, reference


def test_unept_targets_are_made_on_the_full_label_map_and_padded_like_labels():
    batch, reference = _batch(mirror=False)
    for name in ("labels", "distance_map", "angle_map"):
        assert batch[name].shape == (1, 64, 64)
        assert np.array_equal(batch[name][0].numpy(), reference[name]), name
    distance = batch["distance_map"][0]
    boundary = (distance >= 0) & (distance <= 5)
    padded = torch.zeros_like(boundary)
    padded[60:, :] = True
    padded[:, 50:] = True
    assert not boundary[padded].any(), "padded pixels are non-boundary (255), as in the original"
    # computed after the augmentation instead, the padding (ignore, distance 0) would count as boundary
    from hf_seg.modeling.unept.dt_offset import dt_offset_targets

    recomputed, _ = dt_offset_targets(batch["labels"][0])
    assert ((recomputed >= 0) & (recomputed <= 5))[padded].float().mean() > 0.9
    assert boundary.float().mean() < ((recomputed >= 0) & (recomputed <= 5)).float().mean()


def test_unept_flip_fix_mirrors_direction_angles_when_asked():
    plain, _ = _batch(mirror=False)
    fixed, _ = _batch(mirror=True)
    mirror = get_family("unept").hook("training_targets").on_flip["angle_map"]
    inside = plain["distance_map"][0] != 255
    torch.testing.assert_close(fixed["angle_map"][0][inside], mirror(plain["angle_map"][0][inside]))
    assert torch.equal(fixed["distance_map"], plain["distance_map"])
    angles = torch.arange(-180, 180, 2)
    assert set(mirror(angles).tolist()) == set(angles.tolist())  # stays within [-180, 180)
    assert mirror(torch.tensor([0, 90, -90, 45])).tolist() == [-180, 90, -90, 135]
