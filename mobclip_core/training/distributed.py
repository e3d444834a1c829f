"""torchrun support: process-group set-up and the few collectives LINE and the trainer need.

Under ``torchrun --nproc_per_node N`` every process runs the same program; ``init_from_env`` joins the group
(NCCL on GPUs, gloo on CPU). Outside torchrun everything here is a no-op for one process.
"""

from __future__ import annotations

import os

from .._optional import import_optional


def init_from_env() -> tuple[int, int]:
    """Join the torchrun process group if launched by torchrun; returns (rank, world size)."""
    torch = import_optional("torch")
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return rank_world()


def rank_world() -> tuple[int, int]:
    torch = import_optional("torch")
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def average_(tensor) -> None:
    """In-place mean of ``tensor`` over all processes."""
    torch = import_optional("torch")
    rank, world = rank_world()
    if world > 1:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        tensor.div_(world)


def barrier() -> None:
    torch = import_optional("torch")
    if rank_world()[1] > 1:
        torch.distributed.barrier()
