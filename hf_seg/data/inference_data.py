"""Test-time data for evaluation and prediction: decoding, the processor's views and label conversion in
``DataLoader`` workers, batches planned once for every process count.

* :class:`InferenceDataset`: item ``i`` is image ``i`` decoded by :func:`hf_seg.image_io.decode_image`, run through the
  processor at each TTA scale (its test-time resize, normalisation and padding), with its annotation (when there is
  one) turned into training ids and checked. Failures become an ``error`` in the item, naming the file, so that the
  main process decides (evaluate stops, predict skips and goes on) and no worker traceback hides the file name.
* :func:`plan_batches`: images grouped into batches of up to ``batch_size`` images of the same original size (hence
  the same processed size), in a fixed order that does not depend on the number of processes. Processes then take
  whole batches (:meth:`hf_seg.distributed.Processes.shard`), so every image is computed in the same batch with
  the same neighbours whether 1 or N processes run: the predictions, and the confusion matrix, are bit-identical.
* :func:`make_loader`: the ``DataLoader`` (worker processes, pinned memory and prefetch for a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..image_io import ImageReadError, decode_image, decode_label_map, describe_source, image_size, to_uint8

__all__ = ["InferenceDataset", "LabelCheck", "collate_samples", "image_names", "make_loader", "make_views",
           "plan_batches", "scaled_processors"]


@dataclass(frozen=True)
class LabelCheck:
    """Which training ids an annotation may hold: ``0..num_labels-1`` and ``ignore_index``. Other values are an
    error naming the file unless ``allow_out_of_range`` (then they count as in ``evaluate``'s mean_iou: a miss for
    nothing, a false positive for the predicted class) and are counted."""

    num_labels: int
    ignore_index: int = 255
    allow_out_of_range: bool = False


# ------------------------------------------------------------------------------------------------- views
def scaled_processors(processor, scales) -> list[tuple[object, float | None]]:
    """Per TTA scale ratio: (processor that resizes to that scale, ratio left to apply afterwards or ``None``).

    mmseg's ``img_scale * ratio`` (truncated) for keep-ratio resizing, ``short_side * ratio`` for short-side
    resizing, ``size * ratio`` for fixed sizes; processors without a resize get a bilinear rescale of their output.
    """
    mode = getattr(processor, "resize_mode", None)
    out = []
    for ratio in scales:
        overrides = {}
        if ratio != 1.0:
            if mode == "keep_ratio":
                overrides["scale"] = [int(s * ratio) for s in processor.scale]
            elif mode == "short_side":
                overrides["short_side"] = int(processor.short_side * ratio)
                if processor.max_size is not None:
                    overrides["max_size"] = int(processor.max_size * ratio)
            elif mode == "fixed":
                overrides["size"] = {"height": int(processor.size["height"] * ratio),
                                     "width": int(processor.size["width"] * ratio)}
        scaled = processor
        if overrides:
            settings = processor.to_dict()
            for key in ("image_processor_type", "processor_class", "auto_map", "_processor_class"):
                settings.pop(key, None)
            settings.update(overrides)
            scaled = type(processor)(**settings)
        post = ratio if ratio != 1.0 and mode not in ("keep_ratio", "short_side", "fixed") else None
        out.append((scaled, post))
    return out


def make_views(processor, image, scales, processors=None) -> list[tuple[torch.Tensor, tuple[int, int] | None]]:
    """The processor's preprocessing at each TTA scale (see :func:`scaled_processors`). Returns
    (pixel_values [1, 3, h, w], valid (h, w) or None) per scale."""
    from torch.nn import functional as F

    processors = processors or scaled_processors(processor, scales)
    kwargs = {"input_data_format": "channels_last"} if isinstance(image, np.ndarray) else {}
    views = []
    for scaled, post in processors:
        inputs = scaled(image, return_tensors="pt", **kwargs)
        pixel_values = inputs["pixel_values"]
        valid = tuple(int(v) for v in inputs["valid_sizes"][0]) if "valid_sizes" in inputs else None
        if post is not None:
            h, w = pixel_values.shape[-2:]
            size = (max(1, int(h * post + 0.5)), max(1, int(w * post + 0.5)))
            pixel_values = F.interpolate(pixel_values, size=size, mode="bilinear", align_corners=False)
            valid = None
        views.append((pixel_values, valid))
    return views


# ------------------------------------------------------------------------------------------------- dataset
def _compact(labels: np.ndarray) -> torch.Tensor:
    """Training ids in the smallest dtype that holds them (less to pass between processes)."""
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return torch.from_numpy(labels.astype(dtype))
    return torch.from_numpy(labels.astype(np.int64))


class InferenceDataset(torch.utils.data.Dataset):
    """Rows -> decoded, preprocessed test-time samples (see the module docstring).

    Args:
        rows: indexable; row ``i`` is a mapping with ``image_column`` (path, bytes, ``{"path", "bytes"}``, PIL image
            or array) and, for evaluation, ``label_column``.
        processor: the model's image processor.
        scales: TTA scale ratios (``[1.0]`` without TTA).
        label_fn: stored annotation values -> training ids (``DatasetInfo.convert_labels``); ``None``: no labels.
        label_check: the ids allowed (see :class:`LabelCheck`).
        names: a name per row for messages and output files (default: the image's path or its index).
        keep_image: also return the decoded image as uint8 [H, W, 3] (``image``; for overlays).
    """

    def __init__(self, rows, processor, scales: Sequence[float] = (1.0,), label_fn=None,
                 label_check: LabelCheck | None = None, names: Sequence[str] | None = None,
                 image_column: str = "image", label_column: str = "annotation", keep_image: bool = False):
        self.rows = rows
        self.keep_image = keep_image
        self.processor = processor
        self.scales = list(scales)
        self.processors = scaled_processors(processor, self.scales)
        self.label_fn = label_fn
        self.label_check = label_check
        self.names = names
        self.image_column = image_column
        self.label_column = label_column

    def __len__(self) -> int:
        return len(self.rows)

    def name(self, index: int, row=None) -> str:
        if self.names is not None:
            return str(self.names[index])
        if row is not None:
            source = row[self.image_column]
            described = describe_source(source)
            if not described.startswith("<"):
                return described
        return f"image {index}"

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        row = name = None
        try:
            row = self.rows[index]
            name = self.name(index, row)
            return self._load(index, row, name)
        except (ImageReadError, ValueError, OSError) as err:
            if name is None:
                name = self.name(index)
            message = str(err) if isinstance(err, ImageReadError) else f"{name}: {err}"
            return {"index": index, "name": name, "error": message}

    def _load(self, index: int, row, name: str) -> dict:
        annotation = row[self.label_column] if self.label_fn is not None else None
        if self.label_fn is not None and annotation is None:
            # e.g. a hub dataset row without a map: counted and reported, not evaluated
            return {"index": index, "name": name, "error": None, "missing": True}
        image = decode_image(row[self.image_column])
        size = (int(image.shape[0]), int(image.shape[1]))
        item = {"index": index, "name": name, "size": size, "error": None, "out_of_range": 0}
        if self.label_fn is not None:
            stored = decode_label_map(annotation)
            label_name = describe_source(annotation)
            if tuple(stored.shape) != size:
                raise ValueError(f"the image is {size[0]}x{size[1]} but its annotation {label_name} is "
                                 f"{stored.shape[0]}x{stored.shape[1]}")
            labels = self.label_fn(stored)
            if self.label_check is not None:
                item["out_of_range"] = self._check(labels, stored, label_name)
            item["labels"] = _compact(labels)
        if self.keep_image:
            item["image"] = torch.from_numpy(np.ascontiguousarray(to_uint8(image)))
        views = make_views(self.processor, image, self.scales, self.processors)
        item["views"] = [v for v, _ in views]  # [1, 3, h, w] each
        item["valid"] = [valid for _, valid in views]
        return item

    def _check(self, labels: np.ndarray, stored: np.ndarray, label_name: str) -> int:
        check = self.label_check
        bad = (labels != check.ignore_index) & ((labels < 0) | (labels >= check.num_labels))
        count = int(bad.sum())
        if count and not check.allow_out_of_range:
            values = np.unique(stored[bad])
            shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
            raise ValueError(f"annotation {label_name} holds values outside the dataset's {check.num_labels} classes "
                             f"and ignore index {check.ignore_index} ({count} pixels, stored values {shown}); fix "
                             "the file or the dataset's label convention, or pass --allow-out-of-range-labels to "
                             "count them as `evaluate`'s mean_iou does")
        return count


def collate_samples(samples: list[dict]) -> dict:
    """A batch from samples of one original size: views stacked per scale, labels stacked; failed samples are
    passed on in ``errors`` (name, message)."""
    good = [s for s in samples if s.get("error") is None and not s.get("missing")]
    batch = {"errors": [(s["name"], s["error"]) for s in samples if s.get("error") is not None],
             "missing": [s["name"] for s in samples if s.get("missing")],
             "indices": [s["index"] for s in good], "names": [s["name"] for s in good],
             "out_of_range": sum(s.get("out_of_range", 0) for s in good)}
    if not good:
        return batch
    sizes = {s["size"] for s in good}
    if len(sizes) != 1:
        raise ValueError(f"a batch holds images of different sizes {sorted(sizes)}; plan_batches groups by size")
    batch["size"] = good[0]["size"]
    batch["views"] = [torch.cat([s["views"][k] for s in good]) for k in range(len(good[0]["views"]))]
    batch["valid"] = good[0]["valid"]
    if "image" in good[0]:
        batch["images"] = torch.stack([s["image"] for s in good])
    if "labels" in good[0]:
        labels = [s["labels"] for s in good]
        dtype = max((t.dtype for t in labels), key=lambda d: torch.iinfo(d).bits)
        batch["labels"] = torch.stack([t.to(dtype) for t in labels])
    return batch


# ------------------------------------------------------------------------------------------------- batches
def plan_batches(count: int, batch_size: int = 1, size_of=None) -> list[list[int]]:
    """Index batches of up to ``batch_size`` images sharing an original size (``size_of(i)`` -> (h, w), or raises
    for an unreadable image, which then gets a batch of its own). Batches come in order of their first image; the
    plan depends only on the images, never on the number of processes."""
    if batch_size <= 1 or size_of is None:
        return [[i] for i in range(count)]
    groups: dict[tuple[int, int], list[int]] = {}
    batches: list[list[int]] = []
    for i in range(count):
        try:
            key = tuple(size_of(i))
        except (ImageReadError, ValueError, OSError):
            batches.append([i])
            continue
        group = groups.setdefault(key, [])
        group.append(i)
        if len(group) == batch_size:
            batches.append(groups.pop(key))
    batches.extend(groups.values())
    return sorted(batches, key=lambda b: b[0])


def header_size_of(rows, image_column: str = "image"):
    """``size_of`` for :func:`plan_batches`: an image's (height, width) from its file header."""
    def size_of(index: int) -> tuple[int, int]:
        return image_size(rows[index][image_column])
    return size_of


def image_names(dataset, image_column: str = "image", path_column: str = "image_path") -> list[str] | None:
    """The file path of every row of a ``datasets.Dataset`` without decoding images (``None`` when unknown)."""
    columns = getattr(dataset, "column_names", None) or []
    if path_column in columns:
        return [str(p) for p in dataset[path_column]]
    data = getattr(dataset, "data", None)
    try:
        column = data.column(image_column).combine_chunks()  # arrow struct<bytes, path>: read the paths only
        paths = column.field("path").to_pylist()
    except Exception:  # noqa: BLE001 - not an Image column stored as paths: names fall back to indices
        return None
    if any(not p for p in paths):
        return None
    return [str(p) for p in paths]


def undecoded(dataset, columns: Sequence[str]):
    """``dataset`` with its ``datasets.Image`` columns left as ``{"path", "bytes"}``: decoding happens in the
    workers with :func:`hf_seg.image_io.decode_image` (one decoder, errors naming the file)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency
        return dataset
    if not isinstance(dataset, datasets.Dataset):
        return dataset
    for column in columns:
        feature = dataset.features.get(column)
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def make_loader(dataset: InferenceDataset, batches: list[list[int]], num_workers: int = 0,
                pin_memory: bool = False, prefetch_factor: int = 2):
    """The ``DataLoader`` over ``batches`` (this process's share of :func:`plan_batches`)."""
    kwargs = {}
    if num_workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=False)
        # workers only decode and resize: one thread each, and never CUDA
        kwargs["worker_init_fn"] = _worker_init
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                                       collate_fn=collate_samples, pin_memory=pin_memory, **kwargs)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
