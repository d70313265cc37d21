"""Extra per-pixel training targets a family's loss needs besides the labels (declared by the family, used by
:class:`hf_seg.training.model_inputs.TrainDataset`).

They are made once from the full-size label map (training ids), before any augmentation, and then move exactly like
the labels: nearest resize, crop, flip and padding with their own fill value (the original data pipelines treat them
as segmentation fields). ``on_flip`` holds corrections for a horizontal flip that the original code did not apply
(e.g. mirroring direction angles); they are off unless the run asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ExtraTargets"]


@dataclass(frozen=True)
class ExtraTargets:
    # (labels [H, W] int64 numpy, ignore_index) -> {name: [H, W] integer numpy array}
    compute: Callable
    fills: dict[str, int]  # padding value of each target
    on_flip: dict[str, Callable] = field(default_factory=dict)  # name -> tensor -> tensor, for flipped samples
    description: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.fills)
