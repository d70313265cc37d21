"""The one image processor every hf_seg family uses.

Each seed's test protocol is a setting of this class, not a subclass: a fixed-size resize, mmseg's keep-ratio resize
to an (long, short) scale, or CSAIL's short-side resize with a long-side cap rounded up to a multiple; mean/std in the
units the original used (0..1 after rescaling, or 0..255 like mmseg's ``img_norm_cfg``); RGB or BGR; ADE20K's label
reduction and label maps such as Cityscapes labelIds -> trainIds. Everything runs in torch, on batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .image_io import ImageReadError, decode_label_map, image_to_array, intensity_divisor, open_image
from .label_sets import convert_labels
from .sizes import target_size

RESIZE_MODES = ("fixed", "keep_ratio", "short_side", "none")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class HfSegImageProcessor(BaseImageProcessor):
    r"""Image (and segmentation-map) processor for every hf_seg model.

    Args:
        resize_mode: ``"fixed"`` (to ``size``), ``"keep_ratio"`` (mmseg: largest scale with the long side <=
            ``scale[0]`` and the short side <= ``scale[1]``), ``"short_side"`` (CSAIL: short side to ``short_side``,
            long side capped at ``max_size``, both rounded up to ``size_divisor``) or ``"none"``.
        size: ``{"height", "width"}`` for ``"fixed"``.
        scale: ``[long, short]`` for ``"keep_ratio"``.
        short_side, max_size: for ``"short_side"``.
        size_divisor: ``"short_side"`` rounds the resized size up to a multiple of it (by resizing, as CSAIL does).
        pad_size_divisor: pads the bottom/right of images (with 0 after normalisation) and maps (with
            ``ignore_index``) to a multiple of it (mmseg's ``Pad``). ``valid_sizes`` in the output keeps the unpadded size.
        antialias: antialiased downscaling (PIL-like, CSAIL) or plain bilinear (OpenCV-like, mmseg).
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: mean/std are in the units after rescaling.
        channel_order: ``"RGB"`` or ``"BGR"`` (the order the network expects).
        do_reduce_labels: map label 0 to ``ignore_index`` and shift the others down by one (ADE20K, Pascal-Context).
        label_map: ``{original_id: new_id}`` applied to segmentation maps before reduction (e.g. Cityscapes
            labelIds -> trainIds); ids not in the map are kept.
        ignore_index: label of pixels the loss and metric skip; also the padding value of maps.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        resize_mode: str = "fixed",
        size: Mapping[str, int] | None = None,
        scale: Sequence[int] | None = None,
        short_side: int | None = None,
        max_size: int | None = None,
        size_divisor: int | None = None,
        pad_size_divisor: int | None = None,
        antialias: bool = False,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        channel_order: str = "RGB",
        do_reduce_labels: bool = False,
        label_map: Mapping[int, int] | None = None,
        ignore_index: int = 255,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if resize_mode == "fixed":
            size = dict(size or {"height": 512, "width": 512})
            if set(size) != {"height", "width"}:
                raise ValueError(f"size must be {{'height': H, 'width': W}}, got {size}")
        if resize_mode == "keep_ratio" and (scale is None or len(scale) != 2):
            raise ValueError("resize_mode='keep_ratio' needs scale=[long_side, short_side]")
        if resize_mode == "short_side" and short_side is None:
            raise ValueError("resize_mode='short_side' needs short_side")
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError("image_mean and image_std need three values")
        self.resize_mode = resize_mode
        self.size = size
        self.scale = list(scale) if scale is not None else None
        self.short_side = _positive_int_or_none("short_side", short_side)
        self.max_size = _positive_int_or_none("max_size", max_size)
        self.size_divisor = _positive_int_or_none("size_divisor", size_divisor)
        self.pad_size_divisor = _positive_int_or_none("pad_size_divisor", pad_size_divisor)
        self.antialias = antialias
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.channel_order = channel_order
        self.do_reduce_labels = do_reduce_labels
        # JSON turns int keys into strings; store them as ints
        self.label_map = {int(k): int(v) for k, v in label_map.items()} if label_map else None
        self.ignore_index = ignore_index

    # ------------------------------------------------------------------------------------------ public API
    def __call__(self, images, segmentation_maps=None, **kwargs) -> BatchFeature:
        return self.preprocess(images, segmentation_maps=segmentation_maps, **kwargs)

    def preprocess(self, images, segmentation_maps=None, return_tensors="pt", input_data_format=None,
                   do_convert_rgb=None, **overrides) -> BatchFeature:
        """Turn one image or a list of images (PIL, numpy HWC/CHW, torch CHW) into ``pixel_values`` [B, 3, H, W].

        ``segmentation_maps`` (same count and sizes) become ``labels`` [B, H, W] int64. Any constructor argument can
        be overridden per call. ``input_data_format`` (``"channels_last"``/``"channels_first"``) says where the
        channels of arrays and tensors are; without it the layout is inferred from the shape and refused when both
        ends could be channels (an image 1, 3 or 4 pixels high or wide). Integer values are read as
        :func:`hf_seg.image_io.intensity_divisor` says (uint8 0..255, uint16 0..65535, other integer types by
        value range); floats must hold 0..1. PIL images are read by :func:`hf_seg.image_io.image_to_array`, in their
        EXIF orientation, exactly as ``hf-seg predict`` / evaluate / finetune read files. ``do_convert_rgb`` (transformers'
        argument) may be True: images are always converted to the 3-channel RGB every model takes.
        """
        if do_convert_rgb is not None and not do_convert_rgb:
            raise ValueError("do_convert_rgb=False is not supported: every hf_seg model takes 3-channel RGB images, "
                             "and the processor converts grayscale, RGBA and palette images to it")
        if input_data_format not in (None, "channels_first", "channels_last"):
            input_data_format = getattr(input_data_format, "value", input_data_format)  # transformers' enum
            if input_data_format not in ("channels_first", "channels_last"):
                raise ValueError(f"input_data_format must be 'channels_first' or 'channels_last', got "
                                 f"{input_data_format!r}")
        if overrides:
            unknown = set(overrides) - set(self.to_dict())
            if unknown:
                raise TypeError(f"unknown preprocessing arguments: {sorted(unknown)}")
            settings = self.to_dict()
            settings.update(overrides)
            for key in ("image_processor_type", "processor_class", "auto_map"):
                settings.pop(key, None)
            return type(self)(**settings).preprocess(images, segmentation_maps, return_tensors, input_data_format)

        images = _as_list(images)
        if not images:
            raise ValueError("no images given")
        pixel_values = [self._prepare_image(image, i, input_data_format) for i, image in enumerate(images)]
        labels = None
        if segmentation_maps is not None:
            maps = _as_list(segmentation_maps)
            if len(maps) != len(images):
                raise ValueError(f"got {len(images)} images but {len(maps)} segmentation maps")
            labels = []
            for i, (seg, image) in enumerate(zip(maps, pixel_values)):
                seg = self._prepare_map(seg, i)
                if seg.shape != image.shape[-2:]:
                    raise ValueError(f"segmentation map {i} is {tuple(seg.shape)} (H, W) but its image is "
                                     f"{tuple(image.shape[-2:])}")
                labels.append(seg)

        sizes = [self.target_size(*img.shape[-2:]) for img in pixel_values]
        pixel_values = [self._resize_image(img, size) for img, size in zip(pixel_values, sizes)]
        if labels is not None:
            labels = [_resize_map(seg, size) for seg, size in zip(labels, sizes)]
        pixel_values = [self._normalize(img) for img in pixel_values]

        batch_hw = self._batch_size(sizes)
        data = {"pixel_values": torch.stack([_pad(img, batch_hw, 0.0) for img in pixel_values])}
        if labels is not None:
            data["labels"] = torch.stack([_pad(seg, batch_hw, self.ignore_index) for seg in labels])
        if any(tuple(s) != batch_hw for s in sizes):
            data["valid_sizes"] = torch.tensor(sizes)
        if return_tensors in ("np", "numpy"):
            data = {k: v.numpy() for k, v in data.items()}
        elif return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return BatchFeature(data=data)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of this size is resized to by the test protocol."""
        if self.resize_mode == "fixed":
            return self.size["height"], self.size["width"]
        if self.resize_mode == "keep_ratio":
            return target_size(height, width, scale=self.scale)
        if self.resize_mode == "short_side":  # the original truncates, then rounds up to the divisor
            return target_size(height, width, short_side=self.short_side, max_size=self.max_size,
                               size_divisor=self.size_divisor, round_down=True)
        return height, width

    def post_process_semantic_segmentation(self, outputs, target_sizes=None, valid_sizes=None, input_size=None):
        """Per-image label maps [H, W] from ``outputs.logits``: crop batch padding, resize (bilinear) and argmax.

        ``target_sizes`` are the (height, width) wanted per image (e.g. the original image sizes); without them the
        maps stay at the logits' resolution. When the processor padded a batch, pass its ``valid_sizes`` and the
        padded ``input_size`` (``pixel_values.shape[-2:]``) so each image's padding is cropped first.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(f"got {len(target_sizes)} target sizes for {len(logits)} images")
        if valid_sizes is not None and input_size is None:
            raise ValueError("valid_sizes needs input_size, the padded (height, width) of pixel_values")
        results = []
        for i in range(len(logits)):
            item = logits[i : i + 1]
            if valid_sizes is not None:
                h, w = (int(s) for s in valid_sizes[i])
                rows = math.ceil(h * item.shape[-2] / int(input_size[0]))
                cols = math.ceil(w * item.shape[-1] / int(input_size[1]))
                item = item[..., :rows, :cols]
            if target_sizes is not None:
                item = F.interpolate(item.float(), size=tuple(int(s) for s in target_sizes[i]), mode="bilinear",
                                     align_corners=False)
            results.append(item[0].argmax(dim=0))
        return results

    # ---------------------------------------------------------------------------------------- internals
    def _batch_size(self, sizes) -> tuple[int, int]:
        height = max(s[0] for s in sizes)
        width = max(s[1] for s in sizes)
        if self.pad_size_divisor:
            height, width = _round_up(height, self.pad_size_divisor), _round_up(width, self.pad_size_divisor)
        return height, width

    def _prepare_image(self, image, index: int, input_data_format=None) -> torch.Tensor:
        """Any supported input -> float32 [3, H, W] in 0..255, RGB."""
        array = _to_array(image, index, kind="image")
        if _is_pil(image):
            input_data_format = "channels_last"
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3:
            axis = _channel_axis(array.shape, input_data_format, index)
            if axis == -1:
                array = np.moveaxis(array, -1, 0)
        else:
            raise ValueError(f"image {index} has {array.ndim} dimensions: expected (H, W), (H, W, C) or (C, H, W)")
        if array.shape[1] == 0 or array.shape[2] == 0:
            raise ValueError(f"image {index} is empty (shape {array.shape})")
        if array.dtype.kind in "iu":
            try:
                divisor = intensity_divisor(array)
            except ValueError as err:
                raise ValueError(f"image {index}: {err}") from None
            tensor = torch.from_numpy(np.array(array, dtype=np.float32, order="C"))  # owns its memory
            if divisor != 1.0:
                tensor /= divisor  # 16-bit -> 0..255
        elif array.dtype.kind == "f":
            tensor = torch.from_numpy(np.array(array, dtype=np.float32, order="C"))  # owns its memory
            if not torch.isfinite(tensor).all():
                raise ValueError(f"image {index} contains NaN or infinite values")
            if tensor.min() < 0 or tensor.max() > 1:
                raise ValueError(f"float image {index} must hold values in [0, 1] (got "
                                 f"{tensor.min().item():.3g}..{tensor.max().item():.3g}); pass uint8 for 0..255")
            tensor = tensor * 255.0
        else:
            raise ValueError(f"image {index} has unsupported dtype {array.dtype}")
        if tensor.shape[0] == 1:
            tensor = tensor.expand(3, -1, -1)
        elif tensor.shape[0] == 4:
            tensor = tensor[:3]  # RGBA: drop alpha, as decoding a file does (hf_seg.image_io)
        return tensor

    def _prepare_map(self, seg, index: int) -> torch.Tensor:
        array = _to_array(seg, index, kind="segmentation map")
        if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
            array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
        if array.ndim != 2:
            raise ValueError(f"segmentation map {index} must be (H, W), got shape {array.shape}")
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise ValueError(f"segmentation map {index} must hold integer class ids")
        elif array.dtype.kind not in "iub":
            raise ValueError(f"segmentation map {index} has unsupported dtype {array.dtype}")
        return torch.from_numpy(convert_labels(array, self.label_map, self.do_reduce_labels, self.ignore_index))

    def _resize_image(self, image: torch.Tensor, size) -> torch.Tensor:
        if tuple(image.shape[-2:]) == tuple(size):
            return image
        resized = F.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False,
                                antialias=self.antialias)[0]
        return resized.clamp_(0, 255)

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        if self.channel_order == "BGR":
            image = image.flip(0)
        if self.do_rescale:
            image = image * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=image.dtype)[:, None, None]
            std = torch.tensor(self.image_std, dtype=image.dtype)[:, None, None]
            image = (image - mean) / std
        return image.contiguous()


def _as_list(inputs) -> list:
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return list(inputs)
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        return list(inputs)
    return [inputs]


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _channel_axis(shape, input_data_format, index: int) -> int:
    """0 (channels-first) or -1 (channels-last) for a 3-d image array of ``shape``."""
    first, last = shape[0] in (1, 3, 4), shape[-1] in (1, 3, 4)
    if input_data_format == "channels_first":
        axis = 0
    elif input_data_format == "channels_last":
        axis = -1
    elif first and last:
        raise ValueError(f"image {index} has shape {tuple(shape)}: it could be (C, H, W) or (H, W, C); pass "
                         "input_data_format='channels_first' or 'channels_last'")
    elif first or last:
        axis = 0 if first else -1
    else:
        raise ValueError(f"image {index} has shape {tuple(shape)}: expected 1, 3 or 4 channels first or last")
    if shape[axis] not in (1, 3, 4):
        raise ValueError(f"image {index} has shape {tuple(shape)}: {shape[axis]} channels with "
                         f"input_data_format={input_data_format!r}; expected 1, 3 or 4")
    return axis


def _to_array(obj, index: int, kind: str) -> np.ndarray:
    if _is_pil(obj):
        if kind == "image":
            return image_to_array(open_image(obj))  # EXIF orientation, 16-bit, palette, CMYK, ... like files
        try:
            return decode_label_map(obj)
        except ImageReadError as err:
            raise ValueError(f"{kind} {index}: {err.reason}") from None
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu()
        if obj.dtype in (torch.bfloat16, torch.float16):
            obj = obj.float()
        return obj.numpy()
    if isinstance(obj, np.ndarray):
        return obj
    raise ValueError(f"{kind} {index} is a {type(obj).__name__}: expected a PIL image, numpy array or torch tensor")


def _resize_map(labels: torch.Tensor, size) -> torch.Tensor:
    if tuple(labels.shape) == tuple(size):
        return labels
    return F.interpolate(labels[None, None].float(), size=tuple(size), mode="nearest-exact")[0, 0].long()


def _pad(tensor: torch.Tensor, size, value) -> torch.Tensor:
    pad_h, pad_w = size[0] - tensor.shape[-2], size[1] - tensor.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return tensor
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def _positive_int_or_none(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
