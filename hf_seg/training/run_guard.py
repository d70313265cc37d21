"""One run per output folder, and resuming only what this run wrote.

* :class:`OutputDirLock`: ``<output>/.hf_seg.lock``, held with an OS file lock for the whole run, so a second finetune
  into the same folder is refused (naming the process that writes there). The OS releases the lock when its process
  dies, so a lock file left by a killed run is recognised as stale and taken over.
* :func:`run_fingerprint`: what makes two runs the same run: the model source and architecture, the dataset, the
  resolved recipe and training settings, the hf_seg version. It is stored in ``hf_seg_run.json`` and in every
  checkpoint's completion marker; :func:`resume_checkpoint` refuses, naming each difference, a checkpoint whose
  fingerprint differs (unless forced), and :func:`prepare_output_dir` refuses to start a fresh run in a folder that
  holds another run (unless it is to be overwritten).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from .checkpoints import (RunError, checkpoint_problem, list_checkpoints, newest_complete_checkpoint, read_marker,
                          remove_staging, write_json_atomic)

__all__ = ["LOCK_NAME", "RUN_RECORD", "OutputDirLock", "run_fingerprint", "fingerprint_differences",
           "prepare_output_dir", "resume_checkpoint", "write_run_record"]

LOCK_NAME = ".hf_seg.lock"
RUN_RECORD = "hf_seg_run.json"
# what a previous run leaves in its output folder (besides checkpoints)
_RUN_FILES = (RUN_RECORD, "model.safetensors", "trainer_state.json", "training_args.bin")


# ------------------------------------------------------------------------------------------------ lock
class OutputDirLock:
    """An exclusive lock on ``folder`` for this process (``fcntl.flock``; where that does not exist, an exclusively
    created lock file, which a crashed run leaves behind for the user to remove)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> OutputDirLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        for _ in range(5):
            if fcntl is None:  # pragma: no cover
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                except FileExistsError:
                    raise RunError(self._held_message() + f"; if no run is active, remove {self.path}") from None
            else:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise RunError(self._held_message()) from None
                try:  # the holder before us may have removed the file between our open and our lock
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            stale = os.read(fd, 4096).decode(errors="replace").strip()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(self._holder()).encode())
            os.fsync(fd)
            self._fd = fd
            self.stale_holder = _parse(stale)
            return self
        raise RunError(f"could not lock {self.folder}: its lock file keeps changing")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before closing: nobody can lock the file we remove
        finally:
            os.close(self._fd)  # releases the OS lock
            self._fd = None

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _holder() -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500],
                "since": datetime.datetime.now().isoformat(timespec="seconds")}

    def _held_message(self) -> str:
        try:
            holder = _parse(self.path.read_text())
        except OSError:
            holder = None
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}: "
               f"{holder.get('command')}" if holder else "another process")
        return (f"{self.folder} is in use by another finetune ({who}); two runs writing one folder would overwrite "
                f"each other's checkpoints and model: wait for it, or use another --output-dir")


def _parse(text: str) -> dict | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------------------ fingerprint
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype",
                         "_attn_implementation_autoset", "auto_map")


def _source(value: str) -> str:
    return os.path.abspath(value) if os.path.exists(value) else value


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(model_source: str, model_config, dataset_source: str, dataset_name: str, train_rows: int,
                    training: dict[str, Any]) -> dict[str, Any]:
    """What identifies a run: resuming from a checkpoint with another fingerprint continues another run."""
    from .. import __version__

    config = {k: v for k, v in model_config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    return {"model": _source(model_source), "architecture": _digest(config),
            "model_type": getattr(model_config, "model_type", None), "dataset": _source(dataset_source),
            "dataset_name": dataset_name, "train_rows": int(train_rows),
            "training": json.loads(json.dumps(training, sort_keys=True, default=str)), "hf_seg": __version__}


def fingerprint_differences(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """``field: checkpoint X, this run Y`` for every difference (the training settings key by key)."""
    if not saved:
        return ["the checkpoint records no run fingerprint"]
    out = []
    for key, now in current.items():
        before = saved.get(key)
        if key == "training" and isinstance(before, dict) and isinstance(now, dict):
            out += [f"{key}.{k}: checkpoint {before.get(k)!r}, this run {now.get(k)!r}"
                    for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        elif before != now:
            out.append(f"{key}: checkpoint {before!r}, this run {now!r}")
    return out


# ------------------------------------------------------------------------------------------------ policy
def write_run_record(folder: str | Path, run_id: str, fingerprint: dict, status: str) -> None:
    write_json_atomic(Path(folder) / RUN_RECORD, {"run_id": run_id, "status": status, "fingerprint": fingerprint})


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prepare_output_dir(folder: str | Path, overwrite: bool) -> list[str]:
    """For a fresh (not resumed) run: refuse a folder holding another run unless ``overwrite``, in which case that
    run's checkpoints and record are removed. Returns notes for the user. Call while holding the folder's lock."""
    folder = Path(folder)
    remove_staging(folder)
    checkpoints = list_checkpoints(folder)
    files = [name for name in _RUN_FILES if (folder / name).is_file()]
    if not checkpoints and not files:
        return []
    found = ", ".join([p.name for p in checkpoints[-3:]] + files)
    if not overwrite:
        raise RunError(f"{folder} already holds a training run ({found}): continue it with --resume-from-checkpoint "
                       f"last, replace it with --overwrite-output-dir, or choose another --output-dir")
    for checkpoint in checkpoints:
        shutil.rmtree(checkpoint)
    (folder / RUN_RECORD).unlink(missing_ok=True)
    return [f"--overwrite-output-dir: removed the previous run in {folder} ({found})"]


def resume_checkpoint(folder: str | Path, requested: str, fingerprint: dict, force: bool) -> tuple[Path, str, list[str]]:
    """(checkpoint, run id, notes) to resume from. ``requested`` is ``last`` (the newest complete checkpoint in
    ``folder``) or a checkpoint folder. Refuses incomplete checkpoints and checkpoints of another run (fingerprint)
    unless ``force``. Call while holding the folder's lock."""
    folder = Path(folder)
    remove_staging(folder)
    notes = []
    if requested.lower() in ("true", "last", "latest"):
        checkpoint, skipped = newest_complete_checkpoint(folder)
        notes += [f"skipping {reason}" for reason in skipped]
        if checkpoint is None:
            hint = (" (" + "; ".join(skipped) + "; pass one with --resume-from-checkpoint DIR --force-resume to use "
                    "it anyway)") if skipped else ""
            raise RunError(f"--resume-from-checkpoint {requested}: no complete checkpoint in {folder}{hint}")
    else:
        checkpoint = Path(requested)
        problem = checkpoint_problem(checkpoint)
        if problem is not None:
            if not (force and checkpoint.is_dir()):
                newest, _ = newest_complete_checkpoint(checkpoint.parent)
                other = f"; the newest complete one there is {newest}" if newest is not None else ""
                raise RunError(f"cannot resume from {checkpoint}: {problem}{other} (--force-resume uses it anyway)")
            notes.append(f"--force-resume: resuming from {checkpoint} although {problem}")
    marker = read_marker(checkpoint) or {}
    differences = fingerprint_differences(marker.get("fingerprint"), fingerprint)
    if differences:
        listing = "\n  ".join(differences)
        if not force:
            raise RunError(f"{checkpoint} was written by another run than this one would be; resuming it would "
                           f"continue that run with these differences:\n  {listing}\nrun with the same settings, "
                           f"start a fresh run in another --output-dir, or pass --force-resume to resume anyway")
        notes.append(f"--force-resume: resuming {checkpoint} despite: " + "; ".join(differences))
    run_id = marker.get("run_id") or (_read_json(folder / RUN_RECORD) or {}).get("run_id") or uuid.uuid4().hex
    return checkpoint, run_id, notes
