"""Regenerate ``mean_iou_reference.npz`` / ``mean_iou_reference.json`` from the REAL ``evaluate`` mean_iou metric.

The real metric script is not part of this repository. Put a copy of huggingface/evaluate's
``metrics/mean_iou/`` folder somewhere outside the repo and pass it::

    python tests/data/metrics/make_reference.py --reference-metric /tmp/refmetric/mean_iou

Every input is generated from fixed seeds, so rerunning gives byte-identical inputs. Each case is computed with the
real ``evaluate.load(<path>).compute(...)`` (the full path: Arrow cache, PNG/TIFF round trip of the maps) and with the
script's module-level ``mean_iou`` function on the numpy arrays; both must agree. Cases with ``label_map`` can only
use the function: the real ``compute`` raises ``TypeError`` there (it indexes PIL images).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUTS = ("mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy")


def _blocks(rng, shape, values, block=8):
    """A piecewise-constant map (segmentation-like) with values drawn from ``values``."""
    h, w = shape
    coarse = rng.choice(values, size=(-(-h // block), -(-w // block)))
    return np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))[:h, :w]


def _noisy(rng, ref, values, p):
    pred = ref.copy()
    flip = rng.random(ref.shape) < p
    pred[flip] = rng.choice(values, size=int(flip.sum()))
    return pred


def build_cases():
    cases = []

    def add(name, preds, refs, **params):
        cases.append({"name": name, "preds": preds, "refs": refs, "params": params})

    # 1. the docstring example of evaluate's mean_iou (three maps, two shapes)
    p = [np.array([[1, 2], [3, 4], [5, 255]]), np.array([[2, 7], [9, 2], [3, 6]]),
         np.array([[2, 2, 3], [8, 2, 4], [3, 255, 2]])]
    r = [np.array([[0, 3], [5, 4], [6, 255]]), np.array([[1, 7], [9, 2], [3, 6]]),
         np.array([[1, 2, 2], [8, 2, 1], [3, 255, 1]])]
    add("doc_example", p, r, num_labels=10, ignore_index=255)

    rng = np.random.default_rng(1234)
    # 2. absent classes: 20 labels, only 0..5 used -> NaN per-category entries
    shapes = [(24, 32), (17, 29), (40, 8)]
    refs = [_blocks(rng, s, np.arange(6, dtype=np.uint8)) for s in shapes]
    preds = [_noisy(rng, r_, np.arange(7, dtype=np.uint8), 0.3) for r_ in refs]
    add("absent_classes", preds, refs, num_labels=20, ignore_index=255)
    # 3. same with nan_to_num
    add("absent_classes_nan_to_num_0", preds, refs, num_labels=20, ignore_index=255, nan_to_num=0)
    add("absent_classes_nan_to_num_-1", preds, refs, num_labels=20, ignore_index=255, nan_to_num=-1)

    # 4. an all-ignore image among normal ones
    refs = [_blocks(rng, (16, 16), np.array([0, 1, 2, 255], dtype=np.uint8)), np.full((12, 20), 255, np.uint8),
            _blocks(rng, (9, 31), np.array([1, 2, 3], dtype=np.uint8), block=4)]
    preds = [_noisy(rng, r_, np.arange(4, dtype=np.uint8), 0.25) for r_ in refs]
    add("all_ignore_image", preds, refs, num_labels=4, ignore_index=255)
    # 5. every image all-ignore: every output NaN (and nan_to_num variant)
    refs = [np.full((8, 8), 255, np.uint8), np.full((5, 7), 255, np.uint8)]
    preds = [rng.integers(0, 4, size=r_.shape, dtype=np.uint8) for r_ in refs]
    add("all_ignore_everything", preds, refs, num_labels=4, ignore_index=255)
    add("all_ignore_everything_nan_to_num", preds, refs, num_labels=4, ignore_index=255, nan_to_num=0)

    # 6. reduce_labels with zeros (ADE20K-like: 0 = other, 1..150 classes, some 255 too)
    vals = np.concatenate([np.arange(0, 151), [255]]).astype(np.uint8)
    refs = [_blocks(rng, s, vals) for s in [(48, 64), (33, 50)]]
    preds = [_noisy(rng, np.where(r_ == 0, 0, r_.astype(np.int64) - 1).astype(np.uint8) % 150,
                    np.arange(150, dtype=np.uint8), 0.2) for r_ in refs]
    add("reduce_labels_ade", preds, refs, num_labels=150, ignore_index=255, reduce_labels=True)

    # 7. ignore values (255) and out-of-range values in predictions, int32 with negatives
    refs = [_blocks(rng, (20, 30), np.arange(5, dtype=np.int32)), _blocks(rng, (11, 13), np.arange(5, dtype=np.int32))]
    preds = [_noisy(rng, r_, np.array([0, 1, 2, 3, 4, 5, 7, 255, -1], dtype=np.int32), 0.4) for r_ in refs]
    add("ignore_and_out_of_range_in_predictions", preds, refs, num_labels=5, ignore_index=255)
    # 8. references out of range but not ignored (label 200, 7 with num_labels 5)
    refs = [_blocks(rng, (20, 24), np.array([0, 1, 2, 7, 200, 255], dtype=np.uint8), block=4)]
    preds = [_noisy(rng, r_, np.array([0, 1, 2, 3, 4, 7, 200], dtype=np.uint8), 0.5) for r_ in refs]
    add("references_out_of_range", preds, refs, num_labels=5, ignore_index=255)

    # 9. mixed sizes and dtypes (uint16 labels, int64 predictions)
    shapes = [(30, 41), (7, 3), (64, 10), (1, 1)]
    refs = [_blocks(rng, s, np.array([0, 3, 9, 12, 300], dtype=np.uint16), block=5) for s in shapes]
    preds = [_noisy(rng, r_.astype(np.int64), np.arange(0, 16, dtype=np.int64), 0.3) for r_ in refs]
    add("mixed_sizes_uint16_int64", preds, refs, num_labels=16, ignore_index=300)

    # 10. ignore_index = 0 (background excluded) and a binary problem
    refs = [_blocks(rng, (25, 25), np.array([0, 1, 2], dtype=np.uint8), block=5)]
    preds = [_noisy(rng, r_, np.array([0, 1, 2], dtype=np.uint8), 0.3) for r_ in refs]
    add("ignore_index_zero", preds, refs, num_labels=3, ignore_index=0)
    refs = [_blocks(rng, (32, 16), np.array([0, 1], dtype=np.uint8), block=4)]
    preds = [_noisy(rng, r_, np.array([0, 1], dtype=np.uint8), 0.2) for r_ in refs]
    add("binary", preds, refs, num_labels=2, ignore_index=255)

    # 11. a bigger 150-class case with reduce_labels and nan_to_num
    vals = np.arange(0, 151).astype(np.uint8)
    refs = [_blocks(rng, s, vals, block=4) for s in [(96, 128), (72, 96), (64, 64)]]
    preds = [_noisy(rng, np.clip(r_.astype(np.int16) - 1, 0, 149).astype(np.uint8), np.arange(150, dtype=np.uint8),
                    0.35) for r_ in refs]
    add("ade_150_reduce_nan_to_num", preds, refs, num_labels=150, ignore_index=255, reduce_labels=True, nan_to_num=0)

    # 12. label_map (chained, in dict order) -- only the function path works in evaluate
    refs = [_blocks(rng, (20, 20), np.arange(0, 8, dtype=np.uint8), block=4),
            _blocks(rng, (10, 30), np.arange(0, 8, dtype=np.uint8), block=2)]
    preds = [_noisy(rng, r_, np.arange(0, 6, dtype=np.uint8), 0.3) for r_ in refs]
    add("label_map_chained", preds, refs, num_labels=6, ignore_index=255, label_map={1: 2, 2: 3, 7: 255, 6: 0})
    add("label_map_and_reduce", preds, refs, num_labels=6, ignore_index=255, label_map={7: 0, 3: 1},
        reduce_labels=True)
    return cases


def _load_function(path: Path):
    spec = importlib.util.spec_from_file_location("_real_mean_iou", path / "mean_iou.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mean_iou


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-metric", required=True, type=Path,
                        help="folder holding evaluate's metrics/mean_iou/mean_iou.py (outside this repo)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    warnings.simplefilter("ignore")
    import evaluate

    metric = evaluate.load(str(args.reference_metric.resolve()))
    function = _load_function(args.reference_metric.resolve())
    arrays, manifest = {}, []
    for index, case in enumerate(build_cases()):
        name, params = case["name"], case["params"]
        entry = {"name": name, "params": params, "n_images": len(case["preds"])}
        fn_out = function([np.array(p) for p in case["preds"]], [np.array(r) for r in case["refs"]],
                          **{("results" if k == "predictions" else k): v for k, v in params.items()})
        try:
            mt_out = metric.compute(predictions=case["preds"], references=case["refs"], **params)
            entry["via"] = "evaluate.Metric.compute"
            for key in OUTPUTS:
                if not np.array_equal(mt_out[key], fn_out[key], equal_nan=True):
                    raise SystemExit(f"{name}: compute and function disagree on {key}")
            out = mt_out
        except TypeError as err:  # label_map: evaluate's compute passes PIL images to `label[label == old] = new`
            entry["via"] = "mean_iou function (Metric.compute raises TypeError: %s)" % err
            out = fn_out
        for i, (p, r) in enumerate(zip(case["preds"], case["refs"])):
            arrays[f"{name}/pred{i}"] = p
            arrays[f"{name}/ref{i}"] = r
        for key in OUTPUTS:
            arrays[f"{name}/out/{key}"] = np.asarray(out[key], dtype=np.float64)
        entry["outputs"] = {k: (float(out[k]) if np.ndim(out[k]) == 0 else None) for k in OUTPUTS[:3]}
        manifest.append(entry)
        print(f"{index:2d} {name:40s} mIoU={float(out['mean_iou']):.6f} via {entry['via'][:30]}")
    np.savez_compressed(args.out / "mean_iou_reference.npz", **arrays)
    info = {
        "generated_by": "tests/data/metrics/make_reference.py",
        "reference": "huggingface/evaluate metrics/mean_iou/mean_iou.py at a7dd338 (evaluate 0.4.6 installed)",
        "cases": manifest,
    }
    with open(args.out / "mean_iou_reference.json", "w") as f:
        json.dump(info, f, indent=1, allow_nan=True)
        f.write("\n")


if __name__ == "__main__":
    main()
