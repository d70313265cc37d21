"""Segmentation losses, written once with the reduction each original used."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resize_labels_nearest(labels: torch.Tensor, size) -> torch.Tensor:
    """Nearest down/up-sampling of an integer label map [B, H, W], sampling pixel centres like PIL's NEAREST."""
    size = tuple(int(s) for s in size)
    if tuple(labels.shape[-2:]) == size:
        return labels
    # interpolate has no integer kernel; float32 holds every label id < 2**24 exactly
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")
    return resized[:, 0].to(labels.dtype)


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    average: str = "valid",
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-wise cross entropy.

    ``average='valid'`` divides by the number of non-ignored pixels (torch's default, CSAIL's NLLLoss);
    ``average='all'`` divides by every pixel, ignored ones included, as mmseg 0.x's CrossEntropyLoss does —
    the mmseg-based originals were trained (and their fixture losses recorded) with that reduction.
    """
    if average == "valid":
        return F.cross_entropy(logits, labels, weight=class_weight, ignore_index=ignore_index)
    if average == "all":
        per_pixel = F.cross_entropy(logits, labels, weight=class_weight, ignore_index=ignore_index, reduction="none")
        return per_pixel.mean()
    raise ValueError(f"average must be 'valid' or 'all', got {average!r}")


def check_labels(labels: torch.Tensor, num_labels: int, ignore_index: int) -> None:
    """Refuse label ids outside [0, num_labels) other than the ignore index: they would silently corrupt the loss."""
    if torch.compiler.is_compiling():
        return  # the value check needs a host sync; compiled training graphs skip it
    if labels.dtype.is_floating_point:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.dim() != 3:
        raise ValueError(f"labels must be [batch, height, width], got shape {tuple(labels.shape)}")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_labels))
    if bad.any():
        values = torch.unique(labels[bad])[:10].tolist()
        raise ValueError(
            f"labels contain ids {values} outside [0, {num_labels}) that are not the ignore index {ignore_index}"
        )
