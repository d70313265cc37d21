"""One meaning of ``label_map`` in hf_seg: every entry at once (as mmseg), in the processor, the datasets and the
metric core; ``evaluate``'s entry-by-entry order only in the evaluate-compatible wrapper, which warns about it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from hf_seg import HfSegImageProcessor
from hf_seg.data import dataset_info
from hf_seg.label_sets import get_label_set
from hf_seg.metrics import ConfusionMatrix, mean_iou

SWAP = {0: 1, 1: 0}


def _cityscapes_map_as_read_from_json() -> dict[str, int]:
    """The labelIds -> trainIds map with string keys in string order (what a JSON round trip with sorted keys gives)."""
    table = get_label_set("cityscapes").label_map
    return json.loads(json.dumps({str(k): v for k, v in table.items()}, sort_keys=True))


def test_swap_map_scores_a_perfect_prediction_one():
    raw = np.array([[0, 1], [1, 1]])
    prediction = np.array([[1, 0], [0, 0]])  # the swapped classes: exactly right
    metric = ConfusionMatrix(2, label_map=SWAP).update(prediction, raw)
    assert metric.compute()["mean_iou"] == 1.0
    # the processor and the datasets agree with the metric
    labels = HfSegImageProcessor(resize_mode="none", label_map=SWAP)(
        np.zeros((2, 2, 3), np.uint8), segmentation_maps=raw.astype(np.uint8))["labels"][0]
    assert labels.tolist() == prediction.tolist()


def test_cityscapes_label_ids_with_string_keys_score_a_perfect_prediction_one():
    label_map = _cityscapes_map_as_read_from_json()
    assert list(label_map)[:4] == ["0", "1", "10", "11"]  # string order: "11" -> 2 comes before "2" -> 255
    info = dataset_info("cityscapes")
    raw = np.arange(34, dtype=np.uint8).reshape(2, 17)
    truth = info.convert_labels(raw)
    assert truth[0, 11] == 2 and truth[0, 7] == 0 and truth[0, 2] == 255
    metric = ConfusionMatrix(19, label_map=label_map).update(np.where(truth == 255, 0, truth), raw)
    assert metric.compute()["mean_iou"] == 1.0  # all 19 classes are present


def test_evaluate_wrapper_keeps_evaluates_order_and_says_so(caplog):
    raw = np.array([[0, 1], [1, 1]])
    prediction = np.array([[1, 0], [0, 0]])
    with caplog.at_level(logging.WARNING, logger="hf_seg.metrics.evaluate_compat"):
        result = mean_iou([prediction], [raw], num_labels=2, ignore_index=255, label_map=SWAP)
    assert result["mean_iou"] < 1.0  # evaluate sends 0 -> 1 -> 0: the map is order-sensitive
    assert "order-sensitive" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_seg.metrics.evaluate_compat"):
        mean_iou([prediction], [raw], num_labels=2, ignore_index=255, label_map={7: 0})
    assert "order-sensitive" not in caplog.text


@pytest.mark.parametrize("reduce_labels", [False, True])
def test_core_reads_raw_annotations_like_the_processor(reduce_labels):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 6, (9, 11)).astype(np.uint8)
    prediction = rng.integers(0, 5, (9, 11))
    label_map = {3: 0, 0: 3, 5: 255}
    processor = HfSegImageProcessor(resize_mode="none", label_map=label_map, do_reduce_labels=reduce_labels)
    labels = processor(np.zeros((9, 11, 3), np.uint8), segmentation_maps=raw)["labels"][0]
    converted = ConfusionMatrix(5).update(prediction, labels.numpy()).confusion
    direct = ConfusionMatrix(5, label_map=label_map, reduce_labels=reduce_labels).update(prediction, raw).confusion
    assert np.array_equal(converted, direct)
