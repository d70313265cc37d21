"""hf_seg.metrics against outputs recorded from the real ``evaluate`` mean_iou metric (tests/data/metrics)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_seg.metrics import EVALUATE_MODULE_PATH, MeanIoU, make_compute_metrics, mean_iou, metrics_from_confusion

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "metrics"
OUTPUTS = ("mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy")


def _load_cases():
    info = json.loads((DATA / "mean_iou_reference.json").read_text())
    arrays = np.load(DATA / "mean_iou_reference.npz")
    cases = []
    for entry in info["cases"]:
        name, n = entry["name"], entry["n_images"]
        params = dict(entry["params"])
        if params.get("label_map") is not None:
            params["label_map"] = {int(k): v for k, v in params["label_map"].items()}  # JSON keys are strings
        preds = [arrays[f"{name}/pred{i}"] for i in range(n)]
        refs = [arrays[f"{name}/ref{i}"] for i in range(n)]
        expected = {k: arrays[f"{name}/out/{k}"] for k in OUTPUTS}
        cases.append(pytest.param(preds, refs, params, expected, id=name))
    return cases


CASES = _load_cases()


def _assert_same(result, expected):
    assert set(result) == set(OUTPUTS)
    for key in OUTPUTS:
        got = np.asarray(result[key], dtype=np.float64)
        assert got.shape == expected[key].shape, key
        # bit-for-bit, NaN positions included
        assert np.array_equal(got, expected[key], equal_nan=True), (key, got, expected[key])
        assert np.array_equal(np.isnan(got), np.isnan(expected[key])), key


def test_reference_file_covers_the_edge_cases():
    names = {c.id for c in CASES}
    for needed in ("absent_classes", "all_ignore_image", "all_ignore_everything", "reduce_labels_ade",
                   "label_map_chained", "ignore_and_out_of_range_in_predictions", "mixed_sizes_uint16_int64",
                   "absent_classes_nan_to_num_0"):
        assert needed in names
    # the recorded outputs really contain NaNs where classes are absent (so the NaN check is not vacuous)
    arrays = np.load(DATA / "mean_iou_reference.npz")
    assert np.isnan(arrays["absent_classes/out/per_category_iou"]).sum() >= 10
    assert np.isnan(arrays["all_ignore_everything/out/overall_accuracy"])


@pytest.mark.parametrize("preds, refs, params, expected", CASES)
def test_mean_iou_matches_evaluate(preds, refs, params, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide / empty-slice warnings
        result = mean_iou(preds, refs, **params)
    _assert_same(result, expected)
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert isinstance(result[key], np.floating)


@pytest.mark.parametrize("method", ["histogram", "direct"])
@pytest.mark.parametrize("preds, refs, params, expected", CASES)
def test_streaming_matches_evaluate(preds, refs, params, expected, method):
    metric = MeanIoU(**params)
    for pred, ref in zip(preds, refs):  # one image per update, as torch tensors
        metric.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(ref.astype(np.int64)), method=method)
    _assert_same(metric.compute(), expected)


def test_inputs_are_not_modified():
    ref = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    pred = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    before = ref.copy()
    mean_iou([pred], [ref], num_labels=3, ignore_index=255, label_map={1: 2}, reduce_labels=True)
    assert np.array_equal(ref, before)


def test_streaming_equals_one_shot_on_batches():
    gen = torch.Generator().manual_seed(0)
    metric = MeanIoU(num_labels=19, ignore_index=255)
    all_preds, all_refs = [], []
    for _ in range(5):
        ref = torch.randint(0, 21, (3, 37, 53), generator=gen)  # 19, 20 are out of range
        ref[ref == 20] = 255
        pred = torch.randint(0, 19, (3, 37, 53), generator=gen)
        metric.update(pred, ref)  # a whole [B, H, W] batch at once
        all_preds += list(pred.numpy())
        all_refs += list(ref.numpy())
    one_shot = mean_iou(all_preds, all_refs, num_labels=19, ignore_index=255)
    streamed = metric.compute()
    for key in OUTPUTS:
        assert np.array_equal(streamed[key], one_shot[key], equal_nan=True)
    assert metric.confusion_matrix.shape == (19, 19)
    assert metric.confusion_matrix.sum() == sum(int(((r != 255) & (r < 19)).sum()) for r in all_refs)
    # reset starts over
    metric.reset()
    assert np.isnan(metric.compute()["mean_iou"])


def test_histogram_and_direct_paths_agree_on_wide_value_ranges():
    rng = np.random.default_rng(3)
    ref = rng.integers(-70000, 70000, size=(64, 64)).astype(np.int64)
    ref[:32] = rng.integers(0, 5, size=(32, 64))
    pred = rng.integers(-3, 8, size=(64, 64)).astype(np.int64)
    a = MeanIoU(5, ignore_index=-1).update(pred, ref, method="histogram").confusion
    b = MeanIoU(5, ignore_index=-1).update(pred, ref, method="direct").confusion
    assert np.array_equal(a, b)


def test_valid_mask_drops_pixels():
    ref = torch.tensor([[0, 1], [1, -100]])
    pred = torch.tensor([[0, 1], [0, 1]])
    masked = MeanIoU(2, ignore_index=255).update(pred, ref, valid_mask=ref != -100).compute()
    expected = mean_iou([pred[:1].numpy(), pred[1:, :1].numpy()], [ref[:1].numpy(), ref[1:, :1].numpy()],
                        num_labels=2, ignore_index=255)
    for key in OUTPUTS:
        assert np.array_equal(masked[key], expected[key], equal_nan=True)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        mean_iou([np.zeros((2, 2), np.uint8)], [np.zeros((2, 3), np.uint8)], num_labels=2, ignore_index=255)
    with pytest.raises(ValueError):
        mean_iou([np.zeros((2, 2), np.uint8)] * 2, [np.zeros((2, 2), np.uint8)], num_labels=2, ignore_index=255)
    with pytest.raises(ValueError):
        mean_iou([np.full((2, 2), 0.5)], [np.zeros((2, 2), np.uint8)], num_labels=2, ignore_index=255)


def test_metrics_from_confusion_nan_to_num():
    conf = np.zeros((4, 4), dtype=np.int64)
    conf[0, 0] = 3
    out = metrics_from_confusion(conf, nan_to_num=0)
    assert out["mean_iou"] == 1.0 and out["per_category_iou"].tolist() == [1.0, 0.0, 0.0]


class _EvalPred:
    def __init__(self, predictions, label_ids):
        self.predictions, self.label_ids = predictions, label_ids


def test_compute_metrics_batched_matches_one_shot():
    gen = torch.Generator().manual_seed(1)
    compute = make_compute_metrics(num_labels=6, ignore_index=255, per_category=True,
                                   id2label={i: f"c{i}" for i in range(6)})
    preds, refs = [], []
    batches = 3
    for step in range(batches):
        logits = torch.randn(2, 6, 8, 10, generator=gen)  # 1/4 resolution
        labels = torch.randint(0, 6, (2, 32, 40), generator=gen)
        labels[:, :3] = 255
        if step == 1:
            labels[:, -4:] = -100  # Trainer's padding across processes
        up = torch.nn.functional.interpolate(logits, size=(32, 40), mode="bilinear", align_corners=False).argmax(1)
        keep = labels != -100
        for i in range(2):
            preds.append(up[i][keep[i]].numpy())
            refs.append(labels[i][keep[i]].numpy())
        out = compute(_EvalPred(logits, labels), compute_result=step == batches - 1)
        if step < batches - 1:
            assert out == {}
    expected = mean_iou(preds, refs, num_labels=6, ignore_index=255)
    assert out["mean_iou"] == float(expected["mean_iou"])
    assert out["overall_accuracy"] == float(expected["overall_accuracy"])
    assert out["iou_c3"] == float(expected["per_category_iou"][3])
    assert compute.metric.num_updates == 0  # reset after the final result
    # non-batched mode: numpy arrays of everything, default compute_result=True
    logits = torch.randn(3, 6, 8, 10, generator=gen)
    labels = torch.randint(0, 6, (3, 32, 40), generator=gen)
    out = make_compute_metrics(6)(_EvalPred((logits.numpy(), None), labels.numpy()))
    up = torch.nn.functional.interpolate(logits, size=(32, 40), mode="bilinear", align_corners=False).argmax(1)
    assert out["mean_iou"] == float(mean_iou(up.numpy(), labels.numpy(), 6, 255)["mean_iou"])


@pytest.mark.parametrize("preds, refs, params, expected", CASES[:1] + CASES[-3:])
def test_evaluate_module_in_process(preds, refs, params, expected):
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(EVALUATE_MODULE_PATH)
    for pred, ref in zip(preds[:-1], refs[:-1]):
        metric.add(prediction=pred, reference=ref)
    metric.add_batch(predictions=preds[-1:], references=refs[-1:])
    _assert_same(metric.compute(**params), expected)


def test_evaluate_module_loads_offline(tmp_path):
    pytest.importorskip("evaluate")
    code = (
        "import numpy as np, evaluate, hf_seg.metrics as m\n"
        "metric = evaluate.load(m.EVALUATE_MODULE_PATH)\n"
        "out = metric.compute(predictions=[np.array([[1, 2], [3, 255]])], references=[np.array([[1, 2], [2, 255]])],"
        " num_labels=4, ignore_index=255)\n"
        "print(repr(float(out['mean_iou'])))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               # any network attempt fails fast
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "0.5"


def test_metrics_package_imports_no_model_code():
    for path in (ROOT / "hf_seg" / "metrics").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert "modeling" not in name and "transformers" not in name, (path, name)


def test_raw_histogram_grows_flushes_and_folds_like_the_direct_path():
    from hf_seg.metrics import RawPairHistogram

    rng = np.random.default_rng(7)
    batches = [
        (rng.integers(0, 6, (20, 30)).astype(np.uint8), rng.integers(0, 9, (20, 30)).astype(np.uint8)),
        (rng.integers(-3, 12, (15, 10)).astype(np.int32), rng.integers(0, 300, (15, 10)).astype(np.uint16)),  # grows
        (rng.integers(0, 6, (8, 8)).astype(np.int64), rng.integers(-(10**9), 10**9, (8, 8))),  # too wide: sparse
        (rng.integers(0, 6, (9, 9)).astype(np.uint8), rng.integers(0, 9, (9, 9)).astype(np.uint8)),  # back in grid
    ]
    hist = RawPairHistogram()
    for pred, ref in batches:
        hist.update(pred, ref)
    options = [dict(num_labels=6, ignore_index=255), dict(num_labels=6, ignore_index=0, reduce_labels=True),
               dict(num_labels=8, ignore_index=-1, label_map={3: 1, 1: 7, 250: 255}), dict(num_labels=1,
                                                                                          ignore_index=None)]
    for opts in options:
        direct = MeanIoU(**opts)
        for pred, ref in batches:
            direct.update(pred, ref, method="direct")
        folded = hist.fold(opts["num_labels"], opts["ignore_index"], opts.get("label_map"),
                           opts.get("reduce_labels", False))
        assert np.array_equal(folded, direct.confusion), opts
    r, p, c = hist.triples()
    assert c.sum() == sum(pred.size for pred, _ in batches)
    merged = RawPairHistogram().merge(hist).merge(hist)
    assert np.array_equal(merged.fold(6, 255), 2 * hist.fold(6, 255))
