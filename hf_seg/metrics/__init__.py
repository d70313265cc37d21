"""Semantic-segmentation metrics: ``evaluate``-compatible mean IoU from a confusion matrix.

* :func:`mean_iou` — one shot, same arguments and outputs as ``evaluate.load("mean_iou").compute``.
* :class:`MeanIoU` — streaming accumulator (``update`` per batch on any device, ``compute``).
* :func:`make_compute_metrics` — ``Trainer`` ``compute_metrics`` for ``batch_eval_metrics=True``.
* :data:`EVALUATE_MODULE_PATH` — an ``evaluate`` module folder: ``evaluate.load(EVALUATE_MODULE_PATH)`` works offline
  and computes with this package's code.

This package imports no model code.
"""

import os

from .segmentation import (
    MeanIoU,
    RawPairHistogram,
    fold_pair_counts,
    mean_iou,
    merge_pair_counts,
    metrics_from_confusion,
    pair_counts,
)
from .trainer import logits_to_predictions, make_compute_metrics

EVALUATE_MODULE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mean_iou")

__all__ = [
    "EVALUATE_MODULE_PATH",
    "MeanIoU",
    "RawPairHistogram",
    "fold_pair_counts",
    "logits_to_predictions",
    "make_compute_metrics",
    "mean_iou",
    "merge_pair_counts",
    "metrics_from_confusion",
    "pair_counts",
]
