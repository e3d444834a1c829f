"""The few collectives data-parallel LINE and training need, as an object passed in (one process: no-ops)."""

from __future__ import annotations

from dataclasses import dataclass

from ._optional import import_optional


@dataclass(frozen=True)
class Collectives:
    """Rank, world size and the collectives of one process group (one process: no-ops)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_(self, tensor) -> None:
        """In-place mean of ``tensor`` over all processes."""
        if self.world > 1:
            torch = import_optional("torch")
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
            tensor.div_(self.world)

    def barrier(self) -> None:
        if self.world > 1:
            import_optional("torch").distributed.barrier()


SINGLE_PROCESS = Collectives()
