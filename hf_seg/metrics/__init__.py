"""Semantic-segmentation metrics: one confusion-matrix core and an ``evaluate``-compatible wrapper.

* :class:`ConfusionMatrix` — the core: streaming mean IoU over training ids on any device (``update`` per batch,
  ``compute``, ``merge``/``all_reduce``); :func:`metrics_from_confusion` turns counts into the numbers.
* :func:`mean_iou` / :class:`MeanIoU` — ``evaluate.load("mean_iou")``'s arguments, outputs and label semantics, bit
  for bit (:mod:`hf_seg.metrics.evaluate_compat`; :class:`RawPairHistogram` keeps raw value pairs for options given
  at ``compute`` time).
* :func:`make_compute_metrics` — ``Trainer`` ``compute_metrics`` for ``batch_eval_metrics=True``.
* :data:`EVALUATE_MODULE_PATH` — an ``evaluate`` module folder: ``evaluate.load(EVALUATE_MODULE_PATH)`` works offline
  and computes with this package's code.

This package imports no model code.
"""

import os

from .confusion import ConfusionMatrix, confusion_matrix, metrics_from_confusion
from .evaluate_compat import MeanIoU, RawPairHistogram, mean_iou
from .trainer import logits_to_predictions, make_compute_metrics

EVALUATE_MODULE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mean_iou")

__all__ = ["EVALUATE_MODULE_PATH", "ConfusionMatrix", "MeanIoU", "RawPairHistogram", "confusion_matrix",
           "logits_to_predictions", "make_compute_metrics", "mean_iou", "metrics_from_confusion"]
