#!/usr/bin/env python
"""Benchmark multi-scale deformable attention: compiled kernel vs the pure-PyTorch fallback.

Both backends run in one process on the same inputs, alternating call by call (compiled, fallback, compiled,
...), so a busy or drifting machine slows both alike and the ratios stay comparable. Each call is timed by the
wall clock and by this process's CPU time; on a shared machine the CPU-time ratio is the steadier one (it does not
count the time the process waits for a core), the wall-clock ratio is the one a user sees.

Presets (batch 2, 8 heads x 32 channels, as UN-EPT's feat_dim 256 / 8 heads):

* ``pyramid512-encoder`` / ``pyramid512-decoder``: three levels at strides 8/16/32 of a 512x512 input, 4 points;
  the encoder has one query per token (64^2 + 32^2 + 16^2 = 5376), the decoder one per stride-8 cell (64^2).
* ``unept-*``: UN-EPT's released configs (480x480 crops, 3 levels, 16 points; ResNet-50 levels are all at
  stride 8 (60x60), DeiT levels all at stride 16 (30x30); the decoder has ``num_queries`` = (480/8)^2 = 3600
  queries, the encoder one query per token).

Reference points are in raster order as in the model (each encoder token's own position; the decoder's query
grid), plus offsets of a few pixels.

    python scripts/benchmark_msda.py                       # CPU, all presets, 2 threads
    python scripts/benchmark_msda.py --presets pyramid512-encoder --threads 8
    python scripts/benchmark_msda.py --device cuda --repeats 50
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from hf_seg.kernels import build, ms_deform_attn

# name: (levels [(H, W)], queries, heads, dim_per_head, points)
PYRAMID512 = [(64, 64), (32, 32), (16, 16)]
PRESETS = {
    "pyramid512-encoder": (PYRAMID512, sum(h * w for h, w in PYRAMID512), 8, 32, 4),
    "pyramid512-decoder": (PYRAMID512, 64 * 64, 8, 32, 4),
    "unept-res50-encoder": ([(60, 60)] * 3, 3 * 3600, 8, 32, 16),
    "unept-res50-decoder": ([(60, 60)] * 3, 3600, 8, 32, 16),
    "unept-deit-encoder": ([(30, 30)] * 3, 3 * 900, 8, 32, 16),
    "unept-deit-decoder": ([(30, 30)] * 3, 3600, 8, 32, 16),
}
BACKENDS = ("compiled", "pytorch")


def _reference_points(grids, queries):
    """Pixel centres of the grids [(H, W), ...], normalised to [0, 1], in raster order; the first ``queries``."""
    pts = []
    for h, w in grids:
        y, x = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        pts.append(torch.stack([x, y], -1).reshape(-1, 2))
    return torch.cat(pts)[:queries]


def make_inputs(levels, queries, heads, dim, points, batch, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = len(levels)
    S = sum(h * w for h, w in levels)
    value = torch.randn(batch, S, heads, dim, generator=g)
    grids = levels if queries == S else [(math.isqrt(queries - 1) + 1,) * 2]
    ref = _reference_points(grids, queries)
    loc = ref[None, :, None, None, None, :] + 0.03 * torch.randn(batch, queries, heads, L, points, 2, generator=g)
    attn = torch.randn(batch, queries, heads, L * points, generator=g).softmax(-1).view(batch, queries, heads, L, points)
    shapes = torch.tensor(levels, dtype=torch.long)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    cast = dict(dtype=dtype, device=device)
    return value.to(**cast), shapes.to(device), starts.to(device), loc.to(**cast), attn.to(**cast)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns, device, warmup, repeats):
    """{name: (wall seconds, cpu seconds) lists}, calling the functions in turn each round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    out = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            out[name][0].append(time.perf_counter() - w0)
            out[name][1].append(time.process_time() - c0)
    return out


def bench_preset(name, args, device, dtype):
    levels, queries, heads, dim, points = PRESETS[name]
    value, shapes, starts, loc, attn = make_inputs(levels, queries, heads, dim, points, args.batch, dtype, device)
    grad = torch.randn(args.batch, queries, heads * dim, dtype=dtype, device=device)
    leaves = {b: [t.detach().clone().requires_grad_(True) for t in (value, loc, attn)] for b in BACKENDS}

    def fwd(backend):
        with torch.no_grad():
            return ms_deform_attn(value, shapes, starts, loc, attn, backend=backend)

    def fwd_bwd(backend):
        v, lc, a = leaves[backend]
        for t in (v, lc, a):
            t.grad = None
        ms_deform_attn(v, shapes, starts, lc, a, backend=backend).backward(grad)

    forward = time_interleaved({b: (lambda b=b: fwd(b)) for b in BACKENDS}, device, args.warmup, args.repeats)
    training = time_interleaved({b: (lambda b=b: fwd_bwd(b)) for b in BACKENDS}, device, args.warmup, args.repeats)
    with torch.no_grad():
        a, b = fwd("compiled").double(), fwd("pytorch").double()
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()

    med = lambda xs: statistics.median(xs) * 1e3  # noqa: E731
    desc = f"levels={levels[0]}x{len(levels)}" if len(set(levels)) == 1 else f"levels={levels}"
    print(f"\n[{name}] B={args.batch} {desc} Q={queries} heads={heads} dim={dim} points={points} "
          f"dtype={str(dtype).replace('torch.', '')}")
    print(f"  {'':10s} {'forward wall':>13s} {'cpu':>10s} {'fwd+bwd wall':>14s} {'cpu':>10s}   (median ms)")
    for backend in BACKENDS:
        (fw, fc), (tw, tc) = forward[backend], training[backend]
        print(f"  {backend:10s} {med(fw):13.1f} {med(fc):10.1f} {med(tw):14.1f} {med(tc):10.1f}")
    ratios = {}
    for label, res in (("forward", forward), ("fwd+bwd", training)):
        ratios[label] = tuple(med(res["pytorch"][k]) / med(res["compiled"][k]) for k in (0, 1))
    print(f"  {'speed-up':10s} {ratios['forward'][0]:12.2f}x {ratios['forward'][1]:9.2f}x "
          f"{ratios['fwd+bwd'][0]:13.2f}x {ratios['fwd+bwd'][1]:9.2f}x   (fallback time / compiled time)")
    print(f"  max rel diff compiled vs fallback (forward): {err:.2e}")
    return name, ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {list(PRESETS)}")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--warmup", type=int, default=None, help="rounds; default: 1 on CPU, 5 on CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="rounds; default: 5 on CPU, 20 on CUDA")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for CPU runs (default 2)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.warmup is None:
        args.warmup = 5 if device.type == "cuda" else 1
    if args.repeats is None:
        args.repeats = 20 if device.type == "cuda" else 5
    if device.type == "cpu":
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
    print(f"torch {torch.__version__}, device {device} ({info}); median of {args.repeats} interleaved rounds "
          f"after {args.warmup} warm-up")
    load_before = os.getloadavg()
    summary = [bench_preset(name, args, device, dtype) for name in names]
    load_after = os.getloadavg()
    print("\nsummary (fallback time / compiled time; wall clock, CPU time):")
    for name, r in summary:
        print(f"  {name:20s} forward {r['forward'][0]:6.2f}x {r['forward'][1]:6.2f}x   "
              f"fwd+bwd {r['fwd+bwd'][0]:6.2f}x {r['fwd+bwd'][1]:6.2f}x")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
          f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
