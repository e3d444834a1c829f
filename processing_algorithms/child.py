"""Watching a child Python process from an algorithm: progress per stage, log lines, warnings, Cancel within
seconds; and embedding locations with a distilled model there (torch stays out of QGIS's process)."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingParameterEnum

from mobclip_core.dependencies import child_environment, find_python, install_hint, missing_modules

from .base import Cancelled

# share of the progress bar per pipeline stage (dataset, LINE pre-training, MobCLIP training, export)
STAGE_SPANS = {"dataset": (0.0, 0.2), "line": (0.2, 0.45), "train": (0.45, 0.9), "export": (0.9, 1.0)}
# what each of the worker's stages is doing, as the dialog's progress text (and its log) shows it
STAGE_TEXTS = {
    "dataset": "building the region dataset (cells, mobility graph, modality features)",
    "line": "LINE pre-encoding of the mobility graph",
    "train": "training the model",
    "export": "writing the embeddings",
    "distil": "distilling a coordinate encoder",
    "project": "laying out the embedding space (UMAP: about 45 s for 5,000 places on 2 cores; the bar moves when done)",
}

# what a distilled model gives for locations outside the area it was trained on (the worker's --outside)
OUTSIDE_CHOICES = ["Warn and embed anyway (extrapolated values)", "Write NULL"]
OUTSIDE_KEYS = ["warn", "nan"]


def run_in_child(alg, args: list[str], feedback, *, span=(0.0, 100.0), kept_on_cancel=None) -> dict:
    """Run ``python -m mobclip_core.worker ARGS`` with QGIS's Python (or this environment's), the plugin's packages
    folder on its path; map its events onto ``feedback``; stop it when the user cancels. ``kept_on_cancel(stages)``:
    what a run stopped after finishing ``stages`` leaves behind on purpose (a note for the Cancel message), or ''."""
    from mobclip_core.worker import WorkerCancelled, run_worker

    lo, hi = span
    shown = {"stage": None, "done": set()}  # the stage in progress, and the stages finished

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            stage = event.get("stage")
            a, b = STAGE_SPANS.get(stage, (0.0, 1.0))
            within = float(event.get("fraction", 0.0))
            fraction = a + (b - a) * within
            if stage != shown["stage"]:  # QGIS's dialog writes each progress text into the log: once per stage
                if shown["stage"] is not None:
                    shown["done"].add(shown["stage"])
                shown["stage"] = stage
                feedback.setProgressText(alg.tr(f"MobCLIP: {STAGE_TEXTS.get(stage, stage)}"))
            if within >= 1.0:
                shown["done"].add(stage)
            feedback.setProgress(lo + (hi - lo) * fraction)
        elif kind == "log":
            feedback.pushInfo(str(event.get("message", "")))
        elif kind == "warning":
            feedback.pushWarning(str(event.get("message", "")))

    try:
        return run_worker(
            args, python=find_python(), env=child_environment(), on_event=on_event, is_cancelled=feedback.isCanceled
        )
    except WorkerCancelled as exc:
        if exc.result is None:  # the child's atomic outputs unwound: what was there before is as it was
            kept = kept_on_cancel(shown["done"]) if kept_on_cancel is not None else ""
            message = "Cancelled by the user; nothing new was written (earlier outputs are as they were)"
            if kept:
                message = f"Cancelled by the user; no outputs were written (earlier ones are as they were); {kept}"
            raise Cancelled(alg.tr(message)) from None
        raise Cancelled(  # Cancel came after the run's files were all written: say so, they are complete
            alg.tr(
                f"Cancelled by the user after the run had finished writing: its outputs in "
                f"{exc.result.get('output', 'the output folder')} are complete, but were not added to the project"
            )
        ) from None


def add_outside_parameter(alg) -> None:
    """OUTSIDE: warn and embed anyway, or NULL, for locations outside a distilled model's training area."""
    alg.addParameter(
        QgsProcessingParameterEnum(
            "OUTSIDE",
            alg.tr("Locations outside the distilled model's training area"),
            OUTSIDE_CHOICES,
            defaultValue=0,
        )
    )


def outside_mode(alg, parameters, context) -> str:
    return OUTSIDE_KEYS[alg.parameterAsEnum(parameters, "OUTSIDE", context)]


def embed_with_model(alg, model: str, lon, lat, feedback, *, outside: str, span=(0.0, 100.0)):
    """(n, d) float64 embeddings of the locations from a distilled model, computed in the child process; rows
    outside the model's training area are NaN when ``outside`` is "nan" (the child reports how many lie there)."""
    import os
    import tempfile

    import numpy as np

    missing = missing_modules(("torch",))
    if missing:
        raise QgsProcessingException(install_hint(missing))
    with tempfile.TemporaryDirectory(prefix="mobclip-embed-") as tmp:
        coords, out = os.path.join(tmp, "coords.npy"), os.path.join(tmp, "values.npy")
        np.save(coords, np.c_[lon, lat])
        run_in_child(alg, ["embed", model, coords, out, "--outside", outside], feedback, span=span)
        return np.load(out)
