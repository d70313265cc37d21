"""What an mmseg-style config (mmseg 0.x on mmcv 1.x) says about testing, read once for every converter of a family
built on mmseg: the test protocol (``test_cfg``), the test pipeline's resize and normalisation, and the label
convention of its dataset, as ``HfSegConfig`` and ``HfSegImageProcessor`` arguments."""

from __future__ import annotations

import warnings
from typing import Any

from ..label_sets import label_set_for
from ..sizes import int_pair
from .config_reader import ConfigError

MMSEG_IMAGENET_NORM = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True}


def test_cfg(original: dict[str, Any]) -> dict[str, Any]:
    """The segmentor's ``test_cfg``: ``model.test_cfg``, else the top-level ``test_cfg``. mmseg builds the model with
    the top-level one as a default argument, so the model's wins (mmcv's ``build_from_cfg``); mmseg >= 0.7 refuses
    a config that gives both, and so do we when they differ."""
    inner, outer = (original.get("model") or {}).get("test_cfg"), original.get("test_cfg")
    if inner and outer and inner != outer:
        raise ConfigError(f"the config gives model.test_cfg {inner} and a different top-level test_cfg {outer}")
    return dict(inner or outer or {})


def test_protocol(original: dict[str, Any]) -> dict[str, Any]:
    """``test_mode`` (and for ``"slide"`` the window's ``test_crop_size`` / ``test_stride``) for the config."""
    cfg = test_cfg(original)
    mode = cfg.get("mode", "whole")
    if mode == "whole":
        return {"test_mode": "whole"}
    if mode != "slide":
        raise ConfigError(f"test_cfg mode {mode!r}: mmseg's segmentors test 'whole' or 'slide'")
    return {"test_mode": "slide", "test_crop_size": list(int_pair(cfg.get("crop_size"), "test_cfg.crop_size")),
            "test_stride": list(int_pair(cfg.get("stride"), "test_cfg.stride"))}


def _steps(pipeline) -> list[dict]:
    """The pipeline's steps, the transforms inside ``MultiScaleFlipAug`` included (after it)."""
    out = []
    for step in pipeline or []:
        out.append(step)
        if step.get("type") == "MultiScaleFlipAug":
            out += list(step.get("transforms") or [])
    return out


def _reduce_zero_label(original: dict[str, Any], num_labels: int) -> bool:
    """The dataset's ``reduce_zero_label``: set on the test (else train) dataset, else on ``LoadAnnotations`` (test,
    else train pipeline), else the convention of the label set the class count and ``dataset_type`` name."""
    data = original.get("data") or {}
    for split in ("test", "train"):
        if isinstance(data.get(split), dict) and "reduce_zero_label" in data[split]:
            return bool(data[split]["reduce_zero_label"])
    for pipeline in ("test_pipeline", "train_pipeline"):
        for step in _steps(original.get(pipeline)):
            if step.get("type") == "LoadAnnotations" and "reduce_zero_label" in step:
                return bool(step["reduce_zero_label"])
    label_set = label_set_for(num_labels, hint=str(original.get("dataset_type", "")))
    return label_set.reduce_labels if label_set is not None else False


def processor_kwargs(original: dict[str, Any], num_labels: int, ignore_index: int) -> dict[str, Any]:
    """``HfSegImageProcessor`` arguments of the config's single-scale test pipeline: the ``MultiScaleFlipAug``
    ``img_scale`` (or a plain ``Resize``'s) with its ``keep_ratio``, the ``Normalize`` step (or ``img_norm_cfg``) on
    0..255 pixels, OpenCV-like bilinear resizing, and the dataset's label convention."""
    steps = _steps(original.get("test_pipeline"))
    norm = next((s for s in steps if s.get("type") == "Normalize"), None) or original.get("img_norm_cfg")
    if not norm:
        warnings.warn("the config has no Normalize step and no img_norm_cfg: using the ImageNet mean/std on 0..255 "
                      "pixels that every released mmseg config of these families uses", stacklevel=2)
        norm = MMSEG_IMAGENET_NORM
    resize = next((s for s in steps if s.get("type") == "Resize"), {})
    flip_aug = next((s for s in steps if s.get("type") == "MultiScaleFlipAug"), {})
    scale = flip_aug.get("img_scale") or resize.get("img_scale")
    if scale is not None and isinstance(scale[0], (list, tuple)):
        if len(scale) != 1:
            raise ConfigError(f"the test pipeline resizes to several scales {scale}: convert a single-scale config")
        scale = scale[0]
    kwargs: dict[str, Any] = dict(
        do_rescale=False, do_normalize=True, antialias=False,
        image_mean=[float(v) for v in norm["mean"]], image_std=[float(v) for v in norm["std"]],
        channel_order="RGB" if norm.get("to_rgb", True) else "BGR", ignore_index=int(ignore_index),
        do_reduce_labels=_reduce_zero_label(original, num_labels),
    )
    if scale is None:
        kwargs["resize_mode"] = "none"
    elif resize.get("keep_ratio", True):
        kwargs.update(resize_mode="keep_ratio", scale=[int(max(scale)), int(min(scale))])
    else:  # mmcv scales are (width, height)
        kwargs.update(resize_mode="fixed", size={"height": int(scale[1]), "width": int(scale[0])})
    label_set = label_set_for(num_labels, hint=str(original.get("dataset_type", "")))
    if label_set is not None and label_set.label_map:
        kwargs["label_map"] = dict(label_set.label_map)
    return kwargs
