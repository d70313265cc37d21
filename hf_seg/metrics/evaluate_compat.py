"""``evaluate``'s mean_iou, bit for bit, on the confusion-matrix core: same arguments, same outputs, same NaNs.

This is the one place in hf_seg where ``label_map`` is applied the way ``evaluate`` (and mmseg's ``mean_iou``) does:
entry by entry in dict order, chained (``{1: 2, 2: 3}`` sends 1 to 3), and where ``reduce_labels`` is evaluate's
(0 -> 255, v -> v - 1, 255 stays). The processor, the datasets and :class:`ConfusionMatrix` apply all entries at once
(``{0: 1, 1: 0}`` swaps); a map for which the two readings differ is logged as a warning here.

Deliberate differences from ``evaluate``, all on inputs where it breaks: ``label_map`` works (``evaluate`` receives
PIL images and raises) and its string keys (a map read from JSON) are read as ints instead of being silently ignored;
maps of different shapes in a pair, different numbers of predictions and references, and non-integer float maps raise
``ValueError``; values are compared as int64 (no uint8 overflow); no divide / empty-slice warnings. Memory does not
grow with the number of images: maps are reduced to counts as they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .confusion import ConfusionMatrix, as_label_tensor, confusion_matrix

logger = logging.getLogger(__name__)

_GRID_LIMIT = 1 << 20  # raw value pairs are counted on a dense grid up to this many cells, as sparse triples beyond
_COMPACT_AT = 64  # sparse parts merged into one past this many


def evaluate_references(references: torch.Tensor, label_map: Mapping[int, int] | None,
                        reduce_labels: bool) -> torch.Tensor:
    """References as ``evaluate`` sees them: ``label_map`` entry by entry (chained), then its ``reduce_labels``."""
    ref = references.long()
    for old, new in (label_map or {}).items():
        ref = torch.where(ref == old, new, ref)
    if reduce_labels:
        ref = torch.where(ref == 0, 255, ref) - 1
        ref = torch.where(ref == 254, 255, ref)
    return ref


def evaluate_label_map(label_map: Mapping | None) -> dict[int, int] | None:
    """The map with int keys; warns when applying it entry by entry differs from applying it all at once."""
    if not label_map:
        return None
    mapping = {int(k): int(v) for k, v in label_map.items()}
    chained = evaluate_references(torch.tensor(list(mapping)), mapping, False).tolist()
    differ = {k: (mapping[k], c) for k, c in zip(mapping, chained) if c != mapping[k]}
    if differ:
        logger.warning("label_map is order-sensitive: evaluate's mean_iou (and this evaluate-compatible metric) apply "
                       "it entry by entry, hf_seg's processor and datasets all at once (%s); convert the references "
                       "with hf_seg.label_sets.convert_labels, or use hf_seg.metrics.ConfusionMatrix, for hf_seg's "
                       "reading", "; ".join(f"{k} -> {c}, not {v}" for k, (v, c) in list(differ.items())[:5]))
    return mapping


class RawPairHistogram:
    """Counts of the raw (reference value, prediction value) pairs of integer maps, so that ``label_map`` /
    ``reduce_labels`` / ``ignore_index`` can be given at ``compute`` time as ``evaluate``'s API wants: a dense grid over
    the value range of the maps (e.g. 256 x num_labels cells for uint8 annotations) while it stays small; counts a
    grid cannot take become sparse (value, value, count) triples."""

    def __init__(self):
        self.reset()

    def reset(self) -> "RawPairHistogram":
        self._grid: np.ndarray | None = None
        self._lo = (0, 0)
        self._sparse: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        return self

    @property
    def empty(self) -> bool:
        return self._grid is None and not self._sparse

    def update(self, predictions, references) -> "RawPairHistogram":
        pred = as_label_tensor(predictions, "predictions").cpu().numpy()
        ref = as_label_tensor(references, "references").cpu().numpy()
        if pred.shape != ref.shape:
            raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
        if not ref.size:
            return self
        ref, pred = ref.reshape(-1), pred.reshape(-1)
        lo, hi = (int(ref.min()), int(pred.min())), (int(ref.max()), int(pred.max()))
        grid = self._grid
        if grid is not None and not (self._lo[0] <= lo[0] and hi[0] < self._lo[0] + grid.shape[0]
                                     and self._lo[1] <= lo[1] and hi[1] < self._lo[1] + grid.shape[1]):
            self._add_sparse(*self._grid_triples())  # the batch falls outside: keep the counts, start over
            grid = self._grid = None
        if grid is None:
            shape = (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1)
            if shape[0] * shape[1] > _GRID_LIMIT:  # too wide for a grid: this batch's pairs as triples
                pairs, counts = np.unique(np.stack([ref, pred], axis=1), axis=0, return_counts=True)
                self._add_sparse(pairs[:, 0], pairs[:, 1], counts)
                return self
            self._grid, self._lo = np.zeros(shape, dtype=np.int64), lo
            grid = self._grid
        keys = (ref - self._lo[0]) * grid.shape[1] + (pred - self._lo[1])
        grid += np.bincount(keys, minlength=grid.size).reshape(grid.shape)
        return self

    def _add_sparse(self, r, p, c) -> None:
        self._sparse.append((r, p, c))
        if len(self._sparse) > _COMPACT_AT:
            self._sparse = [_merge(self._sparse)]

    def _grid_triples(self):
        flat = self._grid.reshape(-1)
        nz = np.flatnonzero(flat)
        cols = self._grid.shape[1]
        return nz // cols + self._lo[0], nz % cols + self._lo[1], flat[nz].copy()

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reference_values, prediction_values, counts) of the non-zero cells, int64."""
        return _merge(self._sparse + ([self._grid_triples()] if self._grid is not None else []))

    def merge(self, other: "RawPairHistogram") -> "RawPairHistogram":
        self._add_sparse(*other.triples())
        return self

    def fold(self, num_labels: int, ignore_index=255, label_map=None, reduce_labels: bool = False) -> np.ndarray:
        """The (num_labels + 1)² confusion matrix of these pairs under evaluate's reading of the options."""
        r, p, c = (torch.from_numpy(a) for a in self.triples())
        refs = evaluate_references(r, evaluate_label_map(label_map), reduce_labels)
        return confusion_matrix(p, refs, num_labels, ignore_index, counts=c).numpy()


def _merge(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    pairs = np.concatenate([np.stack([r, p], axis=1) for r, p, _ in parts]).astype(np.int64, copy=False)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    counts = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(counts, inverse.reshape(-1), np.concatenate([c for _, _, c in parts]).astype(np.int64))
    return uniq[:, 0].copy(), uniq[:, 1].copy(), counts


class MeanIoU(ConfusionMatrix):
    """Streaming ``evaluate`` mean_iou: :class:`ConfusionMatrix` reading ``label_map`` / ``reduce_labels`` as
    ``evaluate`` does. ``update(..., method="histogram")`` keeps raw value pairs instead (:class:`RawPairHistogram`)."""

    def __init__(self, num_labels: int, ignore_index: int | None = 255, nan_to_num: float | None = None,
                 label_map: Mapping[int, int] | None = None, reduce_labels: bool = False):
        super().__init__(num_labels, ignore_index, nan_to_num)
        self.label_map, self.reduce_labels = evaluate_label_map(label_map), bool(reduce_labels)

    def reset(self) -> "MeanIoU":
        super().reset()
        self._raw = RawPairHistogram()
        return self

    def _references(self, references):
        return evaluate_references(as_label_tensor(references, "references"), self.label_map, self.reduce_labels)

    @torch.no_grad()
    def update(self, predictions, references, valid_mask=None, method: str = "auto") -> "MeanIoU":
        """``method``: ``"auto"``/``"direct"`` (count on the inputs' device) or ``"histogram"`` (raw pairs, CPU)."""
        if method in ("auto", "direct"):
            return super().update(predictions, references, valid_mask)
        if method != "histogram":
            raise ValueError(f"method must be 'auto', 'histogram' or 'direct', got {method!r}")
        if valid_mask is not None:
            keep = as_label_tensor(valid_mask, "valid_mask").bool().cpu()
            predictions = as_label_tensor(predictions, "predictions").cpu()[keep]
            references = as_label_tensor(references, "references").cpu()[keep]
        self._raw.update(predictions, references)
        self.num_updates += 1
        return self

    @property
    def confusion(self) -> np.ndarray:
        total = super().confusion
        if not self._raw.empty:
            total += self._raw.fold(self.num_labels, self.ignore_index, self.label_map, self.reduce_labels)
        return total


def mean_iou(predictions, references, num_labels: int, ignore_index: int | None, nan_to_num: float | None = None,
             label_map: Mapping[int, int] | None = None, reduce_labels: bool = False) -> dict[str, Any]:
    """Mean IoU with the arguments and outputs of ``evaluate.load("mean_iou").compute(...)``.

    ``predictions`` / ``references``: lists of [H, W] maps (arrays, tensors or PIL images, each pair its own size) or
    [B, H, W] batches. ``ignore_index`` is compared after ``label_map`` and ``reduce_labels``; ``None`` skips nothing.
    Returns ``mean_iou``, ``mean_accuracy``, ``overall_accuracy`` (np.float64) and ``per_category_iou``,
    ``per_category_accuracy`` (float64 arrays of shape (num_labels,)).
    """
    metric = MeanIoU(num_labels, ignore_index, nan_to_num, label_map, reduce_labels)
    return metric.update(predictions, references).compute()
