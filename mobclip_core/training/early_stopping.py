"""Early stopping shared by contrastive training and distillation; it saves its own state so resume is exact."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EarlyStopping:
    """Keeps the best state seen; ``step`` says when ``patience`` epochs passed without improving.

    An epoch improves when its value is below ``best - min_delta`` (absolute) or, with ``relative=True``, below
    ``best * (1 - min_delta)``. ``patience <= 0`` never stops and keeps the last state.
    """

    patience: int
    min_delta: float = 1e-6
    relative: bool = False
    best: float = math.inf
    best_epoch: int = -1
    stale: int = 0
    best_state: Any = field(default=None, repr=False)

    def improved(self, value: float) -> bool:
        if self.patience <= 0:
            return True
        bound = self.best * (1 - self.min_delta) if self.relative else self.best - self.min_delta
        return value < bound

    def step(self, epoch: int, value: float, snapshot: Callable[[], Any]) -> bool:
        """Record ``value`` for ``epoch`` (``snapshot()`` is called only on improvement); True means stop."""
        if self.improved(value):
            self.best, self.best_epoch, self.stale = float(value), int(epoch), 0
            self.best_state = snapshot()
        else:
            self.stale += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale": self.stale, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.stale = state["best"], state["best_epoch"], state["stale"]
        self.best_state = state["best_state"]
