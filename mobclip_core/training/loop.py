"""One epoch loop for every model here (contrastive training, distillation): history, early stopping, progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .early_stopping import EarlyStopping


def run_epochs(
    *,
    epochs: int,
    train_epoch: Callable[[int], float],
    validate: Callable[[], float],
    stopper: EarlyStopping,
    snapshot: Callable[[], Any],
    start_epoch: int = 0,
    history: list[dict] | None = None,
    after_epoch: Callable[[int, list[dict]], None] | None = None,
    desc: str = "train",
    progress: bool = False,
    on_progress: Callable[[float], None] | None = None,
    log: Callable[[str], None] | None = None,
    validated: bool = True,
) -> list[dict]:
    """Train epochs ``start_epoch..epochs-1`` until ``stopper`` says stop; returns the history.

    ``train_epoch(epoch)`` returns the mean training loss, ``validate()`` the loss early stopping watches, and
    ``snapshot()`` the state to keep when it improves. ``after_epoch(epoch, history)`` runs after the stopper has
    seen the epoch (the place to write a checkpoint that includes the stopper's state). ``log``, when there is no
    progress bar (a GUI, a watching process): a line with the losses every tenth of the epochs and at the last
    (``validated=False``: no validation share, so ``validate`` repeats the training loss and is not shown).
    """
    history = list(history or [])
    every = max(1, epochs // 10)
    bar = None
    if progress and epochs > start_epoch:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start_epoch, desc=desc, unit="epoch")
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            train_loss = float(train_epoch(epoch))
            val_loss = float(validate())
            history.append(
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": time.perf_counter() - t0}
            )
            stop = stopper.step(epoch, val_loss, snapshot)
            if after_epoch is not None:
                after_epoch(epoch, history)
            if bar is not None:
                bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
                bar.update(1)
            if on_progress is not None:
                on_progress((epoch + 1) / epochs)
            if log is not None and bar is None and (stop or epoch + 1 == epochs or (epoch + 1) % every == 0):
                watched = f"validation {val_loss:.4g} " if validated else ""
                log(
                    f"{desc} epoch {epoch + 1}/{epochs}: training loss {train_loss:.4g}, {watched}"
                    f"(best {stopper.best:.4g} at epoch {stopper.best_epoch + 1})"
                    + (", stopping early" if stop else "")
                )
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    return history
