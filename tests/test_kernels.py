"""Multi-scale deformable attention: compiled kernels vs the pure-PyTorch oracle and the UN-EPT fixtures.

The CPU extension is built once per session (cached per user, ``HF_SEG_KERNEL_CACHE`` overrides the cache
root). CUDA cases run when ``torch.cuda.is_available()``; without a GPU the CUDA source is still compiled
with ``nvcc`` (compile-only test) when nvcc is installed. ``HF_SEG_FIXTURES`` adds the ``unept/msda_core*``
cases of a full fixture set to the bundled one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hf_seg.kernels as K
from hf_seg.kernels import _loader, msda

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])


# ----------------------------------------------------------------------------------------------- helpers
def _msda_cases() -> list:
    """Bundled ``unept/msda_core*`` cases plus those of ``$HF_SEG_FIXTURES`` (same name: the latter wins)."""
    cases = {}
    bases = [TESTS / "fixtures"]
    if os.environ.get("HF_SEG_FIXTURES"):
        bases.append(Path(os.environ["HF_SEG_FIXTURES"]))
    for base in bases:
        for case in sorted((base / "unept").glob("msda_core*")):
            if (case / "input.safetensors").is_file() and (case / "expected.safetensors").is_file():
                cases[case.name] = case
    return [cases[name] for name in sorted(cases)]


MSDA_CASES = _msda_cases()


def assert_close(actual, expected, name, rel=1e-4):
    """Max abs diff relative to the expected tensor's largest magnitude."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.detach().double().cpu() - expected.detach().double().cpu()).abs().max().item()
    scale = max(expected.detach().double().abs().max().item(), 1e-12)
    assert diff <= rel * scale, f"{name}: max abs diff {diff:.3g} > {rel:g} x scale {scale:.3g}"


def make_inputs(shapes, B=2, M=3, D=5, Q=7, P=3, lo=-0.2, hi=1.2, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    L = len(shapes)
    S = sum(h * w for h, w in shapes)
    value = torch.randn(B, S, M, D, generator=g, dtype=torch.float64)
    loc = lo + (hi - lo) * torch.rand(B, Q, M, L, P, 2, generator=g, dtype=torch.float64)
    attn = torch.rand(B, Q, M, L, P, generator=g, dtype=torch.float64)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    ss = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat([ss.new_zeros(1), ss.prod(1).cumsum(0)[:-1]])
    cast = dict(dtype=dtype, device=device)
    return value.to(**cast), ss.to(device), starts.to(device), loc.to(**cast), attn.to(**cast)


def run(value, shapes, starts, loc, attn, backend, grad_output=None):
    """Output and the gradients w.r.t. value, sampling_locations, attention_weights."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, loc, attn)]
    out = K.ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2], backend=backend)
    if grad_output is None:
        grad_output = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    out.backward(grad_output)
    return out.detach(), *(t.grad for t in leaves)


@pytest.fixture(scope="session")
def kernel():
    """Build (or reuse) the compiled kernel once per session; skip only where no build can be attempted."""
    if K.kernels_disabled():
        pytest.skip(f"{K.ENV_DISABLE} is set")
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    K.build()  # raises KernelUnavailableError (with the compiler output) on a real build failure
    return True


@pytest.fixture
def isolated_loader(monkeypatch, tmp_path):
    """Let a test break or disable the loader without affecting the other tests."""
    saved = (dict(_loader._namespaces), dict(_loader._errors), _loader._warned)
    monkeypatch.setenv(K.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(K.ENV_DISABLE, raising=False)
    _loader._reset_state()
    yield tmp_path
    _loader._namespaces.clear()
    _loader._namespaces.update(saved[0])
    _loader._errors.clear()
    _loader._errors.update(saved[1])
    _loader._warned = saved[2]


# ---------------------------------------------------------------------------------------- fixture parity
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["pytorch", "compiled"])
@pytest.mark.parametrize("precision", ["fp32", "fp64"])
@pytest.mark.parametrize("case", MSDA_CASES, ids=lambda c: c.name)
def test_fixture_core(case, precision, backend, device, request):
    if backend == "compiled":
        request.getfixturevalue("kernel")
    inp = load_file(case / "input.safetensors")
    exp = load_file(case / "expected.safetensors")
    meta = json.loads((case / "meta.json").read_text())
    dtype = torch.float64 if precision == "fp64" else torch.float32
    suffix = "_fp64" if precision == "fp64" else ""
    if "output" + suffix not in exp:
        pytest.skip(f"{case.name} has no {precision} reference")
    rel = 1e-9 if precision == "fp64" else 1e-4
    f = lambda k: inp[k].to(device=device, dtype=dtype)  # noqa: E731
    value, loc, attn, grad = f("value"), f("sampling_locations"), f("attention_weights"), f("grad_output")
    shapes, starts = inp["spatial_shapes"].to(device), inp["level_start_index"].to(device)
    # Shapes come from the tensors; meta.json must agree with them.
    assert value.shape[1] == int((shapes[:, 0] * shapes[:, 1]).sum())
    if "shapes" in meta and "spatial_shapes" in meta["shapes"]:
        assert meta["shapes"]["spatial_shapes"] == shapes.tolist()
    out, g_value, g_loc, g_attn = run(value, shapes, starts, loc, attn, backend, grad_output=grad)
    assert_close(out, exp["output" + suffix], "output", rel)
    assert_close(g_value, exp["grad_value" + suffix], "grad_value", rel)
    assert_close(g_loc, exp["grad_sampling_locations" + suffix], "grad_sampling_locations", rel)
    assert_close(g_attn, exp["grad_attention_weights" + suffix], "grad_attention_weights", rel)


@pytest.mark.parametrize("case", MSDA_CASES, ids=lambda c: c.name)
def test_fixture_analytic_fallback_backward(case):
    """The autograd-free fallback backward (used inside the custom op without a kernel) matches the fixture."""
    inp = load_file(case / "input.safetensors")
    exp = load_file(case / "expected.safetensors")
    grads = msda._pytorch_backward(
        inp["grad_output"], inp["value"], inp["spatial_shapes"], inp["sampling_locations"], inp["attention_weights"]
    )
    for name, g in zip(("grad_value", "grad_sampling_locations", "grad_attention_weights"), grads):
        assert_close(g, exp[name], name)


def test_bundled_fixture_present():
    assert (TESTS / "fixtures" / "unept" / "msda_core" / "expected.safetensors").is_file()
    assert MSDA_CASES, "no msda_core fixture found"


# ------------------------------------------------------------------------------------- kernel vs fallback
RANDOM_CONFIGS = [
    # shapes, B, M, D, Q, P, lo, hi
    ([(7, 12), (4, 6), (2, 3), (1, 2)], 2, 4, 8, 20, 3, -0.1, 1.1),  # the fixture's layout
    ([(9, 5), (5, 3), (3, 2)], 1, 1, 3, 11, 4, -0.5, 1.5),  # B*M = 1: backward query chunks
    ([(16, 16), (8, 8), (4, 4)], 2, 8, 32, 33, 4, 0.0, 1.0),  # UN-EPT-like heads/dim
    ([(1, 1)], 3, 2, 1, 4, 1, -2.0, 3.0),  # 1x1 level, D = 1, most points far outside
    ([(6, 10), (3, 5)], 2, 2, 40, 9, 2, -0.3, 1.3),  # D > 32 (several channel passes on CUDA)
    ([(13, 4), (7, 2), (4, 1)], 2, 3, 17, 6, 5, -0.05, 1.05),  # odd D, tall levels
    ([(5, 9), (3, 5)], 1, 2, 16, 10, 3, -0.2, 1.2),  # D = 16 and D = 64: the CPU kernel's fixed-width loops
    ([(4, 7), (2, 4)], 2, 2, 64, 5, 2, -0.2, 1.2),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("cfg", RANDOM_CONFIGS, ids=[f"cfg{i}" for i in range(len(RANDOM_CONFIGS))])
def test_kernel_matches_fallback(cfg, dtype, device, kernel):
    shapes, B, M, D, Q, P, lo, hi = cfg
    inputs = make_inputs(shapes, B=B, M=M, D=D, Q=Q, P=P, lo=lo, hi=hi, dtype=dtype, device=device, seed=len(shapes))
    rel = 1e-4 if dtype == torch.float32 else 1e-10
    ref = run(*inputs, backend="pytorch")
    got = run(*inputs, backend="compiled")
    for name, a, b in zip(("output", "grad_value", "grad_loc", "grad_attn"), got, ref):
        assert_close(a, b, name, rel)


@pytest.mark.parametrize("threads", [1, 3, 4])
@pytest.mark.parametrize("B,M", [(1, 3), (2, 4), (3, 2)])
def test_cpu_backward_work_split(B, M, threads, kernel):
    """The CPU backward cuts (batch, head group, query chunk) by the thread count: every cut gives the same sums."""
    inputs = make_inputs([(6, 5), (3, 3)], B=B, M=M, D=8, Q=9, P=2, dtype=torch.float64, seed=B * M)
    ref = run(*inputs, backend="pytorch")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = run(*inputs, backend="compiled")
    finally:
        torch.set_num_threads(saved)
    for name, a, b in zip(("output", "grad_value", "grad_loc", "grad_attn"), got, ref):
        assert_close(a, b, f"{threads} threads {name}", 1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device, kernel):
    shapes = [(5, 7), (3, 4)]
    value, ss, starts, loc, attn = make_inputs(shapes, B=2, M=3, D=6, Q=8, P=2, device=device)
    # Same values, strided storage.
    value_nc = value.transpose(2, 3).contiguous().transpose(2, 3)
    loc_nc = torch.stack([loc, torch.zeros_like(loc)], dim=-1)[..., 0]
    attn_nc = attn.permute(1, 0, 2, 3, 4).contiguous().permute(1, 0, 2, 3, 4)
    ss_nc = torch.stack([ss, ss], dim=0)[0].t().contiguous().t()
    assert not (value_nc.is_contiguous() or loc_nc.is_contiguous() or attn_nc.is_contiguous() or ss_nc.is_contiguous())
    out_ref = torch.randn(2, 8, 18, dtype=value.dtype, device=device)
    grad_nc = out_ref.transpose(0, 1).contiguous().transpose(0, 1)
    ref = run(value, ss, starts, loc, attn, "pytorch", grad_output=out_ref)
    for backend in ("compiled", "pytorch"):
        got = run(value_nc, ss_nc, starts, loc_nc, attn_nc, backend, grad_output=grad_nc)
        for name, a, b in zip(("output", "grad_value", "grad_loc", "grad_attn"), got, ref):
            assert_close(a, b, f"{backend} {name}")


def test_list_shapes_and_missing_level_start_index(kernel):
    shapes = [(4, 6), (2, 3)]
    value, ss, starts, loc, attn = make_inputs(shapes)
    ref = K.ms_deform_attn(value, ss, starts, loc, attn, backend="pytorch")
    for backend in ("compiled", "pytorch", "auto"):
        assert_close(K.ms_deform_attn(value, shapes, None, loc, attn, backend=backend), ref, backend)
        assert_close(K.ms_deform_attn(value, shapes, [0, 24], loc, attn, backend=backend), ref, backend)


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_empty_queries(backend, request):
    if backend == "compiled":
        request.getfixturevalue("kernel")
    value, ss, starts, loc, attn = make_inputs([(3, 3)], Q=1)
    out = K.ms_deform_attn(value, ss, starts, loc[:, :0], attn[:, :0], backend=backend)
    assert out.shape == (2, 0, 15)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_reduced_precision(dtype, kernel):
    value, ss, starts, loc, attn = make_inputs([(16, 16), (8, 8)], B=2, M=8, D=32, Q=64, P=4, device="cuda")
    ref = run(value, ss, starts, loc, attn, "pytorch")
    got = run(value.to(dtype), ss, starts, loc.to(dtype), attn.to(dtype), "compiled")
    tol = 2e-2 if dtype == torch.float16 else 6e-2
    for name, a, b in zip(("output", "grad_value", "grad_loc", "grad_attn"), got, ref):
        assert a.dtype == dtype
        assert_close(a.float(), b, name, tol)


# ------------------------------------------------------------------------------------------------ gradcheck
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_gradcheck_float64(backend, device, request):
    if backend == "compiled":
        request.getfixturevalue("kernel")
    value, ss, starts, loc, attn = make_inputs([(3, 4), (2, 2)], B=1, M=2, D=3, Q=3, P=2, dtype=torch.float64, device=device)
    args = [t.clone().requires_grad_(True) for t in (value, loc, attn)]

    def fn(v, l, a):
        return K.ms_deform_attn(v, ss, starts, l, a, backend=backend)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_opcheck_custom_op(kernel):
    """Schema, fake tensor, autograd registration and AOT dispatch of torch.ops.hf_seg.ms_deform_attn."""
    value, ss, starts, loc, attn = make_inputs([(4, 5), (2, 3)], B=2, M=2, D=4, Q=3, P=2)
    args = (value.requires_grad_(), ss, starts, loc.requires_grad_(), attn.requires_grad_())
    torch.library.opcheck(torch.ops.hf_seg.ms_deform_attn.default, args)


def test_raw_kernel_checks_levels(kernel):
    """The C++ side refuses an inconsistent level table instead of reading out of bounds."""
    value, ss, starts, loc, attn = make_inputs([(4, 5), (2, 3)])
    ops = _loader.get_ops("cpu")
    with pytest.raises(RuntimeError, match="sum of H\\*W"):
        ops.forward(value[:, :-1].contiguous(), ss, starts, loc, attn)
    with pytest.raises(RuntimeError, match="level_start_index"):
        ops.forward(value, ss, starts + 1, loc, attn)


# -------------------------------------------------------------------------------------------- validation
def _bad_inputs():
    value, ss, starts, loc, attn = make_inputs([(4, 5), (2, 3)], B=2, M=3, D=4, Q=5, P=2)
    yield "rank", (value[0], ss, starts, loc, attn), "4-D"
    yield "loc_rank", (value, ss, starts, loc[..., 0], attn), "sampling_locations must be 6-D"
    yield "attn_rank", (value, ss, starts, loc, attn[..., 0]), "attention_weights must be 5-D"
    yield "heads", (value[:, :, :2], ss, starts, loc, attn), "heads"
    yield "batch", (value[:1], ss, starts, loc, attn), "batch"
    yield "attn_shape", (value, ss, starts, loc, attn[:, :4]), "attention_weights"
    yield "sum_hw", (value[:, :-2], ss, starts, loc, attn), "sum of H\\*W"
    yield "sum_hw_list", (value[:, :-2], [(4, 5), (2, 3)], None, loc, attn), "sum of H\\*W"
    yield "levels", (value, ss[:1], starts[:1], loc, attn), "spatial_shapes"
    yield "shapes_dtype", (value, ss.float(), starts, loc, attn), "integer"
    yield "start_index", (value, ss, starts + 1, loc, attn), "level_start_index"
    yield "start_len", (value, ss, starts[:1], loc, attn), "level_start_index"
    yield "dtype", (value, ss, starts, loc.double(), attn), "same dtype"
    yield "int_value", (value.long(), ss, starts, loc, attn), "floating"


@pytest.mark.parametrize("backend", ["auto", "pytorch", "compiled"])
@pytest.mark.parametrize("name,args,match", list(_bad_inputs()), ids=[c[0] for c in _bad_inputs()])
def test_validation_errors(name, args, match, backend):
    with pytest.raises(ValueError, match=match):
        K.ms_deform_attn(*args, backend=backend)


def test_unknown_backend():
    value, ss, starts, loc, attn = make_inputs([(2, 2)])
    with pytest.raises(ValueError, match="backend"):
        K.ms_deform_attn(value, ss, starts, loc, attn, backend="triton")


# --------------------------------------------------------------------------- loader: fallback, env, cache
def test_fallback_when_build_fails(isolated_loader, monkeypatch):
    broken = isolated_loader / "broken_src"
    shutil.copytree(_loader.SOURCE_DIR, broken)
    (broken / "msda_cpu.cpp").write_text('#error "deliberately broken for the fallback test"\n')
    monkeypatch.setattr(_loader, "SOURCE_DIR", broken)
    value, ss, starts, loc, attn = make_inputs([(5, 6), (3, 3)])
    ref = K.ms_deform_attn(value, ss, starts, loc, attn, backend="pytorch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1 = K.ms_deform_attn(value, ss, starts, loc, attn)  # tries to build, fails, warns
        out2 = K.ms_deform_attn(value, ss, starts, loc, attn)  # remembers the failure
        v = value.clone().requires_grad_()
        K.ms_deform_attn(v, ss, starts, loc, attn).sum().backward()
    ours = [w for w in caught if issubclass(w.category, K.KernelFallbackWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "deliberately broken" in str(ours[0].message) or "Error building" in str(ours[0].message)
    assert not [w for w in caught if "hf_seg" in str(w.message) and w not in ours]
    assert_close(out1, ref, "output")
    assert torch.equal(out1, out2)
    assert v.grad is not None and torch.isfinite(v.grad).all()
    with pytest.raises(K.KernelUnavailableError, match="build failed"):
        K.ms_deform_attn(value, ss, starts, loc, attn, backend="compiled")
    with pytest.raises(K.KernelUnavailableError):
        K.build()


def test_disable_env_forces_fallback(isolated_loader, monkeypatch):
    monkeypatch.setenv(K.ENV_DISABLE, "1")
    assert K.kernels_disabled()
    assert _loader.get_ops("cpu") is None
    value, ss, starts, loc, attn = make_inputs([(4, 4), (2, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no build attempt, no warning
        out = K.ms_deform_attn(value, ss, starts, loc, attn)
    assert torch.equal(out, K.ms_deform_attn(value, ss, starts, loc, attn, backend="pytorch"))
    with pytest.raises(K.KernelUnavailableError, match=K.ENV_DISABLE):
        K.ms_deform_attn(value, ss, starts, loc, attn, backend="compiled")
    assert not (isolated_loader / "cache").exists()
    for off in ("0", "", "false"):
        monkeypatch.setenv(K.ENV_DISABLE, off)
        assert not K.kernels_disabled()


def test_custom_op_without_kernel_uses_fallback(isolated_loader, monkeypatch):
    """An exported/traced program calling the custom op still runs (forward and backward) without the kernel."""
    monkeypatch.setenv(K.ENV_DISABLE, "1")
    value, ss, starts, loc, attn = make_inputs([(4, 5), (3, 2)], dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]
    out = torch.ops.hf_seg.ms_deform_attn(leaves[0], ss, starts, leaves[1], leaves[2])
    out.backward(torch.ones_like(out))
    ref = run(value, ss, starts, loc, attn, "pytorch", grad_output=torch.ones_like(out))
    for name, a, b in zip(("output", "grad_value", "grad_loc", "grad_attn"), (out, *(t.grad for t in leaves)), ref):
        assert_close(a, b, name, 1e-10)


def test_compiled_unavailable_for_other_devices():
    value, ss, starts, loc, attn = make_inputs([(2, 3)], device="meta")
    with pytest.raises(K.KernelUnavailableError, match="meta"):
        K.ms_deform_attn(value, ss, starts, loc, attn, backend="compiled")


def test_cache_dir_and_key(isolated_loader, monkeypatch):
    assert K.cache_dir() == isolated_loader / "cache"
    monkeypatch.delenv(K.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated_loader / "xdg"))
    assert K.cache_dir() == isolated_loader / "xdg" / "hf_seg" / "kernels"
    key = _loader.build_key(False)
    assert key == _loader.build_key(False)
    assert key != _loader.build_key(True)
    copy = isolated_loader / "src"
    shutil.copytree(_loader.SOURCE_DIR, copy)
    monkeypatch.setattr(_loader, "SOURCE_DIR", copy)
    assert _loader.build_key(False) == key
    with open(copy / "msda.h", "a") as fh:
        fh.write("\n// edited\n")
    assert _loader.build_key(False) != key
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    namespace, directory = _loader._names(False)
    assert "0.0.0-other" in directory.name and namespace.startswith("hf_seg_msda_cpu_")


def test_import_does_not_build(tmp_path):
    env = dict(os.environ, **{K.ENV_CACHE: str(tmp_path / "cache")})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = (
        "import hf_seg.kernels as k; "
        "assert not k._loader._namespaces and not k._loader._errors"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert not (tmp_path / "cache").exists()


def test_cached_build_reloads(kernel):
    """A second build() in the same process is a no-op returning the same cache folder with its marker."""
    first = K.build()
    assert (first / "BUILD_OK").is_file()
    assert K.build() == first
    assert K.is_available("cpu")


def _damaged_cache_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of this session's CPU build in a fresh cache root, its library truncated to half (a crash or a full
    disk while it was copied); returns (cache root, library)."""
    built = K.build(cuda=False)
    root = tmp_path / "cache"
    shutil.copytree(built, root / built.name)
    (library,) = (root / built.name).glob("*.so")
    data = library.read_bytes()
    library.write_bytes(data[: len(data) // 2])
    return root, library


def _run_in_subprocess(code: str, cache: Path, **env) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{K.ENV_CACHE: str(cache)}, **env)
    env.pop(K.ENV_DISABLE, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)


def test_truncated_cached_library_is_rebuilt_not_loaded(kernel, tmp_path):
    """A truncated ``.so`` with its marker used to be loaded and kill the process with SIGBUS (exit 135); its
    checksum no longer matches the marker's, so it is rebuilt (here: relinked from the cached objects)."""
    if sys.platform == "win32":
        pytest.skip("POSIX shared libraries")
    cache, library = _damaged_cache_copy(tmp_path)
    marker = library.parent / "BUILD_OK"
    code = ("import torch, hf_seg.kernels as k; k.build(cuda=False); "
            "from hf_seg.kernels import _loader; print('ops', _loader.get_ops('cpu') is not None)")
    result = _run_in_subprocess(code, cache)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "ops True" in result.stdout and "does not match its build record" in result.stderr
    facts = dict(line.split(" ", 1) for line in marker.read_text().splitlines() if " " in line)
    assert int(facts["size"]) == library.stat().st_size and facts["sha256"] == _loader._sha256(library)


def test_truncated_cached_library_falls_back_when_it_cannot_be_rebuilt(kernel, tmp_path):
    """No working compiler: the damaged library is still not loaded; the pure-PyTorch path runs, with a warning."""
    if sys.platform == "win32":
        pytest.skip("POSIX shared libraries")
    cache, _ = _damaged_cache_copy(tmp_path)
    code = ("import warnings, torch, hf_seg.kernels as k\n"
            "from hf_seg.kernels import msda\n"
            "v = torch.randn(1, 12, 2, 4); ss = torch.tensor([[3, 4]]); st = torch.tensor([0])\n"
            "loc = torch.rand(1, 5, 2, 1, 2, 2); attn = torch.rand(1, 5, 2, 1, 2)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    out = k.ms_deform_attn(v, ss, st, loc, attn)\n"
            "ref = k.ms_deform_attn(v, ss, st, loc, attn, backend='pytorch')\n"
            "assert torch.allclose(out, ref)\n"
            "print('fallback', any(issubclass(w.category, k.KernelFallbackWarning) for w in caught))\n")
    result = _run_in_subprocess(code, cache, CXX="/nonexistent/c++")
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "fallback True" in result.stdout


# --------------------------------------------------------------------------------- torch.compile / export
class _TinyMSDA(torch.nn.Module):
    def __init__(self, shapes, backend):
        super().__init__()
        self.shapes = shapes
        self.backend = backend

    def forward(self, value, loc, attn):
        out = K.ms_deform_attn(value, self.shapes, None, loc, attn, backend=self.backend)
        return out.relu() * 2


class _FeatureMSDA(torch.nn.Module):
    """Level shapes taken from the feature maps (symbolic under dynamic shapes), as a model does."""

    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def forward(self, f1, f2, loc, attn):
        shapes = [tuple(f.shape[-2:]) for f in (f1, f2)]
        B, C = f1.shape[:2]
        value = torch.cat([f.flatten(2) for f in (f1, f2)], 2).transpose(1, 2).reshape(B, -1, 2, C // 2)
        return K.ms_deform_attn(value, shapes, None, loc, attn, backend=self.backend) * 2


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_torch_compile_smoke(backend, request):
    """fullgraph + dynamic shapes, forward and backward, two input sizes (no graph break, no .item())."""
    if backend == "compiled":
        request.getfixturevalue("kernel")
    torch._dynamo.reset()
    model = _FeatureMSDA(backend)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    g = torch.Generator().manual_seed(0)
    for h, w in [(8, 10), (6, 14)]:
        inputs = (
            torch.randn(2, 8, h, w, generator=g),
            torch.randn(2, 8, h // 2, w // 2, generator=g),
            torch.rand(2, 5, 2, 2, 3, 2, generator=g) * 1.2 - 0.1,
            torch.rand(2, 5, 2, 2, 3, generator=g),
        )
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = compiled(*leaves)
        out.square().sum().backward()
        ref_leaves = [t.clone().requires_grad_() for t in inputs]
        ref = model(*ref_leaves)
        ref.square().sum().backward()
        assert_close(out, ref, "output")
        for a, b in zip(leaves, ref_leaves):
            assert_close(a.grad, b.grad, "grad")


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_torch_export(backend, request):
    if backend == "compiled":
        request.getfixturevalue("kernel")
    shapes = [(4, 6), (2, 3)]
    value, _, _, loc, attn = make_inputs(shapes, B=1, M=2, D=4, Q=5, P=2)
    model = _TinyMSDA(shapes, backend)
    program = torch.export.export(model, (value, loc, attn))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    has_op = any("hf_seg.ms_deform_attn" in t for t in targets)
    assert has_op == (backend == "compiled"), targets
    assert_close(program.module()(value, loc, attn), model(value, loc, attn), "exported output")


@pytest.mark.slow
def test_torch_compile_inductor(kernel):
    torch._dynamo.reset()
    shapes = [(8, 8), (4, 4)]
    value, _, _, loc, attn = make_inputs(shapes, B=2, M=2, D=8, Q=10, P=3)
    model = _TinyMSDA(shapes, "auto")
    out = torch.compile(model, fullgraph=True)(value, loc, attn)
    assert_close(out, model(value, loc, attn), "inductor output")


# ------------------------------------------------------------------------------------------------- CUDA
def _nvcc():
    from torch.utils import cpp_extension

    candidates = [shutil.which("nvcc")]
    if cpp_extension.CUDA_HOME:
        candidates.append(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def test_cuda_source_compiles_with_nvcc(tmp_path):
    """Compile-only check of the CUDA kernels (runs without a GPU; needs nvcc)."""
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found")
    from torch.utils import cpp_extension

    includes = [str(_loader.SOURCE_DIR)] + cpp_extension.include_paths(device_type="cuda")
    obj = tmp_path / "msda_cuda.o"
    cmd = [
        nvcc, "-c", str(_loader.SOURCE_DIR / "msda_cuda.cu"), "-o", str(obj),
        "-std=c++20", "-Xcompiler", "-fPIC", "-O0", "-DHFSEG_NS=hf_seg_msda_compile_test",
        "-gencode=arch=compute_80,code=sm_80",
        *cpp_extension.COMMON_NVCC_FLAGS,
        *[f"-I{p}" for p in includes],
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    assert obj.stat().st_size > 0


@pytest.mark.slow
def test_cuda_extension_builds(isolated_loader):
    """Full JIT build of the CUDA variant (works without a GPU: the architectures default to a fixed list)."""
    if _nvcc() is None:
        pytest.skip("nvcc not found")
    directory = K.build(cuda=True)
    assert (directory / "BUILD_OK").is_file()
    assert _loader._namespaces.get("cuda")
