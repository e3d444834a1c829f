"""Watching a child Python process from an algorithm: progress per stage, log lines, Cancel within seconds."""

from __future__ import annotations

from mobclip_core.dependencies import child_environment, find_python

from .base import Cancelled

# share of the progress bar per pipeline stage (dataset, LINE pre-training, MobCLIP training, export)
STAGE_SPANS = {"dataset": (0.0, 0.2), "line": (0.2, 0.45), "train": (0.45, 0.9), "export": (0.9, 1.0)}


def run_in_child(alg, args: list[str], feedback, *, span=(0.0, 100.0)) -> dict:
    """Run ``python -m mobclip_core.worker ARGS`` with QGIS's Python (or this environment's), the plugin's packages
    folder on its path; map its events onto ``feedback``; stop it when the user cancels."""
    from mobclip_core.worker import WorkerCancelled, run_worker

    lo, hi = span

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            a, b = STAGE_SPANS.get(event.get("stage"), (0.0, 1.0))
            fraction = a + (b - a) * float(event.get("fraction", 0.0))
            feedback.setProgress(lo + (hi - lo) * fraction)
            feedback.setProgressText(alg.tr(f"MobCLIP: {event.get('stage')}"))
        elif kind == "log":
            feedback.pushInfo(str(event.get("message", "")))

    try:
        return run_worker(
            args, python=find_python(), env=child_environment(), on_event=on_event, is_cancelled=feedback.isCanceled
        )
    except WorkerCancelled as exc:
        if exc.result is None:  # the child's atomic outputs unwound: what was there before is as it was
            raise Cancelled(
                alg.tr("Cancelled by the user; nothing new was written (earlier outputs are as they were)")
            ) from None
        raise Cancelled(  # Cancel came after the run's files were all written: say so, they are complete
            alg.tr(
                f"Cancelled by the user after the run had finished writing: its outputs in "
                f"{exc.result.get('output', 'the output folder')} are complete, but were not added to the project"
            )
        ) from None
