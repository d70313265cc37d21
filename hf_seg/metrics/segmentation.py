"""Mean IoU for semantic segmentation from a per-class confusion matrix.

The numbers are those of ``evaluate``'s ``mean_iou`` metric (itself a port of mmsegmentation's ``mean_iou``), bit for
bit: same arguments, same outputs (``mean_iou``, ``mean_accuracy``, ``overall_accuracy``, ``per_category_iou``,
``per_category_accuracy``), same NaN positions. What differs is how they are computed: ``evaluate`` stores every map
(as PNG/TIFF in an Arrow cache file) and runs three ``np.histogram`` calls per image; here each pair of maps is reduced
to a small joint histogram as soon as it arrives, so memory is O(num_labels²) whatever the number of images.

Semantics, per pixel (all of it is a function of the pair (reference value, prediction value)):

1. ``label_map`` is applied to the reference, entry by entry in dict order and **chained** like ``evaluate`` does
   (``{1: 2, 2: 3}`` sends 1 to 3). A map that both renames ``a -> b`` and sends ``b`` elsewhere therefore needs care;
   mapping labelIds to trainIds is safer done before the metric (see :func:`hf_seg.data` helpers).
2. ``reduce_labels``: reference 0 becomes 255, everything else ``v - 1``, and 255 stays 255 (mmseg's
   ``reduce_zero_label``).
3. Pixels whose (mapped, reduced) reference equals ``ignore_index`` are dropped.
4. Reference and prediction values outside ``[0, num_labels - 1]`` are counted nowhere for their own side: a
   prediction of 255 in a non-ignored pixel is a miss for the reference class but not a false positive of any class.

Deliberate differences from ``evaluate`` (all on inputs where ``evaluate`` breaks):

* ``label_map`` works (``evaluate``'s ``compute`` raises ``TypeError`` because it receives PIL images); string keys
  holding integers (a ``label_map`` read from JSON) are converted to ``int`` instead of being silently ignored.
* Maps of different shapes inside a pair, or different numbers of predictions and references, raise ``ValueError``.
* Non-integer float maps raise ``ValueError``; values are compared as int64 (no uint8 overflow).
* No "invalid value encountered in divide" / "Mean of empty slice" warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["mean_iou", "MeanIoU", "RawPairHistogram", "metrics_from_confusion", "pair_counts", "merge_pair_counts",
           "fold_pair_counts"]

# joint histograms of raw values: a persistent dense grid up to _GRID_LIMIT cells, a one-off dense bincount up to
# _DENSE_LIMIT cells, np.unique above; sparse triples are compacted past _SPARSE_COMPACT_AT cells
_GRID_LIMIT = 1 << 20
_DENSE_LIMIT = 1 << 24
_SPARSE_COMPACT_AT = 200_000


# --------------------------------------------------------------------------------------------- input handling
def _normalize_label_map(label_map: Mapping | None) -> dict[int, int] | None:
    if not label_map:
        return None
    return {int(k): int(v) for k, v in label_map.items()}


def _as_integer_map(x: Any, what: str) -> np.ndarray | torch.Tensor:
    """A map as an integer numpy array (CPU) or an integer torch tensor (other devices). No copy when possible."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.device.type != "cpu":
            if x.dtype.is_floating_point:
                if not bool(torch.equal(x, x.round())):
                    raise ValueError(f"{what} must hold integer class ids")
                x = x.long()
            elif x.dtype == torch.bool:
                x = x.to(torch.uint8)
            return x
        if x.dtype == torch.bool:
            x = x.to(torch.uint8)
        elif x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.numpy()
    elif not isinstance(x, np.ndarray):
        x = np.asarray(x)  # PIL images, nested lists
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    elif x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x)):
            raise ValueError(f"{what} must hold integer class ids")
        x = x.astype(np.int64)
    elif x.dtype.kind not in "iu":
        raise ValueError(f"{what} has unsupported dtype {x.dtype}")
    return x


def _iter_pairs(predictions, references):
    """Yield (prediction, reference) map pairs from lists / batched arrays / single maps."""

    def _split(obj):
        if isinstance(obj, (np.ndarray, torch.Tensor)):
            if obj.ndim == 2:
                return [obj]
            return obj  # iterating a [B, H, W] array yields maps; a whole batch is also fine as one "map"
        return obj

    preds, refs = _split(predictions), _split(references)
    if isinstance(preds, (np.ndarray, torch.Tensor)) and isinstance(refs, (np.ndarray, torch.Tensor)):
        if tuple(preds.shape) != tuple(refs.shape):
            raise ValueError(f"predictions {tuple(preds.shape)} and references {tuple(refs.shape)} differ in shape")
        # one call for the whole batch: every statistic is a per-pixel sum
        yield preds, refs
        return
    preds, refs = list(preds), list(refs)
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions but {len(refs)} references")
    yield from zip(preds, refs)


# ------------------------------------------------------------------------------------- joint raw histograms
def _as_numpy_pair(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_integer_map(predictions, "predictions")
    ref = _as_integer_map(references, "references")
    pred = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else pred
    ref = ref.cpu().numpy() if isinstance(ref, torch.Tensor) else ref
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    return pred, ref


def _value_range(array: np.ndarray) -> tuple[int, int]:
    if array.dtype == np.uint8:
        return 0, 255  # no pass over the data; the histogram grid is small anyway
    return int(array.min()), int(array.max())


def _dense_counts(pred: np.ndarray, ref: np.ndarray, r0: int, p0: int, rows: int, cols: int) -> np.ndarray:
    """Histogram over the grid [r0, r0 + rows) x [p0, p0 + cols) (all values must lie inside), flat int64."""
    cells = rows * cols
    # modular arithmetic in a small unsigned type is exact because every true key is < cells <= 2**bits
    kdt = np.dtype(np.uint16) if cells <= (1 << 16) else np.dtype(np.uint32) if cells <= (1 << 32) else np.dtype(
        np.int64)
    modulus = 1 << (8 * kdt.itemsize) if kdt.kind == "u" else None
    if modulus is None:
        key = (ref.astype(np.int64) - r0) * cols + (pred.astype(np.int64) - p0)
    else:
        key = ref.astype(kdt)  # always a fresh array, safe to modify in place
        if r0:
            key -= kdt.type(r0 % modulus)
        if cols != 1:
            key *= kdt.type(cols)
        p = pred.astype(kdt, copy=False)
        if p0:
            p = p - kdt.type(p0 % modulus)
        key += p
    return np.bincount(key.reshape(-1), minlength=cells)


class RawPairHistogram:
    """Counts of the raw (reference value, prediction value) pairs of integer maps, accumulated over updates.

    Every statistic of :func:`mean_iou` is a function of this histogram, whatever ``label_map``/``reduce_labels``/
    ``ignore_index`` are, which is what lets ``evaluate``'s API (options given at ``compute`` time) stream. It is a
    dense grid over the value ranges seen (e.g. 256 x num_labels cells for uint8 annotations), grown when new values
    appear; value ranges too wide for a grid are kept as sparse (value, value, count) triples.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> "RawPairHistogram":
        self._grid: np.ndarray | None = None  # [rows, cols] int64
        self._r0 = self._p0 = 0
        self._sparse: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._sparse_cells = 0
        return self

    @property
    def empty(self) -> bool:
        return self._grid is None and not self._sparse

    def update(self, predictions, references) -> "RawPairHistogram":
        pred, ref = _as_numpy_pair(predictions, references)
        if pred.size == 0:
            return self
        (rmin, rmax), (pmin, pmax) = _value_range(ref), _value_range(pred)
        if self._grid is not None:
            rows, cols = self._grid.shape
            if self._r0 <= rmin and rmax < self._r0 + rows and self._p0 <= pmin and pmax < self._p0 + cols:
                self._grid += _dense_counts(pred, ref, self._r0, self._p0, rows, cols).reshape(rows, cols)
                return self
            # grow the grid to the union of the ranges when it stays small, else flush it to triples
            r0, p0 = min(rmin, self._r0), min(pmin, self._p0)
            r1, p1 = max(rmax, self._r0 + rows - 1), max(pmax, self._p0 + cols - 1)
            if (r1 - r0 + 1) * (p1 - p0 + 1) <= _GRID_LIMIT:
                grid = np.zeros((r1 - r0 + 1, p1 - p0 + 1), dtype=np.int64)
                grid[self._r0 - r0: self._r0 - r0 + rows, self._p0 - p0: self._p0 - p0 + cols] = self._grid
                self._grid, self._r0, self._p0 = grid, r0, p0
                rows, cols = grid.shape
                self._grid += _dense_counts(pred, ref, r0, p0, rows, cols).reshape(rows, cols)
                return self
            self._add_triples(*self._grid_triples())
            self._grid = None
        rows, cols = rmax - rmin + 1, pmax - pmin + 1
        if rows * cols <= _GRID_LIMIT:
            self._grid = _dense_counts(pred, ref, rmin, pmin, rows, cols).reshape(rows, cols)
            self._r0, self._p0 = rmin, pmin
        elif rows * cols <= _DENSE_LIMIT:  # one-off dense count, kept sparse
            hist = _dense_counts(pred, ref, rmin, pmin, rows, cols)
            nz = np.flatnonzero(hist)
            self._add_triples(nz // cols + rmin, nz % cols + pmin, hist[nz].astype(np.int64))
        else:
            if rows * cols < (1 << 62):
                key = (ref.astype(np.int64) - rmin) * cols + (pred.astype(np.int64) - pmin)
                uniq, counts = np.unique(key.reshape(-1), return_counts=True)
                self._add_triples(uniq // cols + rmin, uniq % cols + pmin, counts.astype(np.int64))
            else:  # absurd value ranges: unique over the pairs themselves
                pairs = np.stack([ref.reshape(-1).astype(np.int64), pred.reshape(-1).astype(np.int64)], axis=1)
                uniq, counts = np.unique(pairs, axis=0, return_counts=True)
                self._add_triples(uniq[:, 0].copy(), uniq[:, 1].copy(), counts.astype(np.int64))
        return self

    def merge(self, other: "RawPairHistogram") -> "RawPairHistogram":
        self._add_triples(*other.triples())
        return self

    def _add_triples(self, r, p, c) -> None:
        if len(c):
            self._sparse.append((r, p, c))
            self._sparse_cells += len(c)
            if self._sparse_cells > _SPARSE_COMPACT_AT and len(self._sparse) > 1:
                self._sparse = [merge_pair_counts(self._sparse)]
                self._sparse_cells = len(self._sparse[0][2])

    def _grid_triples(self):
        rows, cols = self._grid.shape
        flat = self._grid.reshape(-1)
        nz = np.flatnonzero(flat)
        return nz // cols + self._r0, nz % cols + self._p0, flat[nz].copy()

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reference_values, prediction_values, counts) of the non-zero cells, int64."""
        parts = list(self._sparse)
        if self._grid is not None:
            parts.append(self._grid_triples())
        return merge_pair_counts(parts)

    def fold(self, num_labels: int, ignore_index=255, label_map=None, reduce_labels: bool = False) -> np.ndarray:
        """The (num_labels + 1)² confusion matrix under these options (see :func:`fold_pair_counts`)."""
        label_map = _normalize_label_map(label_map)
        size = num_labels + 1
        conf = np.zeros((size, size), dtype=np.int64)
        if self._grid is not None:
            rows_n, cols_n = self._grid.shape
            rows = _reference_rows(np.arange(self._r0, self._r0 + rows_n), num_labels, ignore_index, label_map,
                                   reduce_labels)
            cols = _prediction_cols(np.arange(self._p0, self._p0 + cols_n), num_labels)
            keep = rows >= 0
            if keep.any():
                flat = (rows[keep, None] * size + cols[None, :]).reshape(-1)
                # float64 weights are exact for counts below 2**53
                conf += np.rint(np.bincount(flat, weights=self._grid[keep].reshape(-1), minlength=size * size)
                                ).astype(np.int64).reshape(size, size)
        for r, p, c in self._sparse:
            conf += fold_pair_counts(r, p, c, num_labels, ignore_index, label_map, reduce_labels)
        return conf


def pair_counts(predictions, references) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram of the raw (reference value, prediction value) pairs of integer maps (numpy/CPU).

    Returns ``(reference_values, prediction_values, counts)``, int64 arrays holding the non-zero cells only.
    """
    return RawPairHistogram().update(predictions, references).triples()


def merge_pair_counts(triples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum several ``(reference_values, prediction_values, counts)`` histograms into one (non-zero cells only)."""
    triples = [t for t in triples if len(t[2])]
    if not triples:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if len(triples) == 1:
        return triples[0]
    r = np.concatenate([t[0] for t in triples]).astype(np.int64, copy=False)
    p = np.concatenate([t[1] for t in triples]).astype(np.int64, copy=False)
    c = np.concatenate([t[2] for t in triples]).astype(np.int64, copy=False)
    rmin, pmin = int(r.min()), int(p.min())
    rows, cols = int(r.max()) - rmin + 1, int(p.max()) - pmin + 1
    if rows * cols < (1 << 62):
        key = (r - rmin) * cols + (p - pmin)
        if rows * cols <= _DENSE_LIMIT:
            # float64 weights are exact for counts below 2**53
            hist = np.bincount(key, weights=c, minlength=rows * cols)
            nz = np.flatnonzero(hist)
            return nz // cols + rmin, nz % cols + pmin, hist[nz].astype(np.int64)
        uniq, inverse = np.unique(key, return_inverse=True)
        counts = np.zeros(len(uniq), dtype=np.int64)
        np.add.at(counts, inverse.reshape(-1), c)
        return uniq // cols + rmin, uniq % cols + pmin, counts
    uniq, inverse = np.unique(np.stack([r, p], axis=1), axis=0, return_inverse=True)
    counts = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(counts, inverse.reshape(-1), c)
    return uniq[:, 0].copy(), uniq[:, 1].copy(), counts


def _reference_rows(values: np.ndarray, num_labels: int, ignore_index, label_map, reduce_labels) -> np.ndarray:
    """Confusion-matrix row of each reference value: 0..num_labels-1, num_labels (out of range) or -1 (ignored)."""
    v = np.array(values, dtype=np.int64, copy=True)
    if label_map:
        for old, new in label_map.items():  # chained, in dict order, as evaluate does
            v[v == old] = new
    if reduce_labels:
        v[v == 0] = 255
        v = v - 1
        v[v == 254] = 255
    rows = np.where((v >= 0) & (v < num_labels), v, num_labels)
    if ignore_index is not None:
        rows[v == ignore_index] = -1
    return rows


def _prediction_cols(values: np.ndarray, num_labels: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    return np.where((v >= 0) & (v < num_labels), v, num_labels)


def fold_pair_counts(r_vals, p_vals, counts, num_labels: int, ignore_index=255, label_map=None,
                     reduce_labels: bool = False) -> np.ndarray:
    """Turn a raw pair histogram into the (num_labels + 1)² int64 confusion matrix (rows: reference).

    Row/column ``num_labels`` collects values outside ``[0, num_labels - 1]``; ignored pixels are dropped.
    """
    label_map = _normalize_label_map(label_map)
    size = num_labels + 1
    conf = np.zeros((size, size), dtype=np.int64)
    if len(counts) == 0:
        return conf
    rows = _reference_rows(r_vals, num_labels, ignore_index, label_map, reduce_labels)
    cols = _prediction_cols(p_vals, num_labels)
    keep = rows >= 0
    np.add.at(conf, (rows[keep], cols[keep]), np.asarray(counts, dtype=np.int64)[keep])
    return conf


def _confusion_torch(pred: torch.Tensor, ref: torch.Tensor, num_labels: int, ignore_index, label_map,
                     reduce_labels: bool, out: torch.Tensor, valid: torch.Tensor | None = None) -> None:
    """Per-pixel path for tensors on an accelerator: no host synchronisation, accumulates into ``out``.

    ``out`` is a flat int64 tensor of (num_labels + 2) * (num_labels + 1) cells; the last row collects dropped pixels.
    """
    n = num_labels
    ref = ref.to(torch.long)
    pred = pred.to(torch.long)
    if label_map:
        for old, new in label_map.items():
            ref = torch.where(ref == old, new, ref)
    if reduce_labels:
        ref = torch.where(ref == 0, 255, ref) - 1
        ref = torch.where(ref == 254, 255, ref)
    rows = torch.where((ref >= 0) & (ref < n), ref, n)
    if ignore_index is not None:
        rows = torch.where(ref == ignore_index, n + 1, rows)
    if valid is not None:
        rows = torch.where(valid.to(torch.bool), rows, n + 1)
    cols = torch.where((pred >= 0) & (pred < n), pred, n)
    index = (rows * (n + 1) + cols).reshape(-1)
    out.index_add_(0, index, torch.ones(1, dtype=out.dtype, device=out.device).expand(index.numel()))


# ----------------------------------------------------------------------------------------------- final numbers
def metrics_from_confusion(confusion, nan_to_num=None) -> dict[str, Any]:
    """``evaluate``'s mean_iou outputs from a (num_labels + 1)² confusion matrix (see :func:`fold_pair_counts`).

    The float operations are exactly ``evaluate``'s (float64 totals, the same divisions, ``np.nanmean``), so the
    results are bit-identical.
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    conf = np.asarray(confusion, dtype=np.int64)
    n = conf.shape[0] - 1
    total_area_intersect = np.diagonal(conf)[:n].astype(np.float64)
    total_area_label = conf[:n, :].sum(axis=1).astype(np.float64)
    total_area_pred_label = conf[:, :n].sum(axis=0).astype(np.float64)
    total_area_union = total_area_pred_label + total_area_label - total_area_intersect

    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        all_acc = total_area_intersect.sum() / total_area_label.sum()
        iou = total_area_intersect / total_area_union
        acc = total_area_intersect / total_area_label
        metrics = {
            "mean_iou": np.nanmean(iou),
            "mean_accuracy": np.nanmean(acc),
            "overall_accuracy": all_acc,
            "per_category_iou": iou,
            "per_category_accuracy": acc,
        }
    if nan_to_num is not None:
        metrics = {name: np.nan_to_num(value, nan=nan_to_num) for name, value in metrics.items()}
    return metrics


# ------------------------------------------------------------------------------------------------- public API
def mean_iou(
    predictions,
    references,
    num_labels: int,
    ignore_index: int | None,
    nan_to_num: float | None = None,
    label_map: Mapping[int, int] | None = None,
    reduce_labels: bool = False,
) -> dict[str, Any]:
    """Mean IoU with the arguments and outputs of ``evaluate.load("mean_iou").compute(...)``.

    Args:
        predictions: predicted maps (list of [H, W] arrays/tensors/PIL images, each its own size, or a [B, H, W]
            array/tensor).
        references: ground-truth maps, same sizes as ``predictions``.
        num_labels: number of classes.
        ignore_index: reference value whose pixels are skipped (applied after ``label_map`` and ``reduce_labels``).
            ``None`` skips nothing.
        nan_to_num: replace NaN (classes absent from both references and predictions) in every output.
        label_map: ``{old: new}`` applied to the references first (chained, in dict order, as ``evaluate`` does).
        reduce_labels: map reference 0 to 255 and shift the others down by one (ADE20K's "other" class). Do not set it
            when the references were already reduced by the image processor.

    Returns:
        ``{"mean_iou", "mean_accuracy", "overall_accuracy"}`` (np.float64) and ``{"per_category_iou",
        "per_category_accuracy"}`` (float64 arrays of shape (num_labels,)).
    """
    hist = RawPairHistogram()
    for pred, ref in _iter_pairs(predictions, references):
        hist.update(pred, ref)
    return metrics_from_confusion(hist.fold(num_labels, ignore_index, label_map, reduce_labels), nan_to_num)


class MeanIoU:
    """Streaming mean IoU: ``update`` per batch, ``compute`` at the end; memory O(num_labels²).

    Works on any device: CPU inputs go through a joint raw-value histogram (numpy ``bincount``), accelerator tensors
    through a per-pixel ``index_add_`` into a confusion matrix that stays on the device (no host sync per batch).
    ``compute`` returns the same dict as :func:`mean_iou` (and ``evaluate``) over everything seen since ``reset``.

    Example::

        metric = MeanIoU(num_labels=150, ignore_index=255)
        for batch in loader:
            logits = model(batch["pixel_values"].to(device)).logits
            logits = F.interpolate(logits, size=batch["labels"].shape[-2:], mode="bilinear", align_corners=False)
            metric.update(logits.argmax(1), batch["labels"].to(device))
        print(metric.compute()["mean_iou"])
    """

    def __init__(
        self,
        num_labels: int,
        ignore_index: int | None = 255,
        nan_to_num: float | None = None,
        label_map: Mapping[int, int] | None = None,
        reduce_labels: bool = False,
        device: str | torch.device | None = None,
    ):
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels = int(num_labels)
        self.ignore_index = ignore_index
        self.nan_to_num = nan_to_num
        self.label_map = _normalize_label_map(label_map)
        self.reduce_labels = bool(reduce_labels)
        self.device = torch.device(device) if device is not None else None
        self.reset()

    # state
    def reset(self) -> "MeanIoU":
        n = self.num_labels
        self._conf_cpu = np.zeros((n + 1, n + 1), dtype=np.int64)  # merged / all-reduced counts
        self._raw = RawPairHistogram()  # CPU inputs, folded when the numbers are asked for
        self._conf_dev: torch.Tensor | None = None  # flat (n + 2) * (n + 1) on the accelerator
        self.num_updates = 0
        return self

    def _device_buffer(self, device: torch.device) -> torch.Tensor:
        if self._conf_dev is None:
            n = self.num_labels
            self._conf_dev = torch.zeros((n + 2) * (n + 1), dtype=torch.long, device=device)
        elif self._conf_dev.device != device:
            raise ValueError(f"MeanIoU accumulates on {self._conf_dev.device}; got tensors on {device}")
        return self._conf_dev

    @torch.no_grad()
    def update(self, predictions, references, valid_mask=None, method: str = "auto") -> "MeanIoU":
        """Add a batch: predictions and references as [B, H, W] / [H, W] tensors or arrays, or lists of maps.

        ``valid_mask`` (same shape, bool) drops extra pixels, e.g. the -100 padding of ``Trainer``.
        ``method``: ``"auto"``, ``"histogram"`` (numpy joint histogram) or ``"direct"`` (per-pixel torch).
        """
        if valid_mask is not None:
            pairs = [(predictions, references, valid_mask)]
        else:
            pairs = [(p, r, None) for p, r in _iter_pairs(predictions, references)]
        for pred, ref, mask in pairs:
            pred = _as_integer_map(pred, "predictions")
            ref = _as_integer_map(ref, "references")
            if tuple(pred.shape) != tuple(ref.shape):
                raise ValueError(f"prediction {tuple(pred.shape)} and reference {tuple(ref.shape)} differ in shape")
            on_device = isinstance(pred, torch.Tensor) or isinstance(ref, torch.Tensor)
            use_direct = method == "direct" or (method == "auto" and on_device)
            if use_direct:
                device = (pred.device if isinstance(pred, torch.Tensor) else ref.device) if on_device else (
                    self.device or torch.device("cpu"))
                pred_t = torch.as_tensor(pred, device=device)
                ref_t = torch.as_tensor(ref, device=device)
                mask_t = torch.as_tensor(_as_numpy_or_tensor(mask), device=device) if mask is not None else None
                _confusion_torch(pred_t, ref_t, self.num_labels, self.ignore_index, self.label_map,
                                 self.reduce_labels, self._device_buffer(device), mask_t)
            elif method in ("auto", "histogram"):
                if mask is not None:
                    mask = np.asarray(_as_numpy_or_tensor(mask, to_numpy=True), dtype=bool)
                    pred_np = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else pred
                    ref_np = ref.cpu().numpy() if isinstance(ref, torch.Tensor) else ref
                    pred, ref = pred_np[mask], ref_np[mask]
                self._raw.update(pred, ref)
            else:
                raise ValueError(f"method must be 'auto', 'histogram' or 'direct', got {method!r}")
        self.num_updates += 1
        return self

    @property
    def confusion(self) -> np.ndarray:
        """(num_labels + 1)² int64 counts, rows = reference, columns = prediction; index num_labels = out of range."""
        conf = self._conf_cpu.copy()
        if not self._raw.empty:
            conf += self._raw.fold(self.num_labels, self.ignore_index, self.label_map, self.reduce_labels)
        if self._conf_dev is not None:
            n = self.num_labels
            conf += self._conf_dev.view(n + 2, n + 1)[: n + 1].cpu().numpy()
        return conf

    @property
    def confusion_matrix(self) -> np.ndarray:
        """The num_labels² confusion matrix of in-range classes (rows = reference, columns = prediction)."""
        return self.confusion[: self.num_labels, : self.num_labels]

    def compute(self) -> dict[str, Any]:
        return metrics_from_confusion(self.confusion, self.nan_to_num)

    def merge(self, other: "MeanIoU") -> "MeanIoU":
        """Add another accumulator's counts (same num_labels)."""
        if other.num_labels != self.num_labels:
            raise ValueError("cannot merge MeanIoU accumulators with different num_labels")
        self._conf_cpu += other.confusion
        return self

    def all_reduce(self, group=None) -> "MeanIoU":
        """Sum the counts over a ``torch.distributed`` process group (every rank gets the total)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        n = self.num_labels
        device = self._conf_dev.device if self._conf_dev is not None else (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else
            torch.device("cpu"))
        total = torch.from_numpy(self.confusion).to(device)
        dist.all_reduce(total, group=group)
        self.reset()
        self._conf_cpu = total.cpu().numpy()
        return self

    def __repr__(self) -> str:
        return (f"MeanIoU(num_labels={self.num_labels}, ignore_index={self.ignore_index}, "
                f"reduce_labels={self.reduce_labels}, updates={self.num_updates})")


def _as_numpy_or_tensor(x, to_numpy: bool = False):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy() if to_numpy else x
    return np.asarray(x)
