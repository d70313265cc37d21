"""Boundary ("dt_offset") targets of UN-EPT, derived from a label map the way its training data was prepared.

UN-EPT trains its boundary and direction heads on per-image ``.mat`` files made by openseg.pytorch's ADE20K
``dt_offset_generator.py``. For every class present with at least ``min_region`` pixels, that script takes the
Euclidean distance transform of the class mask (distance of each class pixel to the nearest pixel of another class
or the ignore label), sums these maps into ``depth`` (clipped at 250, stored as uint8), and filters each class's
distance map with a 5x5 gradient kernel whose taps are ``(dx or dy) / (dx^2 + dy^2)``; the responses, kept only on
the class's own pixels, are summed and turned into an angle, ``dir_deg = (degrees(atan2(gy, gx)) + 180) / 2``
(uint8). UN-EPT's data loader reads them as ``distance_map = depth`` and ``angle_map = 2 * dir_deg - 180``.

:func:`dt_offset_maps` reproduces the two arrays; :func:`dt_offset_targets` returns the ``distance_map`` /
``angle_map`` tensors that :class:`UnEptForSemanticSegmentation` takes; :class:`DtOffsetTransform` is the same as a
dataset transform. The original made the maps once per full-size label map and then resized, cropped, flipped and
padded them (with 255, i.e. far from any boundary) together with the labels; finetuning does exactly that
(:data:`hf_seg.modeling.unept.training.TRAINING_TARGETS`). Computing them on an already padded crop instead would turn
the padding (ignore, distance 0) into boundary. Label ids are the training encoding (after ``reduce_zero_label``);
the ignore id is skipped like every id >= 255 in the original.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

DEPTH_CLIP = 250
DEG_REDUCE = 2


def gradient_kernel(size: int = 5) -> torch.Tensor:
    """The generator's two ``size`` x ``size`` kernels as a conv weight [2, 1, size, size]: channel 0 responds to the
    row (y) direction, channel 1 to the column (x) direction."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    half = size // 2
    offsets = np.arange(size, dtype=np.float64) - half
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    norm = dx * dx + dy * dy
    norm[half, half] = 1.0  # the centre tap is zero in both kernels
    kernel_y, kernel_x = dy / norm, dx / norm
    return torch.from_numpy(np.stack([kernel_y, kernel_x])[:, None]).float()


def dt_offset_maps(label_map, ignore_index: int = 255, min_region: int = 100, kernel_size: int = 5,
                   max_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """``(depth, dir_deg)`` uint8 arrays [H, W] of one label map (numpy or torch, [H, W]), as the generator writes.

    Every id in ``[0, max_label)`` except ``ignore_index`` with at least ``min_region`` pixels contributes.
    """
    from scipy.ndimage import distance_transform_edt

    labels = label_map.cpu().numpy() if isinstance(label_map, torch.Tensor) else np.asarray(label_map)
    if labels.ndim != 2:
        raise ValueError(f"label_map must be [H, W], got shape {labels.shape}")
    labels = labels.astype(np.int64)
    kernel = gradient_kernel(kernel_size)
    depth = np.zeros(labels.shape, dtype=np.float32)
    direction = np.zeros((*labels.shape, 2), dtype=np.float32)
    ids, counts = np.unique(labels, return_counts=True)
    for class_id, count in zip(ids.tolist(), counts.tolist()):
        if class_id < 0 or class_id >= max_label or class_id == ignore_index or count < min_region:
            continue
        mask = (labels == class_id).astype(np.uint8)
        distance = distance_transform_edt(mask)
        depth += distance
        grad = F.conv2d(torch.from_numpy(distance).float()[None, None], kernel, padding=kernel_size // 2)
        grad = grad[0].permute(1, 2, 0).numpy()
        grad[mask == 0, :] = 0
        direction += grad
    depth[depth > DEPTH_CLIP] = DEPTH_CLIP
    depth = depth.astype(np.uint8)
    dir_deg = np.degrees(np.arctan2(direction[:, :, 0], direction[:, :, 1])) + 180
    dir_deg = (dir_deg / DEG_REDUCE).astype(np.uint8)
    return depth, dir_deg


def maps_to_targets(depth, dir_deg, deg_reduce: int = DEG_REDUCE) -> tuple[torch.Tensor, torch.Tensor]:
    """UN-EPT's loader: ``distance_map = depth`` and ``angle_map = deg_reduce * dir_deg - 180`` (int64 degrees)."""
    depth = torch.as_tensor(np.asarray(depth)).long()
    dir_deg = torch.as_tensor(np.asarray(dir_deg)).long()
    return depth, deg_reduce * dir_deg - 180


def dt_offset_targets(labels: torch.Tensor, ignore_index: int = 255, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distance_map, angle_map)`` int64 [B, H, W] for a batch of label maps [B, H, W] (or one map [H, W])."""
    single = labels.dim() == 2
    batch = labels[None] if single else labels
    distance, angle = [], []
    for label_map in batch:
        d, a = maps_to_targets(*dt_offset_maps(label_map, ignore_index=ignore_index, **kwargs))
        distance.append(d)
        angle.append(a)
    distance, angle = torch.stack(distance).to(labels.device), torch.stack(angle).to(labels.device)
    return (distance[0], angle[0]) if single else (distance, angle)


class DtOffsetTransform:
    """Dataset transform: adds ``distance_map`` and ``angle_map`` (int64 [H, W]) to a sample holding ``labels``.

    Works on dicts such as the output of :class:`hf_seg.HfSegImageProcessor` for one image (``labels`` [H, W] or
    [1, H, W]); pass the same ``ignore_index`` as the model's ``semantic_loss_ignore_index``.
    """

    def __init__(self, ignore_index: int = 255, min_region: int = 100, kernel_size: int = 5,
                 label_key: str = "labels"):
        self.ignore_index = ignore_index
        self.min_region = min_region
        self.kernel_size = kernel_size
        self.label_key = label_key

    def __call__(self, sample: dict) -> dict:
        labels = torch.as_tensor(np.asarray(sample[self.label_key]) if not isinstance(sample[self.label_key],
                                                                                     torch.Tensor)
                                 else sample[self.label_key])
        distance, angle = dt_offset_targets(labels, ignore_index=self.ignore_index, min_region=self.min_region,
                                            kernel_size=self.kernel_size) if labels.dim() == 2 else \
            dt_offset_targets(labels.reshape(-1, *labels.shape[-2:]), ignore_index=self.ignore_index,
                              min_region=self.min_region, kernel_size=self.kernel_size)
        if labels.dim() != 2:
            distance, angle = distance.reshape(labels.shape), angle.reshape(labels.shape)
        return {**sample, "distance_map": distance, "angle_map": angle}
