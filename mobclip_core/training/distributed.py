"""torchrun support: join the process group and hand the few collectives LINE and the trainer need to them.

Under ``torchrun --nproc_per_node N`` every process runs the same program; ``init_from_env`` joins the group
(NCCL on GPUs, gloo on CPU) and returns a ``Collectives`` for it. Models never import this module: they receive
a ``Collectives`` (``mobclip_core.collectives``; default: one process, every operation a no-op).
"""

from __future__ import annotations

import os

from .._optional import import_optional
from ..collectives import SINGLE_PROCESS, Collectives
from ..exceptions import ConfigError


def process_group_backend(device: str, world: int) -> str:
    """NCCL when the ranks train on GPUs (each its own), gloo on the CPU; ``device`` is ``[train] device``."""
    from .trainer import resolve_device

    resolved = resolve_device(device)
    if resolved.startswith("cuda:") and world > 1:
        raise ConfigError(
            f'[train] device = "{device}" would put all {world} torchrun processes on one GPU: set device = "cuda" '
            '(or "auto"), and each process takes the GPU of its LOCAL_RANK'
        )
    return "nccl" if resolved.startswith("cuda") else "gloo"


def init_from_env(device: str = "auto") -> Collectives:
    """Join the torchrun process group if launched by torchrun; one process otherwise."""
    torch = import_optional("torch")
    dist = torch.distributed
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = process_group_backend(device, world)
        if backend == "nccl":  # one GPU per process: "cuda" then means this rank's own
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    if dist.is_available() and dist.is_initialized():
        return Collectives(dist.get_rank(), dist.get_world_size())
    return SINGLE_PROCESS
