#!/usr/bin/env python
"""Time and measure hf_seg's mean IoU against the real ``evaluate`` mean_iou metric, side by side.

    python scripts/benchmark_metric.py --reference-metric /path/to/evaluate/metrics/mean_iou

Default workload: 200 ADE20K-sized maps (512x683), 150 classes, references as raw uint8 annotations (0 = other,
1..150) with ``reduce_labels=True``, predictions as int64 (what ``argmax(...).numpy()`` gives). Each method runs in its
own fresh process; peak memory is the rise of the process's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs`` after the data are built) while the metric runs, and for ``evaluate`` the largest size the
metric cache folder reached on disk. The real metric is loaded from a local copy of its folder (``--reference-metric``),
so nothing is downloaded.

Methods:
  ours          hf_seg.metrics.mean_iou(predictions, references, ...) (one call)
  ours_stream   hf_seg.metrics.MeanIoU: update() per image, compute() at the end
  ours_evaluate evaluate.load(hf_seg.metrics.EVALUATE_MODULE_PATH): add() per image, compute()
  real_evaluate evaluate.load(<reference>): add() per image, compute() -- what users of evaluate run
  real_function the reference script's module-level mean_iou() on the arrays (its numpy core, no Arrow/PNG)

Each method first runs alone in a fresh process (time and peak memory); then one more process runs all methods
alternately, round by round, so that the speed ratios do not depend on the load of a shared machine drifting
between the separate runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# scripts/evaluate.py sits next to this file: keep this folder off sys.path so `import evaluate` is the library
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

OURS = ("ours", "ours_stream", "ours_evaluate")
REAL = ("real_evaluate", "real_function")


# ------------------------------------------------------------------------------------------ worker process
def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _make_data(n, height, width, num_labels, seed, pred_dtype):
    import numpy as np

    rng = np.random.default_rng(seed)
    refs, preds = [], []
    block = 16
    for _ in range(n):
        coarse = rng.integers(0, num_labels + 1, size=(-(-height // block), -(-width // block)), dtype=np.uint8)
        ref = np.kron(coarse, np.ones((block, block), dtype=np.uint8))[:height, :width]  # raw: 0 = other
        pred = np.where(ref == 0, 0, ref.astype(np.int64) - 1)
        noise = rng.random(ref.shape) < 0.3
        pred[noise] = rng.integers(0, num_labels, size=int(noise.sum()))
        refs.append(np.ascontiguousarray(ref))
        preds.append(pred.astype(pred_dtype))
    return preds, refs


def _dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        if "modules" in Path(root).parts:
            continue
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _method(method, args, preds, refs):
    """A zero-argument callable computing the metric with ``method`` on the data."""
    kwargs = dict(num_labels=args.num_labels, ignore_index=255, reduce_labels=True)
    if method == "ours":
        from hf_seg.metrics import mean_iou

        def run():
            return mean_iou(preds, refs, **kwargs)
    elif method == "ours_stream":
        from hf_seg.metrics import MeanIoU

        def run():
            metric = MeanIoU(**kwargs)
            for p, r in zip(preds, refs):
                metric.update(p, r)
            return metric.compute()
    elif method in ("ours_evaluate", "real_evaluate"):
        import evaluate

        if method == "ours_evaluate":
            from hf_seg.metrics import EVALUATE_MODULE_PATH as path
        else:
            path = args.reference_metric
        module = evaluate.load(str(path))

        def run():
            for p, r in zip(preds, refs):
                module.add(prediction=p, reference=r)
            return module.compute(**kwargs)
    elif method == "real_function":
        import importlib.util

        spec = importlib.util.spec_from_file_location("_real_mean_iou", Path(args.reference_metric) / "mean_iou.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)

        def run():
            return mod.mean_iou(preds, refs, **kwargs)
    else:
        raise SystemExit(f"unknown method {method}")
    return run


def interleaved(args, preds, refs) -> dict:
    """All methods in one process, alternating run by run (robust against a drifting or shared machine)."""
    import warnings

    warnings.simplefilter("ignore")
    methods = [m for m in OURS + REAL if args.reference_metric or m in OURS]
    runs = {m: _method(m, args, preds, refs) for m in methods}
    times = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:
            start = time.perf_counter()
            runs[m]()
            times[m].append(time.perf_counter() - start)
    return {"method": "interleaved", "times_s": times, "median_s": {m: statistics.median(t) for m, t in times.items()}}


def worker(args) -> dict:
    import numpy as np

    preds, refs = _make_data(args.num_maps, args.height, args.width, args.num_labels, args.seed, args.pred_dtype)
    method = args.worker
    if method == "interleaved":
        return interleaved(args, preds, refs)
    run = _method(method, args, preds, refs)

    import warnings

    warnings.simplefilter("ignore")
    cache_root = Path(os.environ.get("HF_HOME", tempfile.gettempdir()))
    times, peaks, disk_peaks, result = [], [], [], None
    for _ in range(args.repeats):
        rss_before = _status("VmRSS")
        can_reset = _reset_peak()
        disk_peak = [0]
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                disk_peak[0] = max(disk_peak[0], _dir_size(cache_root))
                stop.wait(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        stop.set()
        poller.join()
        peaks.append((_status("VmHWM") - rss_before) if can_reset else -1)
        disk_peaks.append(disk_peak[0])
    return {
        "method": method,
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_rss_increase_bytes": max(peaks),
        "peak_cache_disk_bytes": max(disk_peaks),
        "mean_iou": float(result["mean_iou"]),
        "per_category_iou": [float(x) for x in np.asarray(result["per_category_iou"])],
        "overall_accuracy": float(result["overall_accuracy"]),
    }


# ------------------------------------------------------------------------------------------ driver
def _run_child(method, args, repeats=None) -> dict:
    if repeats is None:
        repeats = args.repeats if method in OURS else args.reference_repeats
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--num-maps", str(args.num_maps),
           "--height", str(args.height), "--width", str(args.width), "--num-labels", str(args.num_labels),
           "--seed", str(args.seed), "--pred-dtype", args.pred_dtype, "--repeats", str(repeats)]
    if args.reference_metric:
        cmd += ["--reference-metric", str(args.reference_metric)]
    with tempfile.TemporaryDirectory() as hf_home:
        env = dict(os.environ, HF_HOME=hf_home, HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1",
                   HF_DATASETS_OFFLINE="1")
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n: int) -> str:
    return "n/a" if n < 0 else f"{n / 2**20:8.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-metric", type=Path, default=None,
                        help="local folder with evaluate's metrics/mean_iou (mean_iou.py); without it only ours runs")
    parser.add_argument("--num-maps", type=int, default=200)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=683)
    parser.add_argument("--num-labels", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pred-dtype", default="int64", choices=["int64", "int32", "uint8"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our methods (median reported)")
    parser.add_argument("--reference-repeats", type=int, default=1, help="timed runs of the real metric")
    parser.add_argument("--methods", nargs="*", default=None, help=f"subset of {OURS + REAL}")
    parser.add_argument("--interleaved-repeats", type=int, default=3,
                        help="rounds of the final run that alternates all methods in one process")
    parser.add_argument("--no-interleaved", action="store_true", help="skip the interleaved run")
    parser.add_argument("--output", type=Path, default=None, help="write all results as JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    methods = args.methods or (list(OURS) + (list(REAL) if args.reference_metric else []))
    if any(m in REAL for m in methods) and not args.reference_metric:
        parser.error("--reference-metric is needed for " + ", ".join(m for m in methods if m in REAL))
    print(f"workload: {args.num_maps} maps of {args.height}x{args.width}, {args.num_labels} classes, "
          f"references uint8 (reduce_labels=True), predictions {args.pred_dtype}")
    results = {}
    for method in methods:
        results[method] = res = _run_child(method, args)
        print(f"  {method:14s} median {res['median_s']:8.3f} s   peak RSS +{_mib(res['peak_rss_increase_bytes'])} MiB"
              f"   cache on disk {_mib(res['peak_cache_disk_bytes'])} MiB   mIoU {res['mean_iou']:.6f}", flush=True)

    import numpy as np

    first = next(iter(results.values()))
    same = all(np.array_equal(r["per_category_iou"], first["per_category_iou"], equal_nan=True)
               and r["mean_iou"] == first["mean_iou"] for r in results.values())
    print(f"all methods give identical numbers: {same}")
    summary = {}
    for real in REAL:
        if real not in results:
            continue
        for ours in OURS:
            if ours not in results:
                continue
            speed = results[real]["median_s"] / results[ours]["median_s"]
            mem_ours = max(results[ours]["peak_rss_increase_bytes"], 1)
            mem = results[real]["peak_rss_increase_bytes"] / mem_ours
            summary[f"{ours}_vs_{real}"] = {"speedup": speed, "peak_rss_ratio": mem}
            print(f"  {ours:14s} vs {real:14s}: {speed:7.1f}x faster, peak RSS increase "
                  f"{_mib(results[ours]['peak_rss_increase_bytes']).strip()} vs "
                  f"{_mib(results[real]['peak_rss_increase_bytes']).strip()} MiB")
    inter = None
    if not args.no_interleaved:
        print(f"interleaved in one process ({args.interleaved_repeats} rounds, medians):", flush=True)
        inter = _run_child("interleaved", args, repeats=args.interleaved_repeats)
        med = inter["median_s"]
        print("  " + "   ".join(f"{m} {t:.3f} s" for m, t in med.items()))
        for real in REAL:
            if real in med:
                print(f"  {real}: " + ", ".join(f"{med[real] / med[o]:.1f}x slower than {o}" for o in OURS))
                for o in OURS:
                    summary[f"{o}_vs_{real}"]["speedup_interleaved"] = med[real] / med[o]
    if args.output:
        args.output.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                           "results": results, "interleaved": inter, "summary": summary,
                                           "identical": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
