"""Checkpoint folders that are either complete or ignored.

A checkpoint is written into a hidden staging folder next to its final place (``<output>/.staging/checkpoint-N``),
its files are flushed to disk, a completion marker (``hf_seg_checkpoint.json``: step, the run's fingerprint and
the size of every file) is written last, and only then is the folder renamed to ``checkpoint-N``. A crash, a kill
or a full disk while writing leaves at most a staging folder, never a ``checkpoint-N`` that looks usable; a
``checkpoint-N`` without a valid marker (an older hf_seg, a copy cut short) is reported and skipped.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "STAGING", "RunError", "CheckpointWriteError", "write_json_atomic", "write_text_atomic",
           "finalize_checkpoint", "checkpoint_problem", "list_checkpoints", "newest_complete_checkpoint",
           "read_marker", "is_disk_full", "write_failure_message", "move_files_into", "remove_staging"]

MARKER = "hf_seg_checkpoint.json"
STAGING = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class RunError(RuntimeError):
    """A finetuning run that must not go on (or start); the message says what happened and what to do."""


class CheckpointWriteError(RunError):
    """A checkpoint or the final model could not be written; what was there before is kept."""


# ------------------------------------------------------------------------------------------------ writing
def _fsync(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. folders on filesystems that do not support fsync
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary sibling of ``path``, flush it to disk and rename it into place."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def finalize_checkpoint(staged: Path, final: Path, step: int, run: dict | None) -> None:
    """Flush ``staged``'s files, write its completion marker and rename it to ``final`` (an older folder of that
    name, e.g. an incomplete one, is moved aside first and removed after)."""
    sizes = _file_sizes(staged)
    for name in sizes:
        _fsync(staged / name)
    write_json_atomic(staged / MARKER, {"complete": True, "step": int(step), "files": sizes, **(run or {})})
    _fsync(staged, directory=True)
    displaced = None
    if final.exists():
        displaced = final.parent / STAGING / f"replaced-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, displaced)
    os.replace(staged, final)
    _fsync(final.parent, directory=True)
    if displaced is not None:
        shutil.rmtree(displaced, ignore_errors=True)
    _remove_if_empty(staged.parent)


def move_files_into(staged: Path, target: Path) -> None:
    """Move the (flushed) files of ``staged`` into ``target`` one rename each: every file in ``target`` is either the
    old or the new one in full, never a half-written one."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(p for p in staged.rglob("*") if p.is_file()):
        _fsync(source)
        destination = target / source.relative_to(staged)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)
    _fsync(target, directory=True)
    shutil.rmtree(staged, ignore_errors=True)
    _remove_if_empty(staged.parent)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: another write is staged there


def remove_staging(folder: str | Path) -> None:
    """Remove what interrupted writes left in ``folder/.staging`` (call while holding the folder's lock)."""
    shutil.rmtree(Path(folder) / STAGING, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ reading
def read_marker(checkpoint: str | Path) -> dict | None:
    try:
        marker = json.loads((Path(checkpoint) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("complete") is True else None


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (``None``: it is complete: marker present, every file its size)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return f"{checkpoint} is not a folder"
    if not (checkpoint / MARKER).is_file():
        return (f"{checkpoint.name} has no completion marker ({MARKER}): it was interrupted while being written, or "
                f"written by an hf_seg without markers")
    marker = read_marker(checkpoint)
    if marker is None or not isinstance(marker.get("files"), dict):
        return f"{checkpoint.name}'s completion marker is damaged"
    for name, size in marker["files"].items():
        path = checkpoint / name
        if not path.is_file():
            return f"{checkpoint.name}/{name} is missing"
        if path.stat().st_size != size:
            return f"{checkpoint.name}/{name} is {path.stat().st_size} bytes, {size} were written (truncated?)"
    return None


def list_checkpoints(folder: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of ``folder``, lowest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_complete_checkpoint(folder: str | Path) -> tuple[Path | None, list[str]]:
    """The complete checkpoint with the highest step, and why each newer one was passed over."""
    skipped = []
    for checkpoint in reversed(list_checkpoints(folder)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint, skipped
        skipped.append(problem)
    return None, skipped


# ------------------------------------------------------------------------------------------------ failures
_LOW_SPACE = 256 << 20


def is_disk_full(error: BaseException, folder: str | Path) -> bool:
    """Whether ``error`` (or what caused it) is a full disk or quota. ``torch.save`` reports one as
    ``basic_ios::clear: iostream error`` or ``file write failed``, without an errno; then the free space decides."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        text = str(error).lower()
        if "no space left" in text or "quota exceeded" in text:
            return True
        if "iostream error" in text or "write failed" in text or "failed writing" in text:
            try:
                return shutil.disk_usage(folder).free < _LOW_SPACE
            except OSError:
                return False
        error = error.__cause__ or error.__context__
    return False


def write_failure_message(what: str, folder: str | Path, error: BaseException) -> str:
    """``could not write <what> in <folder>: no space left on device (...)`` and what is still there."""
    folder = Path(folder)
    if is_disk_full(error, folder):
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
        except OSError:
            free = "free space unknown"
        cause = f"no space left on device ({free})"
    else:
        cause = f"{type(error).__name__}: {error}"
    newest, _ = newest_complete_checkpoint(folder)
    kept = (f"the newest complete checkpoint, {newest.name}, is kept: free space, then continue with "
            f"--resume-from-checkpoint last" if newest is not None else "no complete checkpoint exists yet")
    return f"could not write {what} in {folder}: {cause}; nothing was replaced, {kept}"
