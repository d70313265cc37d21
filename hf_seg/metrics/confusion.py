"""The metric core: a per-class confusion matrix over training ids, on any device, and mean IoU from it.

References are label maps in training ids (``0..num_labels-1`` and ``ignore_index``), as the image processor and the
datasets produce them; a ``label_map`` / ``reduce_labels`` given here converts raw annotations with the same function
they use (:func:`hf_seg.label_sets.convert_labels`: every map entry at once, then reduction). Per pixel: references
equal to ``ignore_index`` are dropped; other references and predictions outside ``[0, num_labels)`` land in an extra
row / column (a miss of the reference class, a false positive of no class). The counts never leave the device until
the numbers are asked for, so an evaluation loop does not synchronise per batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..label_sets import convert_labels


def as_label_tensor(x: Any, what: str) -> torch.Tensor:
    """An integer map as an int64 tensor (numpy, PIL, lists, tensors on any device); float maps must hold integers."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if x.dtype.kind == "f" and not (np.all(np.isfinite(x)) and np.array_equal(x, np.round(x))):
            raise ValueError(f"{what} must hold integer class ids")
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{what} has unsupported dtype {x.dtype}")
        return torch.from_numpy(x.astype(np.int64))
    x = x.detach()
    if x.dtype.is_floating_point and not bool(torch.equal(x, x.round())):
        raise ValueError(f"{what} must hold integer class ids")
    return x.long()


def confusion_matrix(predictions, references, num_labels: int, ignore_index: int | None = 255, valid=None,
                     counts=None) -> torch.Tensor:
    """(num_labels + 1)² int64 counts on the inputs' device, rows = reference, columns = prediction; index
    ``num_labels`` collects values outside ``[0, num_labels)``. ``valid`` (bool, same shape) drops more pixels;
    ``counts`` weighs each pair (a histogram of pairs instead of pixels)."""
    pred = as_label_tensor(predictions, "predictions")
    ref = as_label_tensor(references, "references").to(pred.device)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and reference {tuple(ref.shape)} differ in shape")
    n = num_labels
    rows = torch.where((ref >= 0) & (ref < n), ref, n)
    cols = torch.where((pred >= 0) & (pred < n), pred, n)
    index = rows * (n + 1) + cols
    dropped = torch.zeros_like(ref, dtype=torch.bool) if ignore_index is None else ref == ignore_index
    if valid is not None:
        dropped |= ~torch.as_tensor(valid, device=ref.device).to(torch.bool)
    index = torch.where(dropped, (n + 1) ** 2, index).reshape(-1)  # one extra cell takes the dropped pixels
    weights = torch.ones(1, dtype=torch.long, device=ref.device).expand(index.numel()) if counts is None else \
        torch.as_tensor(counts, dtype=torch.long, device=ref.device).reshape(-1)
    out = torch.zeros((n + 1) ** 2 + 1, dtype=torch.long, device=ref.device).index_add_(0, index, weights)
    return out[:-1].view(n + 1, n + 1)


def metrics_from_confusion(confusion, nan_to_num=None) -> dict[str, Any]:
    """Mean IoU, mean and overall accuracy and the per-class IoU / accuracy of a (num_labels + 1)² confusion matrix.

    The float operations are exactly ``evaluate``'s mean_iou (float64 totals, the same divisions, ``np.nanmean``), so
    the results are bit-identical to it; classes absent from references and predictions are NaN (or ``nan_to_num``).
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    conf = np.asarray(confusion, dtype=np.int64)
    n = conf.shape[0] - 1
    intersect = np.diagonal(conf)[:n].astype(np.float64)
    area_label = conf[:n, :].sum(axis=1).astype(np.float64)
    area_pred = conf[:, :n].sum(axis=0).astype(np.float64)
    union = area_pred + area_label - intersect
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        iou, acc = intersect / union, intersect / area_label
        metrics = {"mean_iou": np.nanmean(iou), "mean_accuracy": np.nanmean(acc),
                   "overall_accuracy": intersect.sum() / area_label.sum(), "per_category_iou": iou,
                   "per_category_accuracy": acc}
    if nan_to_num is not None:
        metrics = {name: np.nan_to_num(value, nan=nan_to_num) for name, value in metrics.items()}
    return metrics


class ConfusionMatrix:
    """Streaming mean IoU: ``update`` per batch (tensors stay on their device), ``compute`` at the end; memory
    O(num_labels²). ``merge`` / ``all_reduce`` combine accumulators of several processes.

    Example::

        metric = ConfusionMatrix(num_labels=150)
        for batch in loader:
            logits = model(batch["pixel_values"].to(device)).logits
            logits = F.interpolate(logits, size=batch["labels"].shape[-2:], mode="bilinear", align_corners=False)
            metric.update(logits.argmax(1), batch["labels"].to(device))
        print(metric.compute()["mean_iou"])
    """

    def __init__(self, num_labels: int, ignore_index: int | None = 255, nan_to_num: float | None = None,
                 label_map: Mapping[int, int] | None = None, reduce_labels: bool = False):
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels, self.ignore_index, self.nan_to_num = int(num_labels), ignore_index, nan_to_num
        self.label_map = {int(k): int(v) for k, v in label_map.items()} if label_map else None
        self.reduce_labels = bool(reduce_labels)
        self.reset()

    def reset(self):
        self._counts: dict[torch.device, torch.Tensor] = {}
        self.num_updates = 0
        return self

    def _references(self, references):
        """Raw annotations -> training ids (on the CPU) when this accumulator converts them."""
        if not self.label_map and not self.reduce_labels:
            return references
        device = references.device if isinstance(references, torch.Tensor) else torch.device("cpu")
        array = references.detach().cpu().numpy() if isinstance(references, torch.Tensor) else references
        return torch.from_numpy(convert_labels(array, self.label_map, self.reduce_labels, self.ignore_index)).to(device)

    @torch.no_grad()
    def update(self, predictions, references, valid_mask=None):
        """Add a batch ([B, H, W] / [H, W] maps, or lists of maps of any sizes); ``valid_mask`` drops pixels."""
        pairs = [(predictions, references)] if isinstance(predictions, (torch.Tensor, np.ndarray)) else list(
            zip(predictions, references, strict=True))
        for pred, ref in pairs:
            self._add(confusion_matrix(pred, self._references(ref), self.num_labels, self.ignore_index, valid_mask))
        self.num_updates += 1
        return self

    def _add(self, counts: torch.Tensor) -> None:
        held = self._counts.get(counts.device)
        self._counts[counts.device] = counts if held is None else held + counts

    @property
    def confusion(self) -> np.ndarray:
        """(num_labels + 1)² int64 counts (rows = reference); index num_labels = out of range."""
        n = self.num_labels
        total = np.zeros((n + 1, n + 1), dtype=np.int64)
        for counts in self._counts.values():
            total += counts.cpu().numpy()
        return total

    @property
    def confusion_matrix(self) -> np.ndarray:
        """The num_labels² confusion matrix of in-range classes (rows = reference, columns = prediction)."""
        return self.confusion[: self.num_labels, : self.num_labels]

    def compute(self) -> dict[str, Any]:
        return metrics_from_confusion(self.confusion, self.nan_to_num)

    def merge(self, other: "ConfusionMatrix"):
        """Add another accumulator's counts (same num_labels)."""
        if other.num_labels != self.num_labels:
            raise ValueError("cannot merge accumulators with different num_labels")
        self._add(torch.from_numpy(other.confusion))
        return self

    def all_reduce(self, group=None):
        """Sum the counts over a ``torch.distributed`` process group (every rank gets the total)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else \
            torch.device("cpu")
        total = torch.from_numpy(self.confusion).to(device)
        dist.all_reduce(total, group=group)
        self.reset()._add(total.cpu())
        return self
