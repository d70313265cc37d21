"""The originals' training augmentation as torchvision ``transforms.v2`` joint transforms.

Images travel as ``tv_tensors.Image`` (uint8, RGB), label maps as ``tv_tensors.Mask`` (int64 training ids with the
ignore index) and a family's extra targets as :class:`TargetMap` (a Mask with its own padding value), so every
geometric op moves them together and resizes the maps with nearest neighbour. A sample is either ``(image, mask)`` or
a dict ``{"image": ..., "labels": ..., <target name>: ...}``.

mmseg's order and semantics (mmseg 0.6-0.17 ``datasets/pipelines/transforms.py``):

* ``Resize(img_scale, ratio_range)``: ``scale = (int(long x r), int(short x r))`` with ``r ~ U(lo, hi)`` (or, in
  some forks, a random choice from a list), then the image is fit inside it keeping its aspect ratio
  (``factor = min(long'/long_edge, short'/short_edge)``, sides ``int(side x factor + 0.5)``). Other originals draw a
  short side from a list and cap the long side, truncating the sizes.
* ``RandomCrop(crop, cat_max_ratio)``: up to 10 checks that no class covers ``cat_max_ratio`` or more of the
  labelled pixels, a new random crop after each failed check (the one after the 10th is kept).
* ``RandomFlip``; ``PhotoMetricDistortion`` (below); ``Normalize``; ``Pad(crop)`` bottom/right, images with 0 and
  label maps with 255 / the ignore index.

``PhotoMetricDistortion`` on the uint8 image, each step with probability 1/2: brightness ``x + U(-32, 32)``;
contrast ``x * U(0.5, 1.5)`` first or last (one coin); saturation: S of the 8-bit HSV image ``x U(0.5, 1.5)``; hue:
H ``+ randint(-18, 18)`` (numpy: -18..17) modulo 180. Every step clips to 0..255 and truncates to uint8 as numpy's
``astype(np.uint8)`` does. The 8-bit HSV conversions follow OpenCV's ``COLOR_RGB2HSV`` / ``COLOR_HSV2RGB`` integer and
float arithmetic (H in 0..179).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..sizes import target_size
from .recipes import Pipeline

__all__ = [
    "TargetMap",
    "RandomRescale",
    "CatMaxRatioCrop",
    "RandomFlip",
    "PadTo",
    "PhotoMetricDistortion",
    "photometric_distortion",
    "rgb_to_hsv_u8",
    "hsv_to_rgb_u8",
    "build_train_transforms",
    "build_normalize",
    "seeded",
]


class TargetMap(tv_tensors.Mask):
    """An extra per-pixel training target: moved like the labels, padded with the target fill value."""


def _is_label_mask(x) -> bool:
    return type(x) is tv_tensors.Mask


class RandomRescale(v2.Transform):
    """Keep-ratio rescale of image and maps.

    * ``scale=(long, short)``: mmseg's ``Resize`` with ``ratio_range=(lo, hi)`` (uniform) or ``ratio_choices`` (a
      random choice); without either the scale is used as is.
    * ``short_sides=(...)``, ``max_size``: a random short side from the list, the long side
      capped at ``max_size``.

    ``rounding``: ``"round"`` (mmcv's ``int(x + 0.5)``) or ``"floor"`` (truncation).
    """

    def __init__(self, scale: Sequence[int] | None = None, ratio_range: Sequence[float] | None = None,
                 short_sides: Sequence[int] | None = None, max_size: int | None = None, antialias: bool = False,
                 ratio_choices: Sequence[float] | None = None, rounding: str = "round"):
        super().__init__()
        if (scale is None) == (short_sides is None):
            raise ValueError("give either scale=(long, short) or short_sides")
        if ratio_range is not None and ratio_choices is not None:
            raise ValueError("give ratio_range or ratio_choices, not both")
        self.scale = tuple(scale) if scale is not None else None
        self.ratio_range = tuple(ratio_range) if ratio_range is not None else None
        self.ratio_choices = tuple(ratio_choices) if ratio_choices is not None else None
        self.short_sides = tuple(short_sides) if short_sides is not None else None
        self.max_size = max_size
        self.antialias = antialias
        self.rounding = rounding

    def make_params(self, flat_inputs):
        height, width = v2.query_size(flat_inputs)
        if self.scale is not None:
            ratio = 1.0
            if self.ratio_choices is not None:
                ratio = self.ratio_choices[int(torch.randint(len(self.ratio_choices), ()))]
            elif self.ratio_range is not None:
                lo, hi = self.ratio_range
                ratio = lo + (hi - lo) * float(torch.rand(()))
            size = target_size(height, width, scale=self.scale, ratio=ratio, round_down=self.rounding == "floor")
        else:
            short = self.short_sides[int(torch.randint(len(self.short_sides), ()))]
            size = target_size(height, width, short_side=short, max_size=self.max_size,
                               round_down=self.rounding == "floor")
        return {"size": list(size)}

    def transform(self, inpt, params):
        return self._call_kernel(TF.resize, inpt, params["size"], antialias=self.antialias)


class CatMaxRatioCrop(v2.Transform):
    """mmseg's ``RandomCrop``: up to ``tries`` (10) checks that no single class covers ``cat_max_ratio`` or more of
    the labelled pixels, drawing a new crop after each failed check; an image smaller than the crop is kept whole
    along that side (``PadTo`` pads it)."""

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
        masks = [x for x in flat_inputs if _is_label_mask(x)]
        if self.cat_max_ratio < 1.0 and masks:
            mask = masks[0]
            for _ in range(self.tries):
                window = mask[..., top:top + crop_h, left:left + crop_w]
                _, counts = torch.unique(window[window != self.ignore_index], return_counts=True)
                if len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                    break
                top, left = self._offsets(height, width)
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt, params):
        return self._call_kernel(TF.crop, inpt, **params)


class RandomFlip(v2.Transform):
    """Horizontal flip with probability ``p`` of everything in the sample. ``fixes`` (target name -> function) correct
    named extra targets of a flipped dict sample (e.g. mirror direction angles); the originals apply none."""

    def __init__(self, p: float = 0.5, fixes: dict[str, Callable] | None = None):
        super().__init__()
        self.p = p
        self.fixes = dict(fixes or {})

    def forward(self, *inputs):
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not float(torch.rand(())) < self.p:
            return sample
        flipped = v2.RandomHorizontalFlip(p=1.0)(sample)
        if self.fixes and isinstance(flipped, dict):
            flipped = {key: tv_tensors.wrap(self.fixes[key](value.as_subclass(torch.Tensor)), like=value)
                       if key in self.fixes else value for key, value in flipped.items()}
        return flipped


class PadTo(v2.Transform):
    """Pad bottom/right up to ``size`` (mmseg ``Pad(size=crop)``): images with ``fill`` (0), label masks with the
    ignore index, extra targets with ``target_fill``. ``size_divisor`` pads up to a multiple instead (when ``size`` is
    None)."""

    def __init__(self, size: Sequence[int] | None = None, ignore_index: int = 255, fill: float = 0.0,
                 size_divisor: int | None = None, target_fill: int = 255):
        super().__init__()
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor
        self.fills = {tv_tensors.Image: fill, tv_tensors.Mask: ignore_index, TargetMap: target_fill}

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


# ------------------------------------------------------------------------------------------- colour
_HSV_SHIFT = 12
_SDIV = torch.tensor([0] + [round((255 << _HSV_SHIFT) / i) for i in range(1, 256)], dtype=torch.int64)
_HDIV = torch.tensor([0] + [round((180 << _HSV_SHIFT) / (6 * i)) for i in range(1, 256)], dtype=torch.int64)


def rgb_to_hsv_u8(image: torch.Tensor) -> torch.Tensor:
    """uint8 RGB [3, H, W] -> uint8 HSV (H 0..179, S and V 0..255) with OpenCV's 8-bit fixed-point arithmetic."""
    r, g, b = image.to(torch.int64).unbind(0)
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s = (diff * _SDIV[v] + (1 << (_HSV_SHIFT - 1))) >> _HSV_SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = torch.div(h * _HDIV[diff] + (1 << (_HSV_SHIFT - 1)), 1 << _HSV_SHIFT, rounding_mode="floor")
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h.clamp(0, 255), s, v]).to(torch.uint8)


def hsv_to_rgb_u8(hsv: torch.Tensor) -> torch.Tensor:
    """uint8 HSV (H 0..179) [3, H, W] -> uint8 RGB, OpenCV's 8-bit path (float32 math, rounding to nearest even;
    bit-exact with its scalar code; its vectorised code in recent versions truncates instead, 1 level lower at most)."""
    h = hsv[0].to(torch.float32) * (6.0 / 180.0)
    s = hsv[1].to(torch.float32) * (1.0 / 255.0)
    v = hsv[2].to(torch.float32) * (1.0 / 255.0)
    h = torch.remainder(h, 6.0)
    sector = torch.floor(h)
    frac = h - sector
    sector = sector.to(torch.int64).clamp(0, 5)
    # OpenCV's compiled code fuses ``1 - s * x`` into one multiply-add (a single rounding): done in float64 here
    s64 = s.to(torch.float64)
    fused_2 = (1.0 - s64 * frac.to(torch.float64)).to(torch.float32)
    fused_3 = (1.0 - s64 * (1.0 - frac).to(torch.float64)).to(torch.float32)
    tab = torch.stack([v, v * (1 - s), v * fused_2, v * fused_3])
    # OpenCV's sector table gives (b, g, r) indices into tab
    order = torch.tensor([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])
    idx = order[sector]  # [H, W, 3]
    bgr = torch.gather(tab, 0, idx.permute(2, 0, 1))
    bgr = torch.where(s[None] == 0, v[None].expand(3, -1, -1), bgr)
    rgb = bgr.flip(0)
    return torch.round(rgb * 255.0).clamp(0, 255).to(torch.uint8)


def _convert(values: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """mmseg's ``convert``: float32 ``x * alpha + beta``, clipped to 0..255 and truncated to uint8."""
    return (values.to(torch.float32) * alpha + beta).clamp_(0, 255).to(torch.uint8)


class PhotoMetricDistortion(v2.Transform):
    """mmseg's ``PhotoMetricDistortion`` with its defaults (brightness 32, contrast and saturation 0.5-1.5, hue 18)."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, brightness_delta: int = 32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                 hue_delta: int = 18):
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    @staticmethod
    def _coin() -> bool:
        return bool(torch.randint(2, ()))

    @staticmethod
    def _uniform(lo, hi) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def make_params(self, flat_inputs):
        params = {"brightness": None, "contrast_first": None, "saturation": None, "hue": None, "contrast_last": None}
        if self._coin():
            params["brightness"] = self._uniform(-self.brightness_delta, self.brightness_delta)
        contrast_first = self._coin()  # mmseg: mode == 1 -> contrast before saturation and hue
        if contrast_first and self._coin():
            params["contrast_first"] = self._uniform(*self.contrast_range)
        if self._coin():
            params["saturation"] = self._uniform(*self.saturation_range)
        if self._coin():
            params["hue"] = int(torch.randint(-self.hue_delta, self.hue_delta, ()))  # numpy randint: high excluded
        if not contrast_first and self._coin():
            params["contrast_last"] = self._uniform(*self.contrast_range)
        return params

    def transform(self, inpt, params):
        image = inpt.as_subclass(torch.Tensor)
        if image.dtype != torch.uint8:
            raise TypeError("PhotoMetricDistortion works on uint8 images, before normalisation")
        if params["brightness"] is not None:
            image = _convert(image, beta=params["brightness"])
        if params["contrast_first"] is not None:
            image = _convert(image, alpha=params["contrast_first"])
        if params["saturation"] is not None or params["hue"] is not None:
            batch = image.reshape(-1, *image.shape[-3:])
            out = []
            for single in batch:
                if params["saturation"] is not None:
                    hsv = rgb_to_hsv_u8(single)
                    hsv[1] = _convert(hsv[1], alpha=params["saturation"])
                    single = hsv_to_rgb_u8(hsv)
                if params["hue"] is not None:
                    hsv = rgb_to_hsv_u8(single)
                    hsv[0] = torch.remainder(hsv[0].to(torch.int64) + params["hue"], 180).to(torch.uint8)
                    single = hsv_to_rgb_u8(hsv)
                out.append(single)
            image = torch.stack(out).reshape(image.shape)
        if params["contrast_last"] is not None:
            image = _convert(image, alpha=params["contrast_last"])
        return tv_tensors.wrap(image, like=inpt)


def photometric_distortion() -> v2.Transform:
    return PhotoMetricDistortion()


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


def build_train_transforms(pipeline: Pipeline, processor, ignore_index: int = 255, target_fill: int = 255,
                           flip_fixes: dict[str, Callable] | None = None) -> v2.Transform:
    """The recipe's augmentation followed by the processor's normalisation; call it as ``tf(image, mask)`` or on a
    dict sample with extra :class:`TargetMap` entries."""
    steps: list[v2.Transform] = []
    if pipeline.scale is not None or pipeline.short_sides is not None:
        steps.append(RandomRescale(pipeline.scale, pipeline.ratio_range, pipeline.short_sides, pipeline.max_size,
                                   antialias=getattr(processor, "antialias", False),
                                   ratio_choices=pipeline.ratio_choices, rounding=pipeline.size_rounding))
    if pipeline.crop_size is not None:
        steps.append(CatMaxRatioCrop(pipeline.crop_size, pipeline.cat_max_ratio, ignore_index,
                                     tries=pipeline.cat_max_tries))
    if pipeline.flip_prob > 0:
        steps.append(RandomFlip(pipeline.flip_prob, flip_fixes))
    if pipeline.photometric:
        steps.append(PhotoMetricDistortion())
    steps.append(build_normalize(processor))
    if pipeline.crop_size is not None:
        steps.append(PadTo(pipeline.crop_size, ignore_index=ignore_index, target_fill=target_fill))
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
