"""UN-EPT's training loss (the original's ``losses``): cross entropy on the logits and on their boundary-refined
version, plus the boundary-mask and direction losses that supervise the two boundary heads, and the refinement
that shifts logits one pixel along the predicted direction on the predicted boundary."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...layers import resize
from ...losses import check_labels, cross_entropy
from .configuration_unept import NUM_DIRECTIONS, UnEptConfig

# (row, column) step of each of the 8 direction bins (bin 0 = pointing left, then clockwise)
DIRECTION_STEPS = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))


def direction_offsets(mask_logits: torch.Tensor, direction_logits: torch.Tensor) -> torch.Tensor:
    """Integer (row, column) offsets [B, 2, H, W]: the step of the arg-max direction bin where the raw boundary
    logit (channel 1) is above 0.5 — the original thresholds the logit here, not the probability — else 0."""
    edge = mask_logits[:, 1] > 0.5
    steps = torch.tensor(DIRECTION_STEPS, dtype=torch.long, device=mask_logits.device)
    offsets = steps[direction_logits.argmax(dim=1)] * edge[..., None]
    return offsets.permute(0, 3, 1, 2)


def shift_logits(logits: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sample ``logits`` at pixel + offset (bilinear, border padding, align_corners=True, as the original)."""
    _, _, h, w = logits.shape
    coord_h, coord_w = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=logits.device),
                                      torch.arange(w, dtype=torch.float32, device=logits.device), indexing="ij")
    norm = torch.tensor([max(w - 1, 1) / 2, max(h - 1, 1) / 2], dtype=torch.float32, device=logits.device)
    grid = torch.stack([offsets[:, 1] + coord_w, offsets[:, 0] + coord_h], dim=-1) / norm - 1
    return F.grid_sample(logits.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def direction_bins(angle_map: torch.Tensor, num_bins: int = NUM_DIRECTIONS) -> torch.Tensor:
    """Bin of each angle (degrees in [-180, 180]); bin 0 covers angles <= -180 + step/2 or > 180 - step/2."""
    step = 360 / num_bins
    bins = torch.zeros_like(angle_map, dtype=torch.long)
    for i in range(1, num_bins):
        middle = -180 + step * i
        bins = torch.where((angle_map > middle - step / 2) & (angle_map <= middle + step / 2), i, bins)
    return bins


def inverse_frequency_weights(labels: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``1 - count_c / total`` over the valid pixels (the original's ``calc_weights``)."""
    counts = torch.stack([((labels == c) & valid).sum() for c in range(num_classes)]).float()
    return 1 - counts / counts.sum().clamp(min=1)


def weighted_cross_entropy(logits, labels, weight, ignore_index=-1):
    """torch's weighted mean cross entropy (sum w_y * nll / sum w_y), but 0 instead of NaN when no weight is left."""
    per_pixel = F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = labels != ignore_index
    denominator = torch.where(valid, weight[labels.clamp(min=0)], torch.zeros((), device=logits.device)).sum()
    return torch.where(denominator > 0, per_pixel.sum() / denominator.clamp(min=1e-12), per_pixel.sum() * 0)


def refine(logits, mask_logits, direction_logits, size) -> torch.Tensor:
    """Input-resolution logits shifted one pixel along the predicted direction on the predicted boundary."""
    seg = resize(logits, size)
    mask = F.interpolate(mask_logits, size=tuple(size), mode="bilinear", align_corners=True)
    direction = F.interpolate(direction_logits, size=tuple(size), mode="bilinear", align_corners=True)
    return shift_logits(seg, direction_offsets(mask, direction))


def unept_losses(config: UnEptConfig, logits, mask_logits, direction_logits, labels, distance_map=None,
                 angle_map=None) -> dict:
    """The original's ``loss_seg`` and its terms; returns a dict (``loss`` and the intermediates).

    ``distance_map`` / ``angle_map`` are the dt_offset targets; without them they are derived from ``labels``
    (CPU, scipy)."""
    ignore = config.semantic_loss_ignore_index
    check_labels(labels, config.num_labels, ignore)
    if distance_map is None or angle_map is None:
        from .dt_offset import dt_offset_targets

        distance_map, angle_map = dt_offset_targets(labels, ignore_index=ignore)
    distance_map = distance_map.reshape(labels.shape)
    angle_map = angle_map.reshape(labels.shape)
    size = labels.shape[-2:]

    seg_logits = resize(logits, size)
    gt_mask = ((distance_map <= config.boundary_distance) & (distance_map >= 0)).long()
    all_pixels = torch.ones_like(labels, dtype=torch.bool)
    mask_weights = inverse_frequency_weights(gt_mask, all_pixels, 2)
    mask_up = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=True)
    direction_up = F.interpolate(direction_logits, size=size, mode="bilinear", align_corners=True)
    mask_loss = weighted_cross_entropy(mask_up, gt_mask, mask_weights)

    predicted_edge = mask_up.softmax(dim=1)[:, 1] > 0.5
    gt_direction = torch.where(predicted_edge, direction_bins(angle_map), -1)
    direction_weights = inverse_frequency_weights(gt_direction, gt_direction != -1, NUM_DIRECTIONS)
    direction_loss = weighted_cross_entropy(direction_up, gt_direction, direction_weights)

    offsets = direction_offsets(mask_up, direction_up)
    refined = shift_logits(seg_logits, offsets)
    seg_ce = cross_entropy(seg_logits, labels, ignore, average="all")
    refine_ce = cross_entropy(refined, labels, ignore, average="all")
    loss = (config.seg_loss_weight * seg_ce + config.mask_loss_weight * mask_loss
            + config.direction_loss_weight * direction_loss + config.refine_loss_weight * refine_ce)
    return {"loss": loss, "seg_ce": seg_ce, "mask_loss": mask_loss, "direction_loss": direction_loss,
            "refine_ce": refine_ce, "gt_mask": gt_mask, "mask_class_weights": mask_weights,
            "gt_direction": gt_direction, "direction_class_weights": direction_weights,
            "boundary_offset": offsets, "refine_logits": refined}
