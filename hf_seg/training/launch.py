"""Make ``accelerate launch --cpu --num_processes N`` start N processes.

accelerate's CPU launcher starts several processes only through ``mpirun`` (``--mpirun_hostfile``); without it the
script runs once, silently in a single process, with ``MASTER_ADDR``/``MASTER_PORT`` set. When that is what
happened, :func:`relaunch_if_single_cpu_process` starts the N processes itself with ``torch.distributed.run``
(gloo backend; each process gets ``OMP_NUM_THREADS = cores // N`` unless set) and returns their exit status.

The processes meet on a free port (``torch.distributed.run --standalone``) unless ``--main_process_port`` was given:
accelerate's default 29500 would make two runs on one machine collide (``EADDRINUSE``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

__all__ = ["requested_cpu_processes", "relaunch_if_single_cpu_process", "rendezvous_arguments"]


def _parent_argv() -> list[str]:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return []


def _flag_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def requested_cpu_processes(env=None, parent_argv=None) -> int:
    """N when this process was started by ``accelerate launch --cpu --num_processes N`` (N > 1) as one process."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes"):
        return 1
    if "WORLD_SIZE" in env or "LOCAL_RANK" in env or "MASTER_ADDR" not in env:
        return 1
    argv = _parent_argv() if parent_argv is None else parent_argv
    if not any("accelerate" in os.path.basename(a) or a == "accelerate.commands.launch" for a in argv[:4]):
        return 1
    value = _flag_value(argv, ("--num_processes", "--num-processes"))
    if value is None:
        config_file = _flag_value(argv, ("--config_file", "--config-file"))
        value = _num_processes_from_config(config_file)
    try:
        return max(1, int(value)) if value is not None else 1
    except ValueError:
        return 1


def _num_processes_from_config(config_file: str | None):
    try:
        from accelerate.commands.config import default_config_file
        from accelerate.commands.config.config_args import load_config_from_file

        path = config_file or default_config_file
        if not os.path.isfile(path):
            return None
        return getattr(load_config_from_file(path), "num_processes", None)
    except Exception:  # noqa: BLE001 - no config: one process
        return None


def rendezvous_arguments(parent_argv: list[str], env) -> list[str]:
    """``torch.distributed.run`` arguments for where the processes meet: the port the user gave accelerate
    (``--main_process_port``, non-zero), else a free one chosen by ``--standalone`` when it binds (no race)."""
    port = _flag_value(parent_argv, ("--main_process_port", "--main-process-port"))
    if port is not None and port.strip() not in ("", "0"):
        return ["--master_addr", env.get("MASTER_ADDR", "127.0.0.1"), "--master_port", port.strip()]
    return ["--standalone"]


def relaunch_if_single_cpu_process(module: str, argv: list[str]) -> int | None:
    """Start ``python -m module argv`` in N processes when accelerate asked for N CPU processes but started one.

    Returns the exit status, or ``None`` when nothing was relaunched (the caller runs normally).
    """
    count = requested_cpu_processes()
    if count <= 1:
        return None
    import hf_seg

    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(hf_seg.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if not env.get("OMP_NUM_THREADS") or env.get("OMP_NUM_THREADS") == str(os.cpu_count()):
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(count), "--nnodes", "1",
           *rendezvous_arguments(_parent_argv(), env), "--module", module, *argv]
    print(f"accelerate started one CPU process for --num_processes {count} (it needs mpirun for more); starting "
          f"{count} with torch.distributed.run: {shlex.join(cmd[2:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env).returncode
