"""The part of every hf_seg config that is not family specific: labels, loss ignore index, test protocol, and the
range checks every family uses to refuse a config that cannot be built."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PretrainedConfig

TEST_MODES = ("whole", "slide")


class HfSegConfig(PretrainedConfig):
    """Base class of every family config.

    Besides transformers' label fields (``num_labels``/``id2label``/``label2id``) it carries what every family shares:
    the ignore index of the loss and the *test protocol* the paper's numbers were measured with, which
    :func:`hf_seg.inference.predict` (and evaluation) apply unless told otherwise. All are saved in ``config.json``.

    Args:
        semantic_loss_ignore_index: label id the loss ignores (255).
        test_mode: ``"whole"`` (one forward of the whole image) or ``"slide"`` (sliding windows).
        test_crop_size, test_stride: ``[height, width]`` of the window and its step (``"slide"`` needs both).
        test_scales: image ratios of multi-scale test-time augmentation (``None``: the paper gives none; predict runs
            single-scale unless asked for TTA).
        test_flip: average with the horizontally flipped image.
        test_pad_to_crop: pad a window smaller than the crop (an image smaller than the crop) up to the crop, as
            mmseg >= 0.12 does; mmseg 0.6 / 0.11 (SETR, SeMask) feed it unpadded.
        test_align_corners: ``align_corners`` of the final bilinear resize of the logits.

    Families add their architecture fields on top, check every numeric field with the ``_check_*`` helpers (a
    ``ValueError`` naming the field when a config cannot be built), and may change the protocol defaults by setting
    them in ``kwargs`` before calling ``super().__init__``.
    """

    def __init__(
        self,
        semantic_loss_ignore_index: int = 255,
        test_mode: str = "whole",
        test_crop_size: Sequence[int] | int | None = None,
        test_stride: Sequence[int] | int | None = None,
        test_scales: Sequence[float] | None = None,
        test_flip: bool = False,
        test_pad_to_crop: bool = True,
        test_align_corners: bool = False,
        **kwargs,
    ):
        self._check_choice("test_mode", test_mode, TEST_MODES)
        self.semantic_loss_ignore_index = int(semantic_loss_ignore_index)
        self.test_mode = test_mode
        self.test_crop_size = self._pair_or_none("test_crop_size", test_crop_size)
        self.test_stride = self._pair_or_none("test_stride", test_stride)
        if test_scales is not None:
            test_scales = [float(s) for s in test_scales]
            if not test_scales or any(not s > 0 for s in test_scales):
                raise ValueError(f"test_scales must be a non-empty list of positive ratios, got {test_scales}")
        self.test_scales = test_scales
        self.test_flip = bool(test_flip)
        self.test_pad_to_crop = bool(test_pad_to_crop)
        self.test_align_corners = bool(test_align_corners)
        super().__init__(**kwargs)
        if test_mode == "slide" and (self.test_crop_size is None or self.test_stride is None):
            raise ValueError("test_mode='slide' needs test_crop_size and test_stride ([height, width] each)")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {self.num_labels}")

    # ------------------------------------------------------------------------------------------ range checks
    @staticmethod
    def _check_choice(name: str, value, choices) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")

    @staticmethod
    def _check_positive(**fields) -> None:
        """Every value (a number or a sequence of numbers) must be > 0."""
        for name, value in fields.items():
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if not values or any(not v > 0 for v in values):
                raise ValueError(f"{name} must be positive, got {value!r}")

    @staticmethod
    def _check_non_negative(**fields) -> None:
        for name, value in fields.items():
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if any(not v >= 0 for v in values):
                raise ValueError(f"{name} must be >= 0, got {value!r}")

    @staticmethod
    def _check_probability(**fields) -> None:
        """Dropout-like rates: 0 <= p < 1."""
        for name, value in fields.items():
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")

    @staticmethod
    def _pair_or_none(name: str, value) -> list[int] | None:
        if value is None:
            return None
        pair = [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]
        if len(pair) != 2 or min(pair) < 1:
            raise ValueError(f"{name} must be a positive int or [height, width], got {value!r}")
        return pair
