#!/usr/bin/env python
"""Benchmark multi-scale deformable attention: compiled kernel vs the pure-PyTorch fallback.

Both backends run in the same process on the same inputs, so the ratios are directly comparable.
Sizes follow UN-EPT's released configs (``zoo.json``: 480x480 crops, feat_dim 256 -> 8 heads x 32 channels,
3 levels, 16 sampling points; ResNet-50 levels are all at stride 8 (60x60), DeiT levels all at stride 16
(30x30); the decoder has (480/8)^2 = 3600 queries, the encoder one query per token), plus the generic
pyramid used in the issue (512x512 input, strides 8/16/32, 4 points).

    python scripts/benchmark_msda.py                       # CPU, all presets
    python scripts/benchmark_msda.py --device cuda --repeats 50
    python scripts/benchmark_msda.py --presets pyramid512 --threads 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_seg.kernels import build, ms_deform_attn

# name: (levels [(H, W)], queries, heads, dim_per_head, points)
PRESETS = {
    "pyramid512": ([(64, 64), (32, 32), (16, 16)], 64 * 64, 8, 32, 4),
    "unept-res50-decoder": ([(60, 60)] * 3, 3600, 8, 32, 16),
    "unept-res50-encoder": ([(60, 60)] * 3, 3 * 3600, 8, 32, 16),
    "unept-deit-decoder": ([(30, 30)] * 3, 3600, 8, 32, 16),
    "unept-deit-encoder": ([(30, 30)] * 3, 3 * 900, 8, 32, 16),
}


def make_inputs(levels, queries, heads, dim, points, batch, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = len(levels)
    S = sum(h * w for h, w in levels)
    value = torch.randn(batch, S, heads, dim, generator=g)
    # Reference points on the query grid plus offsets of a few pixels, as in the model.
    loc = torch.rand(batch, queries, 1, 1, 1, 2, generator=g) + 0.03 * torch.randn(
        batch, queries, heads, L, points, 2, generator=g
    )
    attn = torch.randn(batch, queries, heads, L * points, generator=g).softmax(-1).view(batch, queries, heads, L, points)
    shapes = torch.tensor(levels, dtype=torch.long)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    cast = dict(dtype=dtype, device=device)
    return value.to(**cast), shapes.to(device), starts.to(device), loc.to(**cast), attn.to(**cast)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


TIMER = time.perf_counter


def time_call(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = TIMER()
        fn()
        _sync(device)
        times.append(TIMER() - t0)
    return statistics.median(times) * 1e3


def bench_preset(name, args, device, dtype):
    levels, queries, heads, dim, points = PRESETS[name]
    value, shapes, starts, loc, attn = make_inputs(levels, queries, heads, dim, points, args.batch, dtype, device)
    grad = torch.randn(args.batch, queries, heads * dim, dtype=dtype, device=device)
    results = {}
    for backend in ("compiled", "pytorch"):

        def fwd(backend=backend):
            with torch.no_grad():
                return ms_deform_attn(value, shapes, starts, loc, attn, backend=backend)

        leaves = [t.detach().clone().requires_grad_(True) for t in (value, loc, attn)]

        def fwd_bwd(backend=backend, leaves=leaves):
            for t in leaves:
                t.grad = None
            out = ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2], backend=backend)
            out.backward(grad)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_f = time_call(fwd, device, args.warmup, args.repeats)
        t_fb = time_call(fwd_bwd, device, args.warmup, args.repeats)
        mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        results[backend] = (t_f, t_fb, mem)
    # Agreement check on the benchmark inputs (forward).
    with torch.no_grad():
        a = ms_deform_attn(value, shapes, starts, loc, attn, backend="compiled").float()
        b = ms_deform_attn(value, shapes, starts, loc, attn, backend="pytorch").float()
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
    (kf, kfb, kmem), (pf, pfb, pmem) = results["compiled"], results["pytorch"]
    desc = f"B={args.batch} levels={levels[0]}x{len(levels)}" if len(set(levels)) == 1 else f"B={args.batch} levels={levels}"
    print(f"\n[{name}] {desc} Q={queries} heads={heads} dim={dim} points={points} dtype={str(dtype).replace('torch.', '')}")
    print(f"  {'':10s} {'forward':>12s} {'fwd+bwd':>12s}" + ("   peak MiB" if device.type == "cuda" else ""))
    for label, (tf, tfb, mem) in (("compiled", results["compiled"]), ("pytorch", results["pytorch"])):
        extra = f"   {mem:9.0f}" if device.type == "cuda" else ""
        print(f"  {label:10s} {tf:10.2f}ms {tfb:10.2f}ms{extra}")
    print(f"  {'speed-up':10s} {pf / kf:11.2f}x {pfb / kfb:11.2f}x   (pytorch time / compiled time)")
    print(f"  max rel diff compiled vs pytorch (forward): {err:.2e}")
    return name, pf / kf, pfb / kfb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {list(PRESETS)}")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--warmup", type=int, default=None, help="default: 1 on CPU, 5 on CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 20 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU runs")
    parser.add_argument(
        "--timer",
        choices=["wall", "process"],
        default="wall",
        help="process: CPU time of this process (summed over threads), robust on a busy shared CPU machine",
    )
    args = parser.parse_args(argv)
    global TIMER
    TIMER = time.process_time if args.timer == "process" else time.perf_counter
    device = torch.device(args.device)
    if args.warmup is None:
        args.warmup = 5 if device.type == "cuda" else 1
    if args.repeats is None:
        args.repeats = 20 if device.type == "cuda" else 3
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choose from {list(PRESETS)}")

    t0 = time.perf_counter()
    build_dir = build(cuda=device.type == "cuda" or None)
    print(f"kernel ready in {time.perf_counter() - t0:.1f}s ({build_dir})")
    info = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__}, device {device} ({info}), {args.timer} time, "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )
    summary = [bench_preset(name, args, device, dtype) for name in names]
    print("\nsummary (pytorch time / compiled time):")
    for name, rf, rfb in summary:
        print(f"  {name:22s} forward {rf:6.2f}x   fwd+bwd {rfb:6.2f}x")


if __name__ == "__main__":
    main()
