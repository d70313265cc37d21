#!/usr/bin/env python
"""Latency, throughput and peak memory of a segmentation model; with ``--mode slide``, batched sliding-window
inference against crop-by-crop in the same run.

    python scripts/benchmark.py --model regionproxy-vit-ti16-cityscapes-768 --size 1024 2048 --mode slide
    python scripts/benchmark.py --model /path/to/converted --size 512 512 --batch 2 --dtype bf16 --channels-last

``--model`` is a zoo preset (random weights; the architecture is what is timed), a converted folder or a hub id.

whole: ``--repeats`` timed forwards (after ``--warmup``) of a [batch, 3, H, W] input, each the model forward plus the
bilinear resize of the logits to the input size (mmseg's ``encode_decode``, the path of the perf anchors).

slide: one [batch, 3, H, W] input through three implementations, interleaved repeat by repeat:
  crop-by-crop   mmseg's loop: one window per forward, ``preds += F.pad(window_logits, ...)`` (full-size pad)
  ours, batch 1  hf_seg.inference.slide_inference(batch_size=1)
  ours, batched  hf_seg.inference.slide_inference(batch_size=--crop-batch, default all windows of the input)
The outputs are compared (max abs difference) and the speed ratios printed.

The normalized cost (docs: /work/shared/notes/perf-anchors.md, "Normalized cost"): the reference matmul workload
``ref()`` is timed before and after the timed runs and ``median seconds / mean(ref_before, ref_after)`` is printed,
in units of one 2048x2048 fp32 matmul on the benchmark's threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def ref(threads: int) -> float:
    """The perf-anchors reference workload: median of 5 timed 2048x2048 fp32 matmuls (after 1 warm-up)."""
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


# ------------------------------------------------------------------------------------------------ memory
def _status(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


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
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.ok = True
            except OSError:
                self.ok = False
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


# ------------------------------------------------------------------------------------------------ main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo preset name, converted folder or hub id")
    p.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1, help="images per input")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole")
    p.add_argument("--crop-size", type=int, nargs="+", default=None, help="slide crop (default config.test_crop_size)")
    p.add_argument("--stride", type=int, nargs="+", default=None, help="slide stride (default config.test_stride)")
    p.add_argument("--crop-batch", type=int, default=None, help="crops per forward of the batched slide")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compile time reported apart)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads on CPU (the perf anchors used 2)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    return p


def _pair(values):
    if values is None:
        return None
    return (values[0], values[0]) if len(values) == 1 else tuple(values[:2])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from hf_seg.evaluation import load_model_and_processor
    from hf_seg.inference import as_model_fn, num_windows, slide_inference, slide_inference_reference, whole_inference

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model, _, how = load_model_and_processor(args.model, device=device, dtype=dtype)
        load_s = time.perf_counter() - t0
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = model.config
    num_labels = config.num_labels
    model_fn = as_model_fn(model)
    compile_s = None
    if args.compile:
        compiled = torch.compile(model)
        model_fn = as_model_fn(compiled)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, *args.size, generator=g).to(device=device, dtype=dtype)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    print(f"model {args.model} ({how}, {config.model_type}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
          f"params), input {tuple(x.shape)} {args.dtype} on {device}, threads {torch.get_num_threads()}, "
          f"mode {args.mode}" + (", compiled" if args.compile else "") + (", channels_last" if args.channels_last
                                                                          else ""))
    results = {"model": args.model, "model_type": config.model_type, "input": list(x.shape), "dtype": args.dtype,
               "device": str(device), "threads": torch.get_num_threads(), "mode": args.mode,
               "compile": args.compile, "channels_last": args.channels_last, "load_s": load_s,
               "torch": torch.__version__, "load_avg_start": os.getloadavg()}

    with torch.inference_mode():
        if args.mode == "whole":
            def run():
                return whole_inference(model_fn, x)

            t0 = time.perf_counter()
            for _ in range(max(1, args.warmup)):
                run()
            _sync(device)
            warm_s = time.perf_counter() - t0
            if args.compile:
                compile_s = warm_s
            ref_before = ref(args.threads) if device.type == "cpu" else None
            times = []
            with PeakMemory(device) as mem:
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    run()
                    _sync(device)
                    times.append(time.perf_counter() - t)
            ref_after = ref(args.threads) if device.type == "cpu" else None
            median = statistics.median(times)
            results.update(times_s=times, median_s=median, images_per_s=args.batch / median, peak_bytes=mem.peak,
                           warmup_s=warm_s)
            print(f"whole: median {median:.4f} s (min {min(times):.4f}, max {max(times):.4f}) per forward of "
                  f"{args.batch} image(s); {args.batch / median:.2f} images/s; peak memory +{_mib(mem.peak)}")
        else:
            crop = _pair(args.crop_size) or tuple(getattr(config, "test_crop_size", None) or ())
            stride = _pair(args.stride) or tuple(getattr(config, "test_stride", None) or ()) or crop
            if not crop:
                raise SystemExit("slide mode needs --crop-size (the config has no test_crop_size)")
            pad = bool(getattr(config, "test_pad_to_crop", True))
            n_windows = num_windows(*args.size, crop, stride)
            crop_batch = args.crop_batch or n_windows * args.batch
            methods = {
                "crop-by-crop": lambda: slide_inference_reference(model_fn, x, crop, stride, num_labels,
                                                                  pad_to_crop=pad),
                "ours, batch 1": lambda: slide_inference(model_fn, x, crop, stride, num_labels, batch_size=1,
                                                         pad_to_crop=pad),
                f"ours, batched ({crop_batch})": lambda: slide_inference(model_fn, x, crop, stride, num_labels,
                                                                         batch_size=crop_batch, pad_to_crop=pad),
            }
            print(f"slide: crop {crop} stride {stride}: {n_windows} windows per image")
            outputs, peaks, times = {}, {}, {name: [] for name in methods}
            t0 = time.perf_counter()
            for name, fn in methods.items():  # warm-up, outputs and peak memory, one method at a time
                with PeakMemory(device) as mem:
                    for _ in range(max(1, args.warmup)):
                        outputs[name] = fn()
                peaks[name] = mem.peak
            warm_s = time.perf_counter() - t0
            first = next(iter(outputs.values())).float()
            diffs = {name: float((out.float() - first).abs().max()) for name, out in outputs.items()}
            del outputs
            ref_before = ref(args.threads) if device.type == "cpu" else None
            for _ in range(args.repeats):  # interleaved
                for name, fn in methods.items():
                    t = time.perf_counter()
                    fn()
                    _sync(device)
                    times[name].append(time.perf_counter() - t)
            ref_after = ref(args.threads) if device.type == "cpu" else None
            medians = {name: statistics.median(ts) for name, ts in times.items()}
            base = medians["crop-by-crop"]
            for name in methods:
                print(f"  {name:24s} median {medians[name]:8.3f} s  (min {min(times[name]):.3f}, max "
                      f"{max(times[name]):.3f})  {base / medians[name]:5.2f}x vs crop-by-crop   "
                      f"peak memory +{_mib(peaks[name])}   max |diff| {diffs[name]:.2e}")
            batched = [n for n in methods if n.startswith("ours, batched")][0]
            print(f"batched slide vs crop-by-crop: {base / medians[batched]:.2f}x; vs ours batch 1: "
                  f"{medians['ours, batch 1'] / medians[batched]:.2f}x")
            results.update(crop_size=list(crop), stride=list(stride), windows_per_image=n_windows,
                           crop_batch=crop_batch, times_s=times, median_s=medians, peak_bytes=peaks,
                           max_abs_diff=diffs, warmup_s=warm_s,
                           speedup_batched_vs_crop_by_crop=base / medians[batched],
                           speedup_batched_vs_batch1=medians["ours, batch 1"] / medians[batched])
            median = medians[batched]
    if ref_before is not None:
        unit = (ref_before + ref_after) / 2
        results.update(ref_before_s=ref_before, ref_after_s=ref_after, normalized_cost=(
            {k: v / unit for k, v in results["median_s"].items()} if isinstance(results["median_s"], dict)
            else results["median_s"] / unit))
        print(f"reference matmul: before {ref_before:.3f} s, after {ref_after:.3f} s; normalized cost "
              f"{median / unit:.1f} (median s / mean ref)" + (" of the batched slide" if args.mode == "slide" else
                                                              " per forward"))
    if compile_s is not None:
        results["compile_and_warmup_s"] = compile_s
        print(f"compile + warm-up: {compile_s:.1f} s")
    results["load_avg_end"] = os.getloadavg()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
