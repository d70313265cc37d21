"""Training/evaluation datasets on top of a ``datasets.Dataset`` with image and annotation columns.

The folder layouts and hub datasets are read by :mod:`hf_seg.data`; this module only turns rows into tensors:

* :class:`TrainDataset`: the recipe's augmentation (``transforms.v2``) seeded per (run seed, epoch, index), so a
  resumed run sees exactly the crops an uninterrupted one does, whatever the number of workers or processes. It is
  indexed by *keys* ``epoch * len + index`` that :class:`EpochKeySampler` yields.
* :class:`EvalDataset`: the processor's test-time resize (labels resized the same way, nearest).
* :class:`SegmentationCollator`: pads a batch to a common size (images with 0, labels with the ignore index).
* :func:`check_dataset`: the mistakes a user can make, found before training starts, with clear messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F
from torchvision import tv_tensors

from ..image_io import decode_label_map, image_to_array, open_image, to_uint8
from ..sizes import target_size
from .transforms import TargetMap, seeded

__all__ = ["TrainDataset", "EvalDataset", "EpochKeySampler", "SegmentationCollator", "check_dataset",
           "DatasetCheckError", "to_image_tensor", "to_label_array", "read_row", "row_files", "eval_canvas"]


class DatasetCheckError(ValueError):
    """A dataset/model combination that cannot train; the message says what to change."""


def to_image_tensor(image) -> torch.Tensor:
    """A PIL image / numpy HWC / CHW tensor -> uint8 [3, H, W] RGB."""
    if hasattr(image, "convert"):  # PIL: the one decoder (16-bit, palette, CMYK, EXIF ...), then 8 bits
        image = to_uint8(image_to_array(open_image(image)))
    elif isinstance(image, np.ndarray) and image.dtype.kind in "iu":
        image = to_uint8(image)  # uint16 is 16-bit, other integer types by value range (as the processor reads them)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        tensor = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)  # writable: no warning
    else:
        tensor = torch.as_tensor(image)
    if tensor.dtype != torch.uint8:
        tensor = (tensor.float() * (255.0 if tensor.is_floating_point() and tensor.max() <= 1 else 1.0))
        tensor = tensor.round().clamp(0, 255).to(torch.uint8)
    if tensor.shape[0] == 4:
        tensor = tensor[:3]
    return tensor.contiguous()


def to_label_array(annotation) -> np.ndarray:
    """Class ids [H, W]: palette indices / 16-bit values kept; colour maps and non-integer values (float label
    arrays would be truncated, 2.7 -> 2) refused by the one decoder."""
    return decode_label_map(annotation if hasattr(annotation, "mode") else np.asarray(annotation))


def read_row(dataset, index: int, image_column: str, label_column: str, split: str = "train"):
    """(uint8 [3, H, W] image, [H, W] class ids) of row ``index``; any failure to read or decode it is a
    :class:`DatasetCheckError` naming the split, the row and its files."""
    try:
        row = dataset[int(index)]
        return to_image_tensor(row[image_column]), to_label_array(row[label_column])
    except Exception as err:  # noqa: BLE001 - whatever the decoder says, reported with the file it concerns
        reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
        raise DatasetCheckError(f"{split} row {index} ({row_files(dataset, index, image_column, label_column)}): "
                                f"cannot read it: {reason}") from err


def row_files(dataset, index: int, *columns: str) -> str:
    """The files behind row ``index``'s image columns, for messages (read without decoding them)."""
    try:
        table = dataset.with_format("arrow")[int(index)]
        names = []
        for column in columns:
            value = table[column].to_pylist()[0]
            path = value.get("path") if isinstance(value, dict) else None
            names.append(str(path) if path else f"{column}: stored bytes")
        return ", ".join(names)
    except Exception:  # noqa: BLE001 - not an arrow-backed dataset: the row number has to do
        return "files unknown"


class EpochKeySampler(torch.utils.data.Sampler):
    """Yields ``epoch * n + index`` for a permutation of ``range(n)`` that depends only on (seed, epoch)."""

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True):
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        base = self.epoch * self.num_samples
        return iter(base + i for i in order)


class TrainDataset(torch.utils.data.Dataset):
    """Rows of ``dataset`` through ``transforms``; returns ``pixel_values`` [3, h, w], ``labels`` and the family's
    extra targets.

    ``label_fn`` maps a raw annotation array to training ids (label map, label reduction, ignore index).
    ``extra_targets`` (:class:`hf_seg.training.targets.ExtraTargets`) are computed once on the full label map, before
    the augmentation, and then move with the labels (as the originals' precomputed target maps do).
    """

    def __init__(self, dataset, transforms, label_fn: Callable[[np.ndarray], np.ndarray], seed: int = 0,
                 image_column: str = "image", label_column: str = "annotation", extra_targets=None,
                 ignore_index: int = 255):
        self.dataset = dataset
        self.transforms = transforms
        self.label_fn = label_fn
        self.seed = seed
        self.image_column = image_column
        self.label_column = label_column
        self.extra_targets = extra_targets
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, raw = read_row(self.dataset, index, self.image_column, self.label_column, split="training")
        labels = torch.from_numpy(np.asarray(self.label_fn(raw), dtype=np.int64))
        return image, labels

    def __getitem__(self, key: int) -> dict:
        key = int(key)
        image, labels = self.load(key % len(self))
        sample = {"image": tv_tensors.Image(image), "labels": tv_tensors.Mask(labels)}
        if self.extra_targets is not None:
            maps = self.extra_targets.compute(labels.numpy(), self.ignore_index)
            sample.update({name: torch.as_tensor(np.asarray(value)).to(torch.int64).as_subclass(TargetMap)
                           for name, value in maps.items()})
        with seeded((self.seed * 1_000_003 + key) % (2**63 - 1)):
            sample = self.transforms(sample)
        item = {"pixel_values": sample["image"].as_subclass(torch.Tensor),
                "labels": sample["labels"].as_subclass(torch.Tensor).to(torch.int64)}
        for name in (self.extra_targets.names if self.extra_targets is not None else ()):
            item[name] = sample[name].as_subclass(torch.Tensor).to(torch.int64)
        return item


class EvalDataset(torch.utils.data.Dataset):
    """Rows of ``dataset`` resized by the processor's test protocol (no augmentation)."""

    def __init__(self, dataset, processor, label_fn, image_column: str = "image", label_column: str = "annotation"):
        self.dataset = dataset
        self.processor = test_time_processor(processor)
        self.label_fn = label_fn
        self.image_column = image_column
        self.label_column = label_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        image, raw = read_row(self.dataset, index, self.image_column, self.label_column, split="evaluation")
        labels = torch.from_numpy(np.asarray(self.label_fn(raw), dtype=np.int64))
        batch = self.processor(images=image, segmentation_maps=labels, input_data_format="channels_first")
        return {"pixel_values": batch["pixel_values"][0], "labels": batch["labels"][0]}


def test_time_processor(processor):
    """A copy of ``processor`` that resizes and normalises but leaves labels as they are (they are training ids
    already) and does not pad (the collator pads batches)."""
    settings = processor.to_dict()
    for key in ("image_processor_type", "processor_class", "auto_map", "_processor_class"):
        settings.pop(key, None)
    settings.update(do_reduce_labels=False, label_map=None, pad_size_divisor=None)
    return type(processor)(**settings)


def eval_canvas(processor) -> tuple[int, int] | None:
    """A (height, width) every test-time-resized image fits in, so that batches gathered across processes have one
    shape (``None`` when the processor does not bound the size)."""
    mode = getattr(processor, "resize_mode", None)
    if mode == "fixed":
        size = (processor.size["height"], processor.size["width"])
    elif mode == "keep_ratio":
        side = max(processor.scale)
        size = (side, side)
    elif mode == "short_side" and processor.max_size:
        side = processor.max_size
        if processor.size_divisor:
            side = -(-side // processor.size_divisor) * processor.size_divisor
        size = (side, side)
    else:
        return None
    return int(size[0]), int(size[1])


@dataclass
class SegmentationCollator:
    """Stack samples, padding bottom/right to the batch's largest size (or ``canvas``), rounded up to
    ``size_divisor``: images with 0 (after normalisation, as mmseg), labels with ``ignore_index`` and the maps named in
    ``fills`` with their value (a family's extra targets)."""

    ignore_index: int = 255
    size_divisor: int | None = None
    canvas: tuple[int, int] | None = None
    fills: dict = field(default_factory=dict)

    def __call__(self, samples: list[dict]) -> dict:
        height = max(s["pixel_values"].shape[-2] for s in samples)
        width = max(s["pixel_values"].shape[-1] for s in samples)
        if self.canvas is not None:
            height, width = max(height, self.canvas[0]), max(width, self.canvas[1])
        if self.size_divisor:
            d = self.size_divisor
            height, width = -(-height // d) * d, -(-width // d) * d
        batch = {}
        for key in samples[0]:
            values = [s[key] for s in samples]
            if not isinstance(values[0], torch.Tensor) or values[0].dim() < 2:
                batch[key] = torch.stack([torch.as_tensor(v) for v in values]) if isinstance(
                    values[0], torch.Tensor) else values
                continue
            fill = self.fills.get(key, self.ignore_index if not values[0].is_floating_point() else 0.0)
            padded = [F.pad(v, (0, width - v.shape[-1], 0, height - v.shape[-2]), value=fill) for v in values]
            batch[key] = torch.stack(padded)
        return batch


# -------------------------------------------------------------------------------------------------- checks
def smallest_rescaled_size(size, pipeline) -> tuple[int, int]:
    """(height, width) of an image of ``size`` after the pipeline's smallest possible random rescale."""
    height, width = size
    if getattr(pipeline, "scale", None) is not None:
        if getattr(pipeline, "ratio_choices", None):
            lo = min(pipeline.ratio_choices)
        else:
            lo = pipeline.ratio_range[0] if pipeline.ratio_range is not None else 1.0
        return target_size(height, width, scale=pipeline.scale, ratio=lo)
    if getattr(pipeline, "short_sides", None):
        return target_size(height, width, short_side=min(pipeline.short_sides), max_size=pipeline.max_size)
    return height, width


def check_dataset(dataset, label_fn, num_labels: int, ignore_index: int, split: str = "train",
                  image_column: str = "image", label_column: str = "annotation", max_samples: int | None = 100,
                  pipeline=None) -> dict:
    """Look at up to ``max_samples`` rows (``None``: all) and refuse what cannot train, before training starts.

    Returns facts found on the way (``sizes``, ``label_ids``). Raises :class:`DatasetCheckError` for: no rows,
    missing columns, unreadable images, image/label size mismatch, label ids outside ``[0, num_labels)`` other than
    ``ignore_index``, maps with no labelled pixel at all, and (with a ``pipeline`` that forbids padding) images that
    the smallest random rescale makes smaller than the crop.
    """
    if dataset is None or len(dataset) == 0:
        raise DatasetCheckError(f"the {split} split has no images: check the dataset path and its folder layout")
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        missing = [c for c in (image_column, label_column) if c not in columns]
        if missing:
            raise DatasetCheckError(f"the {split} split has no column(s) {missing}; its columns are {columns} "
                                    f"(use --image-column/--label-column)")
    count = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    # spread the checked rows over the whole split
    indices = np.unique(np.linspace(0, len(dataset) - 1, num=count).round().astype(int)) if count else []
    seen_ids: set[int] = set()
    sizes = []
    labelled = 0
    for index in indices:
        image, raw = read_row(dataset, index, image_column, label_column, split)
        if tuple(raw.shape) != tuple(image.shape[-2:]):
            raise DatasetCheckError(f"{split} row {index}: image is {tuple(image.shape[-2:])} (H, W) but its label map "
                                    f"is {tuple(raw.shape)}; every label map must have its image's size")
        labels = np.asarray(label_fn(raw))
        ids = np.unique(labels)
        bad = [int(v) for v in ids if v != ignore_index and not 0 <= v < num_labels]
        if bad:
            raise DatasetCheckError(
                f"{split} row {index} ({row_files(dataset, index, label_column)}): label ids {bad[:10]} are outside "
                f"[0, {num_labels}) and are not the ignore index "
                f"{ignore_index}. The model has {num_labels} classes: use a dataset with at most that many, a model "
                f"built for this dataset's classes (--ignore-mismatched-sizes re-initialises the classifier for the "
                f"dataset's labels), or fix the dataset's label mapping (reduce_labels / label_map)")
        seen_ids.update(int(v) for v in ids if v != ignore_index)
        labelled += int((labels != ignore_index).sum())
        sizes.append(tuple(image.shape[-2:]))
    if len(indices) and labelled == 0:
        raise DatasetCheckError(f"the checked {split} label maps contain only the ignore index {ignore_index}: "
                                f"nothing to learn (wrong label mapping?)")
    crop = getattr(pipeline, "crop_size", None)
    if crop is not None and sizes and not pipeline.pad_small:
        small = [(s, smallest_rescaled_size(s, pipeline)) for s in sizes]
        small = [(s, r) for s, r in small if r[0] < crop[0] or r[1] < crop[1]]
        if small:
            (h, w), (rh, rw) = small[0]
            raise DatasetCheckError(
                f"{len(small)} checked {split} images are smaller than the crop {tuple(crop)} after the random "
                f"rescale (e.g. {h}x{w} -> {rh}x{rw}) and this recipe does not pad: pass a smaller --crop-size, a "
                f"larger --train-scale, or allow padding with the ignore index (--pad-small)")
    return {"sizes": sizes, "label_ids": sorted(seen_ids), "checked": len(indices)}
