"""The part of every hf_seg config that is not family specific: labels, loss ignore index, test protocol."""

from __future__ import annotations

from transformers import PretrainedConfig

TEST_MODES = ("whole", "slide")


class HfSegConfig(PretrainedConfig):
    """Base class of every family config.

    Besides transformers' label fields (``num_labels``/``id2label``/``label2id``) it carries the two facts every
    family shares: the ignore index of the loss and the test protocol the paper's numbers were measured with
    (whole-image or sliding-window inference, with the window's crop and stride). Families add their architecture
    fields on top and call :meth:`_check` from their ``__init__`` so that a config that cannot be built fails when
    it is made, not deep inside the model.
    """

    def __init__(
        self,
        semantic_loss_ignore_index: int = 255,
        test_mode: str = "whole",
        test_crop_size: list[int] | None = None,
        test_stride: list[int] | None = None,
        **kwargs,
    ):
        self.semantic_loss_ignore_index = int(semantic_loss_ignore_index)
        self.test_mode = test_mode
        self.test_crop_size = list(test_crop_size) if test_crop_size is not None else None
        self.test_stride = list(test_stride) if test_stride is not None else None
        super().__init__(**kwargs)
        if test_mode not in TEST_MODES:
            raise ValueError(f"test_mode must be one of {TEST_MODES}, got {test_mode!r}")
        if test_mode == "slide" and (self.test_crop_size is None or self.test_stride is None):
            raise ValueError("test_mode='slide' needs test_crop_size and test_stride ([height, width] each)")

    @staticmethod
    def _check_choice(name: str, value, choices) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
