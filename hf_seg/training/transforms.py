"""The seeds' training augmentation as torchvision ``transforms.v2`` joint image/mask transforms.

Images travel as ``tv_tensors.Image`` (uint8, RGB) and label maps as ``tv_tensors.Mask`` (int64, already mapped to
training ids with the ignore index), so every geometric op moves both and resizes the mask with nearest neighbour.
The steps that v2 has no transform for (mmseg's keep-ratio rescale with a ratio range, the crop that retries until no
class covers more than ``cat_max_ratio`` of it, bottom/right padding with the ignore index, an additive brightness
shift) are small ``v2.Transform`` subclasses that call ``v2.functional``.

mmseg's order is kept: Resize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion -> Normalize -> Pad.
PhotoMetricDistortion: brightness += U(-32, 32); "contrast" (a multiplication by U(0.5, 1.5), which is torchvision's
``adjust_brightness``) before or after saturation U(0.5, 1.5) and hue shift U(-18, 18)/180; each with probability
1/2. Saturation uses torchvision's blend with the grey image rather than mmcv's HSV scaling (close, not identical).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .recipes import Pipeline

__all__ = [
    "RandomRescale",
    "CatMaxRatioCrop",
    "PadTo",
    "RandomBrightnessShift",
    "photometric_distortion",
    "build_train_transforms",
    "build_normalize",
    "seeded",
]


class RandomRescale(v2.Transform):
    """Keep-ratio rescale of image and mask.

    * ``scale=(long, short)`` and ``ratio_range=(lo, hi)``: mmseg's ``Resize``: the target scale is ``scale x r``
      with ``r ~ U(lo, hi)`` and the image is fit inside it (``factor = min(long'/long_edge, short'/short_edge)``);
      without ``ratio_range`` the scale is used as is.
    * ``short_sides=(...)``, ``max_size``: CSAIL's training resize: a random short side from the list, the long side
      capped at ``max_size``.
    """

    def __init__(self, scale: Sequence[int] | None = None, ratio_range: Sequence[float] | None = None,
                 short_sides: Sequence[int] | None = None, max_size: int | None = None, antialias: bool = False):
        super().__init__()
        if (scale is None) == (short_sides is None):
            raise ValueError("give either scale=(long, short) or short_sides")
        self.scale = tuple(scale) if scale is not None else None
        self.ratio_range = tuple(ratio_range) if ratio_range is not None else None
        self.short_sides = tuple(short_sides) if short_sides is not None else None
        self.max_size = max_size
        self.antialias = antialias

    def make_params(self, flat_inputs):
        height, width = v2.query_size(flat_inputs)
        if self.scale is not None:
            ratio = 1.0
            if self.ratio_range is not None:
                lo, hi = self.ratio_range
                ratio = lo + (hi - lo) * float(torch.rand(()))
            long_side, short_side = max(self.scale) * ratio, min(self.scale) * ratio
            factor = min(long_side / max(height, width), short_side / min(height, width))
        else:
            short = self.short_sides[int(torch.randint(len(self.short_sides), ()))]
            factor = short / min(height, width)
            if self.max_size is not None:
                factor = min(factor, self.max_size / max(height, width))
        return {"size": [max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))]}

    def transform(self, inpt, params):
        return self._call_kernel(TF.resize, inpt, params["size"], antialias=self.antialias)


class CatMaxRatioCrop(v2.Transform):
    """mmseg's ``RandomCrop``: up to 10 tries for a crop in which no single class covers more than ``cat_max_ratio``
    of the labelled pixels; an image smaller than the crop is kept whole along that side (``PadTo`` pads it)."""

    def __init__(self, size: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255, tries: int = 10):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.tries = tries

    def _offsets(self, height, width):
        top = int(torch.randint(max(height - self.size[0], 0) + 1, ()))
        left = int(torch.randint(max(width - self.size[1], 0) + 1, ()))
        return top, left

    def make_params(self, flat_inputs):
        height, width = v2.query_size(flat_inputs)
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        top, left = self._offsets(height, width)
        masks = [x for x in flat_inputs if isinstance(x, tv_tensors.Mask)]
        if self.cat_max_ratio < 1.0 and masks:
            mask = masks[0]
            for _ in range(self.tries - 1):
                window = mask[..., top:top + crop_h, left:left + crop_w]
                _, counts = torch.unique(window[window != self.ignore_index], return_counts=True)
                if len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                    break
                top, left = self._offsets(height, width)
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt, params):
        return self._call_kernel(TF.crop, inpt, **params)


class PadTo(v2.Transform):
    """Pad bottom/right up to ``size`` (mmseg ``Pad(size=crop)``): images with ``fill`` (0), masks with the ignore
    index. ``size_divisor`` pads up to a multiple instead (when ``size`` is None)."""

    def __init__(self, size: Sequence[int] | None = None, ignore_index: int = 255, fill: float = 0.0,
                 size_divisor: int | None = None):
        super().__init__()
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor
        self.fills = {tv_tensors.Image: fill, tv_tensors.Mask: ignore_index}

    def make_params(self, flat_inputs):
        height, width = v2.query_size(flat_inputs)
        if self.size is not None:
            target = (max(height, self.size[0]), max(width, self.size[1]))
        elif self.size_divisor:
            d = self.size_divisor
            target = (-(-height // d) * d, -(-width // d) * d)
        else:
            target = (height, width)
        return {"padding": [0, 0, target[1] - width, target[0] - height]}

    def transform(self, inpt, params):
        if params["padding"][2] == 0 and params["padding"][3] == 0:
            return inpt
        fill = self.fills.get(type(inpt), 0)
        return self._call_kernel(TF.pad, inpt, padding=params["padding"], fill=fill, padding_mode="constant")


class RandomBrightnessShift(v2.Transform):
    """Add ``U(-delta, delta)`` to every channel with probability ``p`` (mmseg's brightness; images only)."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, delta: float = 32, p: float = 0.5):
        super().__init__()
        self.delta = delta
        self.p = p

    def make_params(self, flat_inputs):
        apply = float(torch.rand(())) < self.p
        return {"shift": (float(torch.rand(())) * 2 - 1) * self.delta if apply else 0.0}

    def transform(self, inpt, params):
        if params["shift"] == 0.0:
            return inpt
        shifted = inpt.float() + params["shift"]
        return tv_tensors.wrap(shifted.clamp_(0, 255).round_().to(inpt.dtype), like=inpt)


def photometric_distortion() -> v2.Transform:
    """mmseg's PhotoMetricDistortion (brightness, contrast, saturation, hue; contrast first or last)."""
    contrast = v2.RandomApply([v2.ColorJitter(brightness=(0.5, 1.5))], p=0.5)
    saturation = v2.RandomApply([v2.ColorJitter(saturation=(0.5, 1.5))], p=0.5)
    hue = v2.RandomApply([v2.ColorJitter(hue=18 / 180)], p=0.5)
    return v2.Compose([
        RandomBrightnessShift(32, p=0.5),
        v2.RandomChoice([v2.Compose([contrast, saturation, hue]), v2.Compose([saturation, hue, contrast])]),
    ])


def build_normalize(processor) -> v2.Transform:
    """The processor's rescale/normalise/channel order as v2 transforms on a uint8 RGB ``tv_tensors.Image``."""
    steps: list[v2.Transform] = [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=False)]
    if getattr(processor, "channel_order", "RGB") == "BGR":
        steps.append(v2.Lambda(lambda img: tv_tensors.wrap(img.flip(-3), like=img), tv_tensors.Image))
    factor = processor.rescale_factor if processor.do_rescale else 1.0
    if processor.do_normalize:
        mean = [m / factor for m in processor.image_mean]
        std = [s / factor for s in processor.image_std]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0 / factor] * 3
    steps.append(v2.Normalize(mean=mean, std=std))
    return v2.Compose(steps)


def build_train_transforms(pipeline: Pipeline, processor, ignore_index: int = 255) -> v2.Transform:
    """The recipe's augmentation followed by the processor's normalisation; call it as ``tf(image, mask)``."""
    steps: list[v2.Transform] = []
    if pipeline.scale is not None or pipeline.short_sides is not None:
        steps.append(RandomRescale(pipeline.scale, pipeline.ratio_range, pipeline.short_sides, pipeline.max_size,
                                   antialias=getattr(processor, "antialias", False)))
    if pipeline.crop_size is not None:
        steps.append(CatMaxRatioCrop(pipeline.crop_size, pipeline.cat_max_ratio, ignore_index))
    if pipeline.flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(pipeline.flip_prob))
    if pipeline.photometric:
        steps.append(photometric_distortion())
    steps.append(build_normalize(processor))
    if pipeline.crop_size is not None:
        steps.append(PadTo(pipeline.crop_size, ignore_index=ignore_index))
    return v2.Compose(steps)


def seeded(seed: int):
    """A context that runs a transform with torch's and Python's RNG seeded by ``seed`` and restores them after,
    so an image's augmentation depends only on (run seed, epoch, index): exact across resumes and worker counts."""
    return _Seeded(seed)


class _Seeded:
    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self._torch = torch.random.get_rng_state()
        self._py = random.getstate()
        torch.manual_seed(self.seed)
        random.seed(self.seed)

    def __exit__(self, *exc):
        torch.random.set_rng_state(self._torch)
        random.setstate(self._py)
        return False
