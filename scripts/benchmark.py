#!/usr/bin/env python
"""CPU speed and peak memory of hf_seg models, in units that compare across runs, days and machines.

Default: one row per released size that the performance comparison with the original implementations covers
(``DEFAULT_MODELS``), each measured in its own fresh Python process, one after another:

* **model**: one crop-size window, the path the originals' numbers mean (mmseg's ``encode_decode``): a seeded
  ``randn(1, 3, *crop)`` through the model and the bilinear resize of the logits to the crop
  (``hf_seg.inference.whole_inference``). The crop is the config's ``test_crop_size`` (512x512 for whole-image models).
* **end-to-end**: a seeded random RGB image of the dataset's usual size (``--image-size``; by default 512x683 for
  ADE20K-style datasets, 1024x2048 for Cityscapes) through the model's image processor, the model's test protocol
  (whole image or sliding window, ``hf_seg.inference.predict``) and the post-processing to a label map at the image's
  size (``hf_seg.predict.segment``).

The model is first rewritten for inference as ``hf-seg predict`` / ``evaluate`` run it
(``hf_seg.optimize_for_inference``: BatchNorm folded into convolutions, standardised weights cached, channels_last
for models of narrow convolutions; the "rewrite" column says what applied); ``--no-fuse`` measures the model as
loaded.
Each is timed as the median of ``--repeats`` calls after one warm-up (fp32, batch 1, ``--threads`` threads, no
gradients). ``ref`` is a fixed workload (one 2048x2048 @ 2048x2048 fp32 matmul on the same threads, median of 5)
measured in the same process before and after the timed calls; "cost" = median seconds / mean(ref before, ref
after), the time in matmuls, which cancels a slower or faster machine (or a busier day) to first order. Peak
memory is the process's peak RSS (VmHWM): "model" covers imports, build, warm-up and the timed forwards (the
definition of the originals' anchors); "e2e" is the peak of the end-to-end calls alone (VmHWM reset before them,
where the kernel allows it). "after imports" is VmRSS once torch, transformers and hf_seg are imported.

    python scripts/benchmark.py                                 # the default rows, 2 threads
    python scripts/benchmark.py --models csail-ade20k-resnet50-upernet --repeats 10 --json out.json
    python scripts/benchmark.py --models /path/to/converted_model --image-size 1024 2048

``--slide-compare`` times the sliding-window implementation against mmseg's crop-by-crop loop on one model:

    python scripts/benchmark.py --slide-compare --models regionproxy-vit-ti16-cityscapes-768 --size 1024 2048
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

DEFAULT_MODELS = [
    "semask-t-fpn-ade20k-512",
    "semask-b-fpn-ade20k-512",
    "csail-ade20k-mobilenetv2dilated-c1-deepsup",
    "csail-ade20k-resnet50dilated-ppm-deepsup",
    "csail-ade20k-resnet50-upernet",
    "csail-ade20k-hrnetv2-c1",
    "unept-res50-ade20k-480",
    "setr-pup-ade20k-512",
    "regionproxy-vit-s16-ade20k-512",
    "regionproxy-r26-vit-s32-ade20k-512",
]
# End-to-end image size (height, width) by dataset; the rest use a typical ADE20K validation image.
IMAGE_SIZES = {"cityscapes": (1024, 2048)}
DEFAULT_IMAGE_SIZE = (512, 683)
DEFAULT_CROP = (512, 512)
RESULT_PREFIX = "BENCHMARK-RESULT "


# ------------------------------------------------------------------------------------------- measuring
def ref(threads: int) -> float:
    """The reference workload: median of 5 timed 2048x2048 fp32 matmuls (after 1 warm-up), in seconds."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2048, 2048, generator=g)
    b = torch.randn(2048, 2048, generator=g)
    torch.mm(a, b)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _status(field: str) -> int:
    """A byte count from /proc/self/status (VmRSS, VmHWM), or -1 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on GPUs, peak RSS rise (VmHWM, reset via clear_refs) on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = -1

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = _status("VmRSS")
            self.ok = _reset_peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        elif self.ok:
            self.peak = _status("VmHWM") - self.base
        return False


def _mib(n) -> str:
    return "n/a" if n is None or n < 0 else f"{n / 2**20:.0f} MiB"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, repeats: int, device) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def _pair(values):
    if values is None:
        return None
    return (values[0], values[0]) if len(values) == 1 else tuple(values[:2])


def _load(name: str, device):
    from hf_seg.evaluation import load_model_and_processor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a preset's "random weights" note
        return load_model_and_processor(name, device=device)


def _dataset(name: str) -> str | None:
    """The zoo row's dataset (None for a folder or hub id)."""
    from hf_seg import zoo

    try:
        return zoo.get_entry(name).dataset
    except KeyError:
        return None


# ------------------------------------------------------------------------------------ one model (worker)
def measure_model(args) -> dict:
    """Both measurements of one model in this process (run it in a fresh one for a clean peak RSS)."""
    import numpy as np
    from PIL import Image

    import hf_seg  # noqa: F401 - counted in "after imports"
    from hf_seg.inference import as_model_fn, whole_inference
    from hf_seg.predict import segment

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    rss_imports = _status("VmRSS")
    t0 = time.perf_counter()
    model, processor, how = _load(args.worker, device)
    build_s = time.perf_counter() - t0
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    config = model.config
    crop = _pair(args.crop) or tuple(getattr(config, "test_crop_size", None) or DEFAULT_CROP)
    size = _pair(args.image_size) or IMAGE_SIZES.get(_dataset(args.worker), DEFAULT_IMAGE_SIZE)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *crop, generator=g).to(device)
    optimization = None
    if not args.no_fuse:  # what hf-seg predict / evaluate run: the model rewritten for inference
        from hf_seg import optimize_for_inference

        optimize_for_inference(model, x)
        optimization = model.hf_seg_inference_optimization.to_dict()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8))
    model_fn = as_model_fn(model)
    result = {"model": args.worker, "how": how, "model_type": config.model_type, "crop": list(crop),
              "image": list(size), "test_mode": getattr(config, "test_mode", None) or "whole",
              "params_m": params_m, "optimization": optimization, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "device": str(device), "build_s": build_s,
              "rss_after_imports": rss_imports, "load_avg_start": os.getloadavg()}

    with torch.inference_mode():
        def model_only():
            return whole_inference(model_fn, x)

        def end_to_end():
            return segment(image, model, processor, device=args.device)

        t0 = time.perf_counter()
        model_only()
        result["model_warmup_s"] = time.perf_counter() - t0
        ref_before = ref(args.threads)
        model_times = _timed(model_only, args.repeats, device)
        result["peak_rss_model"] = _status("VmHWM")
        reset = _reset_peak_rss()
        t0 = time.perf_counter()
        labels = end_to_end()
        result["e2e_warmup_s"] = time.perf_counter() - t0
        if tuple(labels.shape) != tuple(size):
            raise RuntimeError(f"{args.worker}: end-to-end label map is {labels.shape}, expected {size}")
        e2e_times = _timed(end_to_end, args.e2e_repeats, device)
        result["peak_rss_e2e"] = _status("VmHWM") if reset else -1
        ref_after = ref(args.threads)
    unit = (ref_before + ref_after) / 2
    result.update(model_times_s=model_times, e2e_times_s=e2e_times, ref_before_s=ref_before, ref_after_s=ref_after,
                  model_s=statistics.median(model_times), e2e_s=statistics.median(e2e_times),
                  model_cost=statistics.median(model_times) / unit, e2e_cost=statistics.median(e2e_times) / unit,
                  load_avg_end=os.getloadavg())
    return result


# ------------------------------------------------------------------------------------------ the table
def _rewrite(opt: dict | None) -> str:
    """The inference rewrite in a few words: BatchNorms folded, standardised convs cached, memory format."""
    if opt is None:
        return "off"
    parts = [f"{opt['folded_batch_norms']} BN"] if opt["folded_batch_norms"] else []
    parts += [f"{opt['standardised_convs']} StdConv"] if opt["standardised_convs"] else []
    parts += ["NHWC"] if opt["channels_last"] else []
    return " + ".join(parts) or "none"


def _row(r: dict) -> str:
    mib = lambda n: f"{n / 2**20:.0f}" if n and n > 0 else "n/a"  # noqa: E731
    return (f"| {r['model']} | {_rewrite(r.get('optimization'))} | {r['crop'][0]}x{r['crop'][1]} | "
            f"{r['model_s']:.3f} | {r['model_cost']:.1f} | "
            f"{r['image'][0]}x{r['image'][1]} {r['test_mode']} | {r['e2e_s']:.3f} | {r['e2e_cost']:.1f} | "
            f"{mib(r['peak_rss_model'])} | {mib(r['peak_rss_e2e'])} | {mib(r['rss_after_imports'])} |")


def run_table(args) -> int:
    models = args.models or DEFAULT_MODELS
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent)
    results, failed = [], []
    print(f"torch {torch.__version__}, {args.threads} threads, {args.device}; {len(models)} models, each in a fresh "
          f"process; median of {args.repeats} (model) / {args.e2e_repeats} (end-to-end) calls after 1 warm-up")
    print("cost = seconds / reference matmul (2048^3 fp32, same process); peak RSS in MiB\n")
    print("| model | rewrite | crop | model s | model cost | e2e image, protocol | e2e s | e2e cost | "
          "peak RSS model | peak RSS e2e | RSS after imports |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in models:
        cmd = [sys.executable, os.path.join(here, "benchmark.py"), "--worker", name, "--threads", str(args.threads),
               "--device", args.device, "--repeats", str(args.repeats), "--e2e-repeats", str(args.e2e_repeats)]
        for flag, value in (("--crop", args.crop), ("--image-size", args.image_size)):
            if value:
                cmd += [flag, *map(str, value)]
        if args.no_fuse:
            cmd.append("--no-fuse")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if proc.returncode != 0 or not lines:
            failed.append(name)
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            print(f"| {name} | failed (exit {proc.returncode}): {tail} |", flush=True)
            continue
        r = json.loads(lines[-1][len(RESULT_PREFIX):])
        results.append(r)
        print(_row(r), flush=True)
    print(f"\nload average (1 min) {results[0]['load_avg_start'][0]:.2f} at the first start, "
          f"{results[-1]['load_avg_end'][0]:.2f} at the last end, {os.cpu_count()} CPUs" if results else "")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(path)
    return 1 if failed else 0


# ------------------------------------------------------------------------------ sliding-window comparison
def run_slide_compare(args) -> int:
    """Batched sliding window vs batch 1 vs mmseg's crop-by-crop loop, interleaved repeat by repeat."""
    from hf_seg.inference import as_model_fn, num_windows, slide_inference, slide_inference_reference

    if not args.models or len(args.models) != 1 or not args.size:
        raise SystemExit("--slide-compare needs one model (--models NAME) and --size H W")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    model, _, how = _load(args.models[0], device)
    config = model.config
    model_fn = as_model_fn(model)
    x = torch.randn(1, 3, *args.size, generator=torch.Generator().manual_seed(0)).to(device)
    crop = _pair(args.crop) or tuple(getattr(config, "test_crop_size", None) or ())
    if not crop:
        raise SystemExit("--slide-compare needs --crop (the config has no test_crop_size)")
    stride = _pair(args.stride) or tuple(getattr(config, "test_stride", None) or ()) or crop
    pad = bool(getattr(config, "test_pad_to_crop", True))
    n_windows = num_windows(*args.size, crop, stride)
    crop_batch = args.crop_batch or n_windows
    labels = config.num_labels
    methods = {
        "crop-by-crop": lambda: slide_inference_reference(model_fn, x, crop, stride, labels, pad_to_crop=pad),
        "ours, batch 1": lambda: slide_inference(model_fn, x, crop, stride, labels, batch_size=1, pad_to_crop=pad),
        f"ours, batched ({crop_batch})": lambda: slide_inference(model_fn, x, crop, stride, labels,
                                                                 batch_size=crop_batch, pad_to_crop=pad),
    }
    print(f"model {args.models[0]} ({how}), input {tuple(x.shape)}, crop {crop} stride {stride}: {n_windows} "
          f"windows, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        outputs, peaks = {}, {}
        for name, fn in methods.items():  # warm-up, outputs and peak memory, one method at a time
            with PeakMemory(device) as mem:
                outputs[name] = fn()
            peaks[name] = mem.peak
        first = next(iter(outputs.values())).float()
        diffs = {name: float((out.float() - first).abs().max()) for name, out in outputs.items()}
        del outputs
        times = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                times[name] += _timed(fn, 1, device)
    base = statistics.median(times["crop-by-crop"])
    for name in methods:
        med = statistics.median(times[name])
        print(f"  {name:24s} median {med:8.3f} s  {base / med:5.2f}x vs crop-by-crop   peak memory "
              f"+{_mib(peaks[name])}   max |diff| {diffs[name]:.2e}")
    return 0


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, help="zoo presets, converted folders or hub ids "
                   "(default: DEFAULT_MODELS)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as the originals' anchors)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed model-only calls (and slide-compare rounds)")
    p.add_argument("--e2e-repeats", type=int, default=3, help="timed end-to-end calls")
    p.add_argument("--crop", type=int, nargs="+", default=None, help="model-only window (default test_crop_size)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="end-to-end image size (default by dataset)")
    p.add_argument("--json", default=None, help="write the rows as JSON")
    p.add_argument("--no-fuse", action="store_true", help="models as loaded, without hf_seg.optimize_for_inference "
                   "(BatchNorm folding, cached weight standardisation, channels_last for narrow conv nets)")
    p.add_argument("--slide-compare", action="store_true", help="sliding-window implementations on one model")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="slide-compare input size")
    p.add_argument("--stride", type=int, nargs="+", default=None, help="slide-compare stride (default test_stride)")
    p.add_argument("--crop-batch", type=int, default=None, help="slide-compare crops per forward (default all)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(measure_model(args)), flush=True)
        return 0
    if args.slide_compare:
        return run_slide_compare(args)
    return run_table(args)


if __name__ == "__main__":
    sys.exit(main())
