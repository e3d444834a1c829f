"""torchrun support: join the process group and hand the few collectives LINE and the trainer need to them.

Under ``torchrun --nproc_per_node N`` every process runs the same program; ``init_from_env`` joins the group
(NCCL on GPUs, gloo on CPU) and returns a ``Collectives`` for it. Models never import this module: they receive
a ``Collectives`` (``mobclip_core.collectives``; default: one process, every operation a no-op).
"""

from __future__ import annotations

import os

from .._optional import import_optional
from ..collectives import SINGLE_PROCESS, Collectives


def init_from_env() -> Collectives:
    """Join the torchrun process group if launched by torchrun; one process otherwise."""
    torch = import_optional("torch")
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():  # one GPU per process: "cuda" then means this rank's own
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return Collectives(dist.get_rank(), dist.get_world_size())
    return SINGLE_PROCESS
