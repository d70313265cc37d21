"""Model-agnostic test-time inference: whole image, sliding window, multi-scale + flip TTA.

The semantics are mmsegmentation's (``EncoderDecoder.slide_inference`` / ``whole_inference`` / ``aug_test`` and
``MultiScaleFlipAug``), which is what the SETR, RegionProxy, SeMask and UN-EPT papers' numbers mean:

* **slide**: windows of ``crop_size`` every ``stride``, ``h_grids = max(H - crop_h + stride_h - 1, 0) // stride_h + 1``
  (same for w), the last window of each row/column aligned to the border (``y1 = max(min(y1 + crop_h, H) - crop_h,
  0)``), each window's logits resized (bilinear) to the window size, summed, and divided by the count of windows
  covering each pixel. ``batch_size`` windows go through the model per forward (default: one on the CPU, as the
  originals run them; all windows of an image on other devices).
  When the image is smaller than the crop, the crop is zero-padded (bottom/right, in normalised space) to the crop size
  and the output cropped back (``pad_to_crop=True``, UN-EPT's behaviour; mmseg's own ``slide_inference`` feeds the
  smaller crop instead: ``pad_to_crop=False``).
* **whole**: one forward, logits resized (bilinear) to the input size.
* **TTA** (``aug_inference``): views are made first (for each scale, unflipped then horizontally flipped), each view
  runs whole or slide inference, its logits are resized to the output size, softmaxed, flipped back, and the
  probabilities are averaged.

``model_fn`` maps ``pixel_values`` [B, 3, h, w] to class scores [B, C, h', w'] at any stride. All functions here
accept an HF model too (its ``.logits`` is used). Nothing here imports model code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .sizes import int_pair

__all__ = [
    "DEFAULT_TTA_SCALES",
    "TestProtocol",
    "aug_inference",
    "as_model_fn",
    "num_windows",
    "predict",
    "predict_labels",
    "resize_logits",
    "scaled_size",
    "slide_inference",
    "slide_inference_reference",
    "slide_windows",
    "upsample_argmax",
    "whole_inference",
]

DEFAULT_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# the most bytes of full-resolution class scores held at once by upsample_argmax / predict_labels (a 12-megapixel
# photo and 150 classes would need 7.2 GB at once; in chunks of channels it needs this much)
DEFAULT_SCORE_BYTES = 256 << 20


# ---------------------------------------------------------------------------------------------- helpers
def as_model_fn(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a model (HF ``*ForSemanticSegmentation``, plain module or callable) as ``pixel_values -> logits``."""
    if getattr(model, "_hf_seg_model_fn", False):
        return model
    keyword = _accepts_pixel_values(model)

    def model_fn(pixel_values: torch.Tensor) -> torch.Tensor:
        out = model(pixel_values=pixel_values) if keyword else model(pixel_values)
        if isinstance(out, torch.Tensor):
            return out
        if hasattr(out, "logits"):
            return out.logits
        if isinstance(out, dict):
            return out["logits"]
        if isinstance(out, (tuple, list)):
            return out[0]
        raise TypeError(f"cannot find logits in a {type(out).__name__}")

    model_fn._hf_seg_model_fn = True
    return model_fn


def _accepts_pixel_values(model) -> bool:
    import inspect

    forward = getattr(model, "forward", model)
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
    return "pixel_values" in params


def resize_logits(logits: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of [B, C, h, w] scores to ``size`` (no-op when already there)."""
    size = int_pair(size, "size")
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


def slide_windows(height: int, width: int, crop_size, stride) -> list[tuple[int, int, int, int]]:
    """mmseg's window grid: ``(y1, y2, x1, x2)`` per window, row-major, last windows aligned to the border."""
    h_crop, w_crop = int_pair(crop_size, "crop_size")
    h_stride, w_stride = int_pair(stride, "stride")
    if min(h_crop, w_crop, h_stride, w_stride) <= 0:
        raise ValueError("crop_size and stride must be positive")
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * h_stride + h_crop, height)
            x2 = min(w_idx * w_stride + w_crop, width)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


def _window_count(height, width, windows, device) -> torch.Tensor:
    count = torch.zeros((1, 1, height, width), dtype=torch.float32, device=device)
    for y1, y2, x1, x2 in windows:
        count[:, :, y1:y2, x1:x2] += 1
    return count


# ---------------------------------------------------------------------------------------------- whole / slide
def whole_inference(model_fn, pixel_values: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """One forward; logits resized to the input size (mmseg ``encode_decode``). Returns float32 [B, C, H, W]."""
    model_fn = _ensure_fn(model_fn)
    logits = model_fn(pixel_values)
    return resize_logits(logits.float(), pixel_values.shape[-2:], align_corners)


def slide_inference(
    model_fn,
    pixel_values: torch.Tensor,
    crop_size,
    stride,
    num_labels: int | None = None,
    batch_size: int | None = None,
    pad_to_crop: bool = True,
    align_corners: bool = False,
) -> torch.Tensor:
    """Sliding-window inference with count-matrix averaging; windows batched through ``model_fn``.

    Args:
        model_fn: ``pixel_values -> logits`` (or a model).
        pixel_values: [B, 3, H, W].
        crop_size, stride: int or (height, width).
        num_labels: expected number of classes (checked against the model's output when given).
        batch_size: crops per forward. Default: 1 on the CPU, where batching the windows was measured slower (UN-EPT
            R50, 6 windows of 480²: 1.32x; SETR-PUP, 2 windows: 1.13x; RegionProxy S/16: 0.97x) and holds every
            window's activations at once (+1.2 GiB peak for UN-EPT); all windows of one image elsewhere.
        pad_to_crop: zero-pad crops of images smaller than ``crop_size`` up to it (see module docstring).
        align_corners: of the bilinear resize of each window's logits to the window size.

    Returns:
        float32 [B, C, H, W] averaged logits.
    """
    model_fn = _ensure_fn(model_fn)
    h_crop, w_crop = int_pair(crop_size, "crop_size")
    batch, _, height, width = pixel_values.shape
    windows = slide_windows(height, width, (h_crop, w_crop), stride)
    if batch_size is None:
        batch_size = len(windows) if pixel_values.device.type != "cpu" else 1
    batch_size = max(1, int(batch_size))
    # every window has the same size: the crop, or the whole side when the image is smaller
    win_h, win_w = min(h_crop, height), min(w_crop, width)
    pad = pad_to_crop and (win_h < h_crop or win_w < w_crop)
    in_h, in_w = (h_crop, w_crop) if pad else (win_h, win_w)
    jobs = [(b, w) for b in range(batch) for w in windows]  # image-major, windows row-major (mmseg's order)
    preds = None
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        crops = torch.stack([pixel_values[b, :, y1:y2, x1:x2] for b, (y1, y2, x1, x2) in chunk])
        if pad:
            crops = F.pad(crops, (0, in_w - win_w, 0, in_h - win_h))
        logits = model_fn(crops)
        if preds is None:
            classes = logits.shape[1]
            if num_labels is not None and classes != num_labels:
                raise ValueError(f"model returned {classes} classes, expected num_labels={num_labels}")
            preds = torch.zeros((batch, classes, height, width), dtype=torch.float32, device=logits.device)
        for i, (b, (y1, y2, x1, x2)) in enumerate(chunk):
            # one window at a time: the upsampled scores of a whole batch of crops would be batch x C x crop x crop
            window = resize_logits(logits[i : i + 1].float(), (in_h, in_w), align_corners)[0]
            preds[b, :, y1:y2, x1:x2] += window[:, :win_h, :win_w] if pad else window
    preds /= _window_count(height, width, windows, preds.device)
    return preds


def slide_inference_reference(model_fn, pixel_values, crop_size, stride, num_labels: int, pad_to_crop: bool = True,
                              align_corners: bool = False) -> torch.Tensor:
    """Crop-by-crop sliding window written like mmseg's loop (``preds += F.pad(crop_logits, ...)``, a full-size
    count matrix). Kept as the oracle for tests and the baseline for ``scripts/benchmark.py``."""
    model_fn = _ensure_fn(model_fn)
    h_crop, w_crop = int_pair(crop_size, "crop_size")
    batch, _, height, width = pixel_values.shape
    preds = pixel_values.new_zeros((batch, num_labels, height, width), dtype=torch.float32)
    count_mat = pixel_values.new_zeros((batch, 1, height, width), dtype=torch.float32)
    for y1, y2, x1, x2 in slide_windows(height, width, (h_crop, w_crop), stride):
        crop = pixel_values[:, :, y1:y2, x1:x2]
        if pad_to_crop and (y2 - y1 < h_crop or x2 - x1 < w_crop):
            padded = crop.new_zeros((batch, crop.shape[1], h_crop, w_crop))
            padded[:, :, : y2 - y1, : x2 - x1] = crop
            logit = resize_logits(model_fn(padded).float(), (h_crop, w_crop), align_corners)
            logit = logit[:, :, : y2 - y1, : x2 - x1]
        else:
            logit = resize_logits(model_fn(crop).float(), crop.shape[-2:], align_corners)
        preds += F.pad(logit, (int(x1), int(width - x2), int(y1), int(height - y2)))
        count_mat[:, :, y1:y2, x1:x2] += 1
    assert (count_mat == 0).sum() == 0
    return preds / count_mat


def _ensure_fn(model_fn):
    return as_model_fn(model_fn)


def _infer(model_fn, pixel_values, mode, crop_size, stride, num_labels, batch_size, pad_to_crop, align_corners):
    if mode == "whole":
        return whole_inference(model_fn, pixel_values, align_corners)
    if mode == "slide":
        return slide_inference(model_fn, pixel_values, crop_size, stride, num_labels=num_labels,
                               batch_size=batch_size, pad_to_crop=pad_to_crop, align_corners=align_corners)
    raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")


# ---------------------------------------------------------------------------------------------- TTA
def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Size of a view at ``scale`` (rounded like mmseg's keep-ratio rescale)."""
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def aug_inference(
    model_fn,
    pixel_values: torch.Tensor | Sequence[torch.Tensor],
    scales: Sequence[float] | None = DEFAULT_TTA_SCALES,
    flip: bool = True,
    mode: str = "whole",
    crop_size=None,
    stride=None,
    output_size=None,
    num_labels: int | None = None,
    batch_size: int | None = None,
    pad_to_crop: bool = True,
    align_corners: bool = False,
    flip_direction: str = "horizontal",
    valid_sizes: Sequence | None = None,
) -> torch.Tensor:
    """Multi-scale + flip test-time augmentation; returns averaged softmax probabilities [B, C, *output_size].

    Args:
        pixel_values: the preprocessed batch at scale 1.0 [B, 3, H, W]; each scale's view is it resized (bilinear)
            by that ratio. Or a list of ready-made views (e.g. the processor run at each test scale, which reproduces
            mmseg's resizing of the original image exactly); ``scales`` is then ignored.
        scales: ratios; ``None`` means ``(1.0,)``.
        flip: add a flipped copy of every view (mmseg order: per scale, unflipped then flipped).
        mode, crop_size, stride, batch_size, pad_to_crop: how each view is run (see :func:`slide_inference`).
        output_size: (height, width) of the result; default the size of ``pixel_values`` (or of the first view).
        valid_sizes: with a list of views that were padded (bottom/right, e.g. the processor's ``pad_size_divisor``),
            each view's unpadded (height, width): flipping happens before padding, and the padding's scores are
            cropped off before the resize to ``output_size``.
    """
    model_fn = _ensure_fn(model_fn)
    if isinstance(pixel_values, torch.Tensor):
        base = pixel_values
        height, width = base.shape[-2:]
        ratios = tuple(scales) if scales else (1.0,)
        views = []
        for ratio in ratios:
            size = scaled_size(height, width, ratio)
            views.append(base if size == (height, width) else
                         F.interpolate(base, size=size, mode="bilinear", align_corners=False))
    else:
        views = list(pixel_values)
        if not views:
            raise ValueError("no views given")
        height, width = views[0].shape[-2:]
    out_size = int_pair(output_size, "output_size") if output_size is not None else (height, width)
    if flip_direction not in ("horizontal", "vertical"):
        raise ValueError(f"flip_direction must be 'horizontal' or 'vertical', got {flip_direction!r}")
    dim = 3 if flip_direction == "horizontal" else 2
    if valid_sizes is not None and len(valid_sizes) != len(views):
        raise ValueError(f"got {len(valid_sizes)} valid sizes for {len(views)} views")
    total, n_views = None, 0
    for index, view in enumerate(views):
        valid = tuple(int(v) for v in valid_sizes[index]) if valid_sizes is not None and valid_sizes[index] else None
        if valid == tuple(view.shape[-2:]):
            valid = None
        for flipped in ((False, True) if flip else (False,)):
            if flipped and valid is not None:  # flip the image, then pad it again (mmseg: RandomFlip before Pad)
                inp = view[..., : valid[0], : valid[1]].flip(dims=(dim,))
                inp = F.pad(inp, (0, view.shape[-1] - valid[1], 0, view.shape[-2] - valid[0]))
            else:
                inp = view.flip(dims=(dim,)) if flipped else view
            logits = _infer(model_fn, inp, mode, crop_size, stride, num_labels, batch_size, pad_to_crop,
                            align_corners)
            if valid is not None:
                logits = logits[..., : valid[0], : valid[1]]
            probs = resize_logits(logits, out_size, align_corners).softmax(dim=1)
            if flipped:
                probs = probs.flip(dims=(dim,))
            total = probs if total is None else total.add_(probs)
            n_views += 1
    return total / n_views


# ---------------------------------------------------------------------------------------------- one call
def predict(
    model,
    pixel_values: torch.Tensor | Sequence[torch.Tensor],
    mode: str | None = None,
    crop_size=None,
    stride=None,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    output_size=None,
    batch_size: int | None = None,
    pad_to_crop: bool | None = None,
    align_corners: bool | None = None,
    return_probabilities: bool = False,
    valid_size=None,
) -> torch.Tensor:
    """Run a segmentation model with its test protocol and return scores at ``output_size``.

    Unset arguments come from ``model.config`` when it has them: ``test_mode`` ("whole"/"slide"),
    ``test_crop_size``, ``test_stride``, ``test_scales``, ``test_flip``, ``test_pad_to_crop``,
    ``test_align_corners``. ``scales``/``flip`` switch on TTA (``scales=[1.0], flip=False`` is plain inference).
    ``pixel_values`` may also be a list of ready-made TTA views (then ``scales`` is ignored). ``valid_size`` (one
    (height, width), or one per view) is the unpadded size when the processor padded the input; the padding's scores
    are cropped off before resizing to ``output_size`` (default: the valid size).

    Returns:
        float32 [B, C, *output_size] (default: the input size). Without TTA: the logits (resized bilinearly), or
        their softmax with ``return_probabilities``. With TTA (several views): the averaged probabilities, returned
        as their log unless ``return_probabilities`` -- so the result is always "logits" whose softmax is the
        right probabilities and whose argmax is the prediction.
    """
    config = getattr(model, "config", None)

    def cfg(name, default):
        value = getattr(config, name, None) if config is not None else None
        return default if value is None else value

    mode = mode or cfg("test_mode", "whole")
    crop_size = crop_size if crop_size is not None else cfg("test_crop_size", None)
    stride = stride if stride is not None else cfg("test_stride", None)
    scales = scales if scales is not None else cfg("test_scales", None)
    flip = flip if flip is not None else bool(cfg("test_flip", False))
    pad_to_crop = pad_to_crop if pad_to_crop is not None else bool(cfg("test_pad_to_crop", True))
    align_corners = align_corners if align_corners is not None else bool(cfg("test_align_corners", False))
    if mode == "slide":
        if crop_size is None:
            raise ValueError("mode='slide' needs crop_size (or config.test_crop_size)")
        if stride is None:
            stride = crop_size
    num_labels = getattr(config, "num_labels", None) if config is not None else None
    views = list(pixel_values) if isinstance(pixel_values, (list, tuple)) else None
    first = views[0] if views else pixel_values
    valid_sizes = None
    if valid_size is not None:
        valid_sizes = list(valid_size) if views is not None else [valid_size]
        valid_sizes = [int_pair(v, "valid_size") if v is not None else None for v in valid_sizes]
    default_size = valid_sizes[0] if valid_sizes and valid_sizes[0] else tuple(first.shape[-2:])
    out_size = int_pair(output_size, "output_size") if output_size is not None else tuple(default_size)
    model_fn = as_model_fn(model)
    tta = views is not None or flip or (scales is not None and tuple(scales) != (1.0,))
    if tta and views is None and valid_sizes and valid_sizes[0] is not None:
        # ratio views are made from the unpadded image
        pixel_values = pixel_values[..., : valid_sizes[0][0], : valid_sizes[0][1]]
        valid_sizes = None
    with torch.no_grad():
        if tta:
            probs = aug_inference(model_fn, views if views is not None else pixel_values, scales=scales or (1.0,),
                                  flip=flip, mode=mode, crop_size=crop_size, stride=stride, output_size=out_size,
                                  num_labels=num_labels, batch_size=batch_size, pad_to_crop=pad_to_crop,
                                  align_corners=align_corners,
                                  valid_sizes=valid_sizes if views is not None else None)
            return probs if return_probabilities else probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        logits = _infer(model_fn, pixel_values, mode, crop_size, stride, num_labels, batch_size, pad_to_crop,
                        align_corners)
        if valid_sizes and valid_sizes[0] is not None:
            logits = logits[..., : valid_sizes[0][0], : valid_sizes[0][1]]
        logits = resize_logits(logits, out_size, align_corners)
        return logits.softmax(dim=1) if return_probabilities else logits


def num_windows(height: int, width: int, crop_size, stride) -> int:
    """How many windows :func:`slide_inference` runs on an image of this size."""
    h_crop, w_crop = int_pair(crop_size, "crop_size")
    h_stride, w_stride = int_pair(stride, "stride")
    return (max(height - h_crop + h_stride - 1, 0) // h_stride + 1) * (
        max(width - w_crop + w_stride - 1, 0) // w_stride + 1)



# ---------------------------------------------------------------------------------------------- labels
def upsample_argmax(scores: torch.Tensor, size, align_corners: bool = False,
                    max_bytes: int = DEFAULT_SCORE_BYTES) -> torch.Tensor:
    """``resize_logits(scores, size).argmax(1)`` without holding all the resized scores: the classes are resized in
    chunks that fit in ``max_bytes`` and a running maximum keeps the first best class, so the labels are exactly
    those of the one-shot resize (each channel is interpolated independently). Returns int64 [B, *size]."""
    size = int_pair(size, "size")
    batch, classes = scores.shape[:2]
    per_class = batch * size[0] * size[1] * 4
    step = max(1, int(max_bytes) // max(per_class, 1))
    if tuple(scores.shape[-2:]) == size or step >= classes:
        return resize_logits(scores.float(), size, align_corners).argmax(dim=1)
    best = labels = None
    for start in range(0, classes, step):
        chunk = resize_logits(scores[:, start : start + step].float().contiguous(), size, align_corners)
        index = chunk.argmax(dim=1, keepdim=True)
        value = chunk.gather(1, index)[:, 0]
        index = index[:, 0] + start
        del chunk
        if best is None:
            best, labels = value, index
        else:
            better = value > best  # strictly: ties keep the earlier class, like argmax
            best = torch.where(better, value, best)
            labels = torch.where(better, index, labels)
    return labels


def predict_labels(
    model,
    pixel_values: torch.Tensor | Sequence[torch.Tensor],
    output_size,
    mode: str | None = None,
    crop_size=None,
    stride=None,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    batch_size: int | None = None,
    pad_to_crop: bool | None = None,
    align_corners: bool | None = None,
    valid_size=None,
    max_score_bytes: int = DEFAULT_SCORE_BYTES,
    exact: bool = True,
) -> torch.Tensor:
    """Label maps int64 [B, *output_size]: :func:`predict`'s argmax, with bounded memory.

    Without TTA the scores stay at the input's resolution and are upsampled class-chunk by class-chunk
    (:func:`upsample_argmax`): the labels equal ``predict(...).argmax(1)`` exactly. With TTA each view's
    probabilities are resized to ``output_size`` before averaging (mmseg's protocol), which needs
    ``B x C x output_size`` floats; when that exceeds ``max_score_bytes`` and ``exact=False`` the views are averaged
    at the largest view's size instead and the result upsampled the same chunked way (what ``hf-seg predict`` does
    for large photos; evaluation keeps ``exact=True``).
    """
    config = getattr(model, "config", None)
    views = list(pixel_values) if isinstance(pixel_values, (list, tuple)) else None
    first = views[0] if views else pixel_values
    out_size = int_pair(output_size, "output_size")
    if flip is None:
        flip = bool(getattr(config, "test_flip", False) or False)
    if scales is None:
        scales = getattr(config, "test_scales", None)
    tta = views is not None or flip or (scales is not None and tuple(scales) != (1.0,))
    common = dict(mode=mode, crop_size=crop_size, stride=stride, batch_size=batch_size, pad_to_crop=pad_to_crop,
                  align_corners=align_corners)
    corners = align_corners if align_corners is not None else bool(getattr(config, "test_align_corners", False)
                                                                   or False)
    if not tta:
        valid = int_pair(valid_size, "valid_size") if valid_size is not None else tuple(first.shape[-2:])
        scores = predict(model, pixel_values, scales=[1.0], flip=False, valid_size=valid_size, output_size=valid,
                         **common)
        return upsample_argmax(scores, out_size, corners, max_score_bytes)
    num_labels = getattr(config, "num_labels", None) or 1
    needed = first.shape[0] * num_labels * out_size[0] * out_size[1] * 4
    if exact or needed <= max_score_bytes:
        return predict(model, pixel_values, scales=scales, flip=flip, valid_size=valid_size, output_size=out_size,
                       return_probabilities=True, **common).argmax(dim=1)
    candidates = views if views is not None else [first]
    sizes = valid_size if views is not None and valid_size is not None else [valid_size] * len(candidates)
    work = max((int_pair(v, "valid_size") if v is not None else tuple(c.shape[-2:]) for c, v in zip(candidates, sizes)),
               key=lambda hw: hw[0] * hw[1])
    work = (min(work[0], out_size[0]), min(work[1], out_size[1]))
    probs = predict(model, pixel_values, scales=scales, flip=flip, valid_size=valid_size, output_size=work,
                    return_probabilities=True, **common)
    return upsample_argmax(probs, out_size, corners, max_score_bytes)


# ---------------------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class TestProtocol:
    """How a model is run at test time, resolved once from its config and the user's overrides."""

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    aug_test: bool = False
    pad_to_crop: bool = True
    align_corners: bool = False

    @property
    def tta(self) -> bool:
        return self.flip or self.scales != (1.0,)

    @classmethod
    def resolve(cls, config=None, mode=None, crop_size=None, stride=None, aug_test: bool = False, scales=None,
                flip=None) -> "TestProtocol":
        """``config.test_mode``/``test_crop_size``/``test_stride`` unless overridden; with ``aug_test`` the scales
        are ``scales`` or ``config.test_scales`` or mmseg's 0.5..1.75 and flip is on unless ``flip=False``;
        without it, single scale and no flip (mmseg's default test), unless ``scales``/``flip`` are given."""

        def cfg(name):
            return getattr(config, name, None) if config is not None else None

        mode = mode or cfg("test_mode") or "whole"
        if mode not in ("whole", "slide"):
            raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
        crop = crop_size if crop_size is not None else cfg("test_crop_size")
        step = stride if stride is not None else cfg("test_stride")
        if mode == "slide":
            if crop is None:
                raise ValueError("slide mode needs a crop size (config.test_crop_size or --crop-size)")
            crop = int_pair(crop, "crop_size")
            step = int_pair(step, "stride") if step is not None else crop
            if min(*crop, *step) <= 0:
                raise ValueError(f"crop size {crop} and stride {step} must be positive")
        else:
            crop = int_pair(crop, "crop_size") if crop is not None else None
            step = int_pair(step, "stride") if step is not None else None
        if aug_test:
            scales = tuple(float(s) for s in (scales or cfg("test_scales") or DEFAULT_TTA_SCALES))
            flip = True if flip is None else bool(flip)
        else:
            scales = tuple(float(s) for s in scales) if scales else (1.0,)
            flip = bool(flip)
        if not scales or min(scales) <= 0:
            raise ValueError(f"TTA scales must be positive, got {list(scales)}")
        pad = cfg("test_pad_to_crop")
        corners = cfg("test_align_corners")
        return cls(mode=mode, crop_size=crop, stride=step, scales=scales, flip=flip, aug_test=bool(aug_test),
                   pad_to_crop=True if pad is None else bool(pad), align_corners=bool(corners))

    def labels(self, model, views, output_size, valid=None, batch_size=None, exact: bool = True,
               max_score_bytes: int = DEFAULT_SCORE_BYTES) -> torch.Tensor:
        """:func:`predict_labels` with this protocol: ``views`` one [B, 3, h, w] tensor per scale (in
        ``self.scales`` order), ``valid`` their unpadded sizes (or ``None``s)."""
        views = list(views)
        valid = list(valid) if valid is not None else [None] * len(views)
        kwargs = dict(mode=self.mode, crop_size=self.crop_size, stride=self.stride, batch_size=batch_size,
                      pad_to_crop=self.pad_to_crop, align_corners=self.align_corners, exact=exact,
                      max_score_bytes=max_score_bytes)
        if self.tta:
            has_valid = any(v is not None for v in valid)
            return predict_labels(model, views, output_size, flip=self.flip, valid_size=valid if has_valid else None,
                                  **kwargs)
        return predict_labels(model, views[0], output_size, scales=[1.0], flip=False, valid_size=valid[0], **kwargs)
