"""Just-in-time build and loading of the compiled kernels.

The C++/CUDA sources in ``csrc/`` are compiled with ``torch.utils.cpp_extension.load``
(ninja) the first time a compiled kernel is needed, never at import time. The
result is cached per user in ``~/.cache/hf_seg/kernels/<key>`` (``$XDG_CACHE_HOME`` is
honoured; ``HF_SEG_KERNEL_CACHE`` overrides the whole root), where the key covers the
torch and CUDA versions, the Python version, the compiler flags and a hash of the
sources, so an upgrade or an edited source gets a fresh build instead of a stale one.

Two variants exist: ``cpu`` (CPU kernels only) and ``cuda`` (CPU and CUDA kernels).
The CUDA variant is built only when ``torch.cuda.is_available()`` or when asked for
explicitly (``build(cuda=True)``).

The library registers its operators under a namespace that contains the key
(``torch.ops.hf_seg_msda_<variant>_<key>``), so two builds can never collide in one
process. Those raw operators are wrapped by the public custom op
``torch.ops.hf_seg.ms_deform_attn`` in :mod:`hf_seg.kernels.msda`.

A build is complete when its ``BUILD_OK`` marker exists; the marker records the library's size and SHA-256, checked
before every load (a truncated library would kill the process with SIGBUS): a mismatch removes it and rebuilds.

If a build or load fails, :func:`get_ops` records the error, emits one
:class:`KernelFallbackWarning` per process and returns ``None`` so that callers fall back
to pure PyTorch. ``HF_SEG_DISABLE_KERNELS=1`` turns every compiled kernel off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch

logger = logging.getLogger(__name__)

ENV_DISABLE = "HF_SEG_DISABLE_KERNELS"
ENV_CACHE = "HF_SEG_KERNEL_CACHE"

#: Directory holding the C++/CUDA sources (tests point it elsewhere to force a failing build).
SOURCE_DIR = Path(__file__).resolve().parent / "csrc"

CPU_SOURCES = ("msda_cpu.cpp",)
CUDA_SOURCES = ("msda_cuda.cu",)
HEADERS = ("msda.h", "msda_ops.h")

if sys.platform == "win32":  # pragma: no cover - not exercised in CI
    _CXX_FLAGS = ["/O2", "/openmp"]
    _LD_FLAGS: list = []
else:
    _CXX_FLAGS = ["-O3", "-fopenmp"]
    _LD_FLAGS = ["-fopenmp"]
_CUDA_FLAGS = ["-O3"]
# Used only when the CUDA variant is built on a machine that has no visible GPU
# (e.g. an ahead-of-time build) and TORCH_CUDA_ARCH_LIST is not set: the members of this
# list that the installed torch was itself built for (so the toolkit supports them), the
# newest also as PTX for forward compatibility.
DEFAULT_CUDA_ARCHES = ("7.5", "8.0", "8.6", "9.0")


class KernelUnavailableError(RuntimeError):
    """Raised when a compiled kernel was explicitly requested but cannot be used."""


class KernelFallbackWarning(UserWarning):
    """Emitted (once per process) when a compiled kernel could not be built or loaded."""


_lock = threading.RLock()
_namespaces: dict = {}  # variant ("cpu" / "cuda") -> torch.ops namespace name
_errors: dict = {}  # variant -> error message of the failed build
_warned = False


def kernels_disabled() -> bool:
    """True when ``HF_SEG_DISABLE_KERNELS`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """Root of the kernel build cache (``HF_SEG_KERNEL_CACHE`` or ``~/.cache/hf_seg/kernels``)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hf_seg" / "kernels"


def _variant(cuda: bool) -> str:
    return "cuda" if cuda else "cpu"


def _source_files(cuda: bool) -> list:
    names = list(CPU_SOURCES) + (list(CUDA_SOURCES) if cuda else [])
    return [Path(SOURCE_DIR) / n for n in names]


def _cuda_arch_list() -> str:
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{a}.{b}" for a, b in caps)
    try:
        built_for = {a.split("_", 1)[1] for a in torch.cuda.get_arch_list() if a.startswith("sm_")}
    except Exception:  # noqa: BLE001 - CPU-only torch builds
        built_for = set()
    arches = [a for a in DEFAULT_CUDA_ARCHES if a.replace(".", "") in built_for] or ["8.0"]
    return ";".join(arches[:-1] + [arches[-1] + "+PTX"])


def build_key(cuda: bool = False) -> str:
    """Hash identifying one build: sources, torch/CUDA/Python versions and flags."""
    h = hashlib.sha256()
    for path in _source_files(cuda) + [Path(SOURCE_DIR) / n for n in HEADERS]:
        h.update(path.name.encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<missing>")
    parts = [
        torch.__version__,
        str(torch.version.cuda),
        f"py{sys.version_info[0]}.{sys.version_info[1]}",
        sys.platform,
        repr(_CXX_FLAGS),
        repr(_LD_FLAGS),
        _variant(cuda),
    ]
    if cuda:
        parts += [repr(_CUDA_FLAGS), _cuda_arch_list()]
    h.update("|".join(parts).encode())
    return h.hexdigest()


def _names(cuda: bool) -> tuple:
    key = build_key(cuda)
    namespace = f"hf_seg_msda_{_variant(cuda)}_{key[:16]}"
    torch_tag = torch.__version__.replace("+", "_")
    build_directory = cache_dir() / f"torch{torch_tag}-{_variant(cuda)}-{key[:16]}"
    return namespace, build_directory


def _cudart_ldflags(cuda_home: Optional[str]) -> list:
    """``-L`` for libcudart when it is not where cpp_extension looks (``$CUDA_HOME/lib64``).

    cpp_extension derives CUDA_HOME from the location of ``nvcc``; when ``nvcc`` is a wrapper
    script (e.g. ``/usr/local/bin/nvcc``) that guess misses the toolkit's libraries.
    """
    if sys.platform == "win32":  # pragma: no cover
        return []
    dirs = []
    if cuda_home:
        dirs += [Path(cuda_home) / "lib64", Path(cuda_home) / "lib"]
    if any((d / "libcudart.so").exists() for d in dirs):
        return []
    candidates = [Path("/usr/local/cuda/lib64"), Path("/usr/local/cuda/lib")]
    candidates += sorted(Path("/usr/local").glob("cuda-*/lib*"), reverse=True)
    for d in candidates:
        if (d / "libcudart.so").exists():
            return [f"-L{d}"]
    return []


@contextmanager
def _arch_env(cuda: bool) -> Iterator[None]:
    """Set TORCH_CUDA_ARCH_LIST for the duration of a CUDA build when it must be chosen by us."""
    if not cuda or os.environ.get("TORCH_CUDA_ARCH_LIST"):
        yield
        return
    os.environ["TORCH_CUDA_ARCH_LIST"] = _cuda_arch_list()
    try:
        yield
    finally:
        os.environ.pop("TORCH_CUDA_ARCH_LIST", None)


def _ops_loaded(namespace: str) -> bool:
    try:
        getattr(getattr(torch.ops, namespace), "forward")
        return True
    except (AttributeError, RuntimeError):
        return False


def _build_and_load(cuda: bool, verbose: bool) -> str:
    namespace, build_directory = _names(cuda)
    if _ops_loaded(namespace):
        return namespace
    from torch.utils import cpp_extension  # imported lazily: only needed to build

    lib_name = namespace + (".pyd" if sys.platform == "win32" else ".so")
    lib_path = build_directory / lib_name
    marker = build_directory / "BUILD_OK"
    if _verified_library(marker, lib_path):
        torch.ops.load_library(str(lib_path))
    else:
        for src in _source_files(cuda):
            if not src.is_file():
                raise FileNotFoundError(f"kernel source not found: {src}")
        build_directory.mkdir(parents=True, exist_ok=True)
        logger.warning(
            "hf_seg.kernels: compiling the multi-scale deformable attention %s extension "
            "(first use only, this takes about a minute); cache: %s",
            _variant(cuda).upper(),
            build_directory,
        )
        define = [f"-DHFSEG_NS={namespace}"]
        ldflags = list(_LD_FLAGS) + (_cudart_ldflags(cpp_extension.CUDA_HOME) if cuda else [])
        with _arch_env(cuda):
            cpp_extension.load(
                name=namespace,
                sources=[str(p) for p in _source_files(cuda)],
                extra_cflags=_CXX_FLAGS + define,
                extra_cuda_cflags=_CUDA_FLAGS + define,
                extra_ldflags=ldflags,
                extra_include_paths=[str(SOURCE_DIR)],
                build_directory=str(build_directory),
                verbose=verbose,
                with_cuda=cuda,
                is_python_module=False,
            )
        _write_marker(marker, namespace, lib_path)
    if not _ops_loaded(namespace):
        raise RuntimeError(f"{lib_path} was loaded but registered no operators under {namespace}")
    return namespace


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_marker(marker: Path, namespace: str, lib_path: Path) -> None:
    """The completion marker: written (atomically) only after a successful build, with the library's size and
    SHA-256, so a library truncated or overwritten later is recognised before it is loaded."""
    text = f"{namespace}\n{lib_path}\nsize {lib_path.stat().st_size}\nsha256 {_sha256(lib_path)}\n"
    temporary = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, marker)


def _verified_library(marker: Path, lib_path: Path) -> bool:
    """Whether the cached library is the one the marker vouches for. Loading a damaged shared library is not an
    error Python can catch: a truncated one kills the process with SIGBUS. So a library that does not match its
    marker (or a marker from before markers had checksums) is removed, and the caller rebuilds it; the linker
    then writes a new file, which processes that still map the old one do not notice."""
    if not marker.is_file():
        return False
    if not lib_path.is_file():
        return False
    try:
        facts = dict(line.split(" ", 1) for line in marker.read_text().splitlines() if " " in line)
        expected_size, expected_sha = int(facts["size"]), facts["sha256"].strip()
        size = lib_path.stat().st_size
        actual_sha = _sha256(lib_path) if size == expected_size else None
    except (OSError, KeyError, ValueError):
        expected_size = size = actual_sha = expected_sha = None
    if actual_sha is not None and actual_sha == expected_sha:
        return True
    logger.warning(
        "hf_seg.kernels: the cached library %s does not match its build record (%s); rebuilding it",
        lib_path,
        "no checksum recorded" if expected_sha is None else
        f"{size} bytes, expected {expected_size}" if size != expected_size else "checksum differs",
    )
    for path in (marker, lib_path):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return False


def build(verbose: bool = False, cuda: Optional[bool] = None) -> Path:
    """Build (or reuse) and load the compiled kernels ahead of time.

    ``cuda=None`` builds the CUDA variant when ``torch.cuda.is_available()``; ``cuda=True``
    forces it (needs ``nvcc``; on a machine without a GPU the architectures come from
    ``TORCH_CUDA_ARCH_LIST`` or default to ``DEFAULT_CUDA_ARCHES``). Returns the build
    directory. Raises :class:`KernelUnavailableError` (with the compiler output) on failure.
    This ignores ``HF_SEG_DISABLE_KERNELS``: it is the explicit "build now" request.
    """
    if cuda is None:
        cuda = torch.cuda.is_available()
    variant = _variant(cuda)
    with _lock:
        try:
            namespace = _build_and_load(cuda, verbose)
        except Exception as exc:  # noqa: BLE001 - any build/load problem is reported the same way
            _errors[variant] = _describe(exc)
            raise KernelUnavailableError(
                f"building the hf_seg {variant} kernels failed: {_errors[variant]}"
            ) from exc
        _namespaces[variant] = namespace
        _errors.pop(variant, None)
    if verbose:
        print(f"hf_seg.kernels: {variant} kernels ready ({namespace}) in {_names(cuda)[1]}")
    return _names(cuda)[1]


def _describe(exc: BaseException, max_lines: int = 25) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines = lines[:3] + ["..."] + lines[-(max_lines - 4):]
    return "\n".join(lines)


def _warn_once(variant: str, message: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"hf_seg: the compiled multi-scale deformable attention kernel ({variant}) could not be "
        f"built or loaded, falling back to the (slower, more memory-hungry) pure-PyTorch "
        f"implementation. Set {ENV_DISABLE}=1 to use the fallback without trying to build. "
        f"Cause: {message}",
        KernelFallbackWarning,
        stacklevel=6,  # ms_deform_attn's caller on the usual path
    )


def _variant_for(device_type: str) -> Optional[bool]:
    """Which build serves tensors of this device type (None: no compiled kernel exists)."""
    if device_type == "cuda":
        return True
    if device_type == "cpu":
        # A CUDA build also holds the CPU kernels; reuse it when there is (or will be) one.
        return "cuda" in _namespaces or torch.cuda.is_available()
    return None


def get_ops(device_type: str):
    """The raw operator namespace for ``device_type`` or ``None`` (disabled / failed / unsupported).

    Builds on first use. On failure, warns once per process and remembers the failure, so
    the build is not retried in this process.
    """
    if kernels_disabled():
        return None
    cuda = _variant_for(device_type)
    if cuda is None:
        return None
    variant = _variant(cuda)
    namespace = _namespaces.get(variant)
    if namespace is None:
        if variant in _errors:
            return None
        with _lock:
            namespace = _namespaces.get(variant)
            if namespace is None and variant not in _errors:
                try:
                    namespace = _build_and_load(cuda, verbose=False)
                    _namespaces[variant] = namespace
                except Exception as exc:  # noqa: BLE001
                    _errors[variant] = _describe(exc)
                    _warn_once(variant, _errors[variant])
        if namespace is None:
            return None
    return getattr(torch.ops, namespace)


def unavailable_reason(device_type: str) -> str:
    """Human-readable reason why :func:`get_ops` returns ``None`` for this device type."""
    if kernels_disabled():
        return f"compiled kernels are disabled by {ENV_DISABLE}"
    cuda = _variant_for(device_type)
    if cuda is None:
        return f"no compiled kernel exists for device type {device_type!r} (only cpu and cuda)"
    err = _errors.get(_variant(cuda))
    return f"the build failed: {err}" if err else "the kernel is not loaded"


def is_available(device_type: str = "cpu") -> bool:
    """Whether the compiled kernel can serve ``device_type`` tensors (may build on first call)."""
    return get_ops(device_type) is not None


def _reset_state() -> None:
    """Forget build results and the warn-once flag (for tests). Loaded libraries stay loaded."""
    global _warned
    with _lock:
        _namespaces.clear()
        _errors.clear()
        _warned = False
