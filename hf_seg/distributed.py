"""The processes of a run under ``accelerate launch`` / ``torchrun`` (or the one process of a plain run).

Evaluation and prediction shard their work with :meth:`Processes.shard` and combine results with one
:meth:`Processes.sum` at the end. The process group is accelerate's (``PartialState``): gloo on CPU, nccl on GPUs,
set up from the environment the launcher writes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...), so multi-GPU and
multi-node runs need nothing here beyond what ``accelerate launch`` / ``torchrun`` already do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Processes", "command_argv", "default_num_workers", "init_processes"]


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence) -> list:
        """This process's share: every ``world_size``-th item from ``rank`` on. Every item goes to exactly one
        process, whether or not the count divides (no padding by repetition, unlike accelerate's ``even_batches``,
        which would count repeated images twice in a metric)."""
        return list(items[self.rank :: self.world_size])

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes (in place; every process gets the total)."""
        if self.distributed:
            import torch.distributed as dist

            moved = tensor.to(self.device) if _backend() == "nccl" else tensor
            dist.all_reduce(moved)
            if moved is not tensor:
                tensor.copy_(moved)
        return tensor

    def broadcast(self, obj):
        """Process 0's ``obj`` (picklable) on every process, e.g. a file list only process 0 could read from stdin."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device if _backend() == "nccl" else None)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def _backend() -> str | None:
    import torch.distributed as dist

    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def init_processes(device: str | None = "auto") -> Processes:
    """This process's place in the run and the device it computes on.

    ``device``: ``"auto"`` (this process's GPU when there is one, else CPU), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` (a single process only: under a launcher each process takes the GPU of its local rank).
    """
    device = device or "auto"
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    want_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if not launched:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return Processes(device=torch.device(device))
    from accelerate import PartialState

    state = PartialState(cpu=want_cpu)
    if not want_cpu and device not in ("auto", "cuda") and torch.device(device) != state.device:
        raise ValueError(f"--device {device} under a launcher: process {state.process_index} uses {state.device} "
                         "(one GPU per process, by local rank); pass --device cuda or auto")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    return Processes(rank=state.process_index, world_size=state.num_processes,
                     local_rank=state.local_process_index, local_world_size=local_world,
                     device=torch.device("cpu") if want_cpu else state.device)


def default_num_workers(processes: Processes) -> int:
    """Data-loading worker processes per process: on a GPU enough to keep it fed (up to 8, the CPU cores shared
    among the local processes); on CPU 2, since the model needs the cores too (0 on a single core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(1, cores // max(1, processes.local_world_size))
    if processes.device.type == "cuda":
        return min(8, per_process)
    return 0 if cores <= 1 else min(2, per_process)


def command_argv(command: str) -> list[str]:
    """This command's arguments from ``sys.argv`` (``hf-seg COMMAND ARGS``, ``scripts/COMMAND.py ARGS`` or
    ``python -m hf_seg.MODULE ARGS``), for starting the same run in more processes."""
    import sys

    argv = sys.argv[1:]
    return argv[1:] if argv[:1] == [command] else argv
