"""``compute_metrics`` for ``transformers.Trainer`` that streams mean IoU per evaluation batch.

Use it with ``TrainingArguments(batch_eval_metrics=True)`` so the Trainer never stores the eval logits
(huggingface/transformers#28769, huggingface/peft#1927): each batch's logits are upsampled to the label size,
argmaxed on the device and folded into a :class:`~hf_seg.metrics.ConfusionMatrix`; the last batch returns the
numbers. Without ``batch_eval_metrics`` the same function works on the concatenated arrays (processed in chunks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.nn import functional as F

from .confusion import ConfusionMatrix

__all__ = ["make_compute_metrics", "logits_to_predictions"]


@torch.no_grad()
def logits_to_predictions(logits, size, align_corners: bool = False) -> torch.Tensor:
    """[B, C, h, w] class scores -> [B, H, W] int64 labels at ``size`` (bilinear upsampling, then argmax).

    Integer [B, h, w] inputs (already argmaxed, e.g. by ``preprocess_logits_for_metrics``) are resized with
    nearest-neighbour when their size differs.
    """
    logits = torch.as_tensor(logits)
    size = tuple(int(s) for s in size)
    if logits.dim() == 3 and not logits.dtype.is_floating_point:
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits[:, None].float(), size=size, mode="nearest")[:, 0]
        return logits.long()
    if logits.dim() != 4:
        raise ValueError(f"expected logits [B, C, h, w], got shape {tuple(logits.shape)}")
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=align_corners)
    return logits.argmax(dim=1)


def make_compute_metrics(
    num_labels: int,
    ignore_index: int | None = 255,
    nan_to_num: float | None = None,
    id2label: Mapping[int, str] | None = None,
    per_category: bool = False,
    padding_index: int | None = -100,
    chunk_size: int = 8,
):
    """A stateful ``compute_metrics(eval_pred, compute_result=True)`` for ``Trainer``.

    Args:
        num_labels, ignore_index, nan_to_num: as :class:`hf_seg.metrics.ConfusionMatrix`; the labels are training ids
            (what the image processor and the training datasets produce).
        id2label: class names for the per-category keys (default: the index).
        per_category: also return ``iou_<name>`` and ``accuracy_<name>`` per class (NaN for absent classes).
        padding_index: label value the Trainer pads with when gathering across processes (-100); those pixels are
            dropped. ``None`` disables this.
        chunk_size: images upsampled at once (bounds the memory of the [B, C, H, W] upsampled logits).

    The returned function has a ``.metric`` attribute (the :class:`ConfusionMatrix`); it resets after each final
    result.
    """
    metric = ConfusionMatrix(num_labels, ignore_index=ignore_index, nan_to_num=nan_to_num)
    # config.id2label has int keys, a JSON-loaded one str keys
    names = [str((id2label or {}).get(i, (id2label or {}).get(str(i), i))) for i in range(num_labels)] \
        if per_category else None

    def compute_metrics(eval_pred, compute_result: bool = True) -> dict[str, Any]:
        logits = eval_pred.predictions if hasattr(eval_pred, "predictions") else eval_pred[0]
        labels = eval_pred.label_ids if hasattr(eval_pred, "label_ids") else eval_pred[1]
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        if logits is not None and labels is not None:
            logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
            if labels.device != logits.device:
                labels = labels.to(logits.device)
            if labels.dim() == 4 and labels.shape[1] == 1:
                labels = labels[:, 0]
            for start in range(0, labels.shape[0], max(1, chunk_size)):
                lab = labels[start : start + chunk_size]
                pred = logits_to_predictions(logits[start : start + chunk_size], lab.shape[-2:])
                valid = None
                if padding_index is not None and padding_index != ignore_index:
                    pad = lab == padding_index
                    if bool(pad.any()):
                        valid = ~pad
                metric.update(pred, lab, valid_mask=valid)
        if not compute_result:
            return {}
        out = metric.compute()
        metric.reset()
        result = {k: float(out[k]) for k in ("mean_iou", "mean_accuracy", "overall_accuracy")}
        if names is not None:
            for i, name in enumerate(names):
                result[f"iou_{name}"] = float(out["per_category_iou"][i])
                result[f"accuracy_{name}"] = float(out["per_category_accuracy"][i])
        return result

    compute_metrics.metric = metric
    return compute_metrics
