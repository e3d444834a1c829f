"""Work that must not run inside QGIS's process, run in a child Python process that the caller watches.

Training (torch, numba, geopandas, rasterio) and embedding coordinates with a distilled model (torch) would load a
second GDAL, GEOS, PROJ or LLVM next to QGIS's own; here they run in ``python -m mobclip_core.worker``. The child
writes one JSON object per line on stdout (everything else it prints goes to stderr):

    {"event": "progress", "stage": "dataset" | "line" | "train" | "export", "fraction": 0.0..1.0}
    {"event": "log", "message": "..."}
    {"event": "warning", "message": "..."}   the run goes on, but the user should know (e.g. extrapolated values)
    {"event": "error", "message": "..."}     a MobClipError: a message for the user
    {"event": "done", "result": {...}}
    {"event": "stopped", "committed": [folder, ...]}   stopped by the parent after these outputs were complete

``run_worker`` starts the child, hands each event to a callback, polls a cancel flag every ``poll_s`` seconds and
stops the child when it is set: SIGTERM (CTRL_BREAK on Windows) lets the child unwind, so every output that was
being written atomically is removed; after ``grace_s`` it is killed. A failure raises ``WorkerError`` with the
child's message, or the tail of its stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .exceptions import MobClipError, WorkerError


class WorkerCancelled(Exception):
    """The caller cancelled; the child was stopped.

    ``result`` is the child's result when it had already finished before the stop reached it (a Cancel during the
    last moments of the export: its outputs are complete and stay), else None (nothing new was written: atomic
    outputs unwound)."""

    def __init__(self, result: dict | None = None) -> None:
        super().__init__("cancelled" if result is None else "cancelled after the child had finished")
        self.result = result


# --- parent side ----------------------------------------------------------------------------------------------------
def run_worker(
    args: Sequence[str],
    *,
    python: str | os.PathLike,
    env: dict[str, str] | None = None,
    on_event: Callable[[dict], object] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    poll_s: float = 0.2,
    grace_s: float = 5.0,
) -> dict:
    """Run ``python -m mobclip_core.worker ARGS`` and return its result (the ``done`` event's ``result``).

    The child's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless ``env`` sets it): spinning
    workers would take the cores from QGIS and from any other busy process, and collapse when they share them.
    """
    proc = _start_child(args, python=python, env=env)
    lines: queue.Queue = queue.Queue()
    tail: collections.deque[str] = collections.deque(maxlen=60)
    readers = _start_readers(proc, lines, tail)
    try:
        result, error = _read_events(proc, lines, readers, on_event, is_cancelled, poll_s, grace_s)
        _wait_for_exit(proc, result, is_cancelled, poll_s, grace_s)
    finally:
        if proc.poll() is None:
            _stop(proc, 0.0)
        for t in readers:
            t.join(timeout=5.0)
    return _outcome(proc, result, error, tail)


def _start_child(args: Sequence[str], *, python: str | os.PathLike, env: dict[str, str] | None) -> subprocess.Popen:
    """The child in its own process group (so a stop reaches all it started), OpenMP waiting passively."""
    cmd = [str(python), "-u", "-m", "mobclip_core.worker", *args]
    env = dict(os.environ if env is None else env)  # the child's own environment; this process's is left alone
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    kwargs: dict = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
    else:
        kwargs["start_new_session"] = True  # its own process group: a stop reaches everything it started
    try:
        return subprocess.Popen(cmd, **kwargs)
    except OSError as exc:
        raise WorkerError(f"cannot start {python} for the child process ({exc})") from exc


def _start_readers(proc: subprocess.Popen, lines: queue.Queue, tail: collections.deque[str]) -> list[threading.Thread]:
    """Threads draining stdout into ``lines`` (None when it closes) and stderr into ``tail``, so neither pipe fills."""
    readers = [
        threading.Thread(
            target=_pump, args=(proc.stdout, lines.put, lambda: lines.put(None)), name="mobclip-worker-out", daemon=True
        ),
        threading.Thread(target=_pump, args=(proc.stderr, tail.append, None), name="mobclip-worker-err", daemon=True),
    ]
    for t in readers:
        t.start()
    return readers


def _read_events(
    proc: subprocess.Popen,
    lines: queue.Queue,
    readers: list[threading.Thread],
    on_event: Callable[[dict], object] | None,
    is_cancelled: Callable[[], bool] | None,
    poll_s: float,
    grace_s: float,
) -> tuple[dict | None, str | None]:
    """The child's events until its stdout closes: the ``done`` result and ``error`` message are kept, the rest
    handed to ``on_event``; a cancel stops the child and raises ``WorkerCancelled``."""
    result, error = None, None
    while True:
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            line = ""
        if is_cancelled is not None and is_cancelled():
            _stop(proc, grace_s)
            raise WorkerCancelled(_finished_result([line], lines, readers))
        if line is None:  # stdout closed: the child is exiting
            break
        event = _parse(line)
        if event is None:
            continue
        if event.get("event") == "done":
            result = event.get("result", {})
        elif event.get("event") == "error":
            error = str(event.get("message", ""))
        elif on_event is not None:
            on_event(event)
    return result, error


def _wait_for_exit(
    proc: subprocess.Popen,
    result: dict | None,
    is_cancelled: Callable[[], bool] | None,
    poll_s: float,
    grace_s: float,
) -> None:
    """Wait for the child to exit, still stopping it on a cancel (its ``result``, if any, goes with the cancel)."""
    while proc.poll() is None:
        if is_cancelled is not None and is_cancelled():
            _stop(proc, grace_s)
            raise WorkerCancelled(result)
        time.sleep(poll_s / 4)


def _outcome(proc: subprocess.Popen, result: dict | None, error: str | None, tail: collections.deque[str]) -> dict:
    """The child's result, or a ``WorkerError`` with its message, or the tail of its stderr when it crashed."""
    if error is not None:
        raise WorkerError(error)
    if proc.returncode != 0 or result is None:
        how = f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else f"failed (exit {proc.returncode})"
        stderr = "".join(tail).strip()
        if len(stderr) > 3000:  # the last 3000 characters, from the start of a line
            cut = stderr[-3000:]
            stderr = cut[cut.find("\n") + 1 :] if "\n" in cut else cut
        raise WorkerError(f"the child Python process {how}:\n{stderr or '(no output on stderr)'}")
    return result


def _finished_result(pending: list, lines: queue.Queue, readers: list[threading.Thread]) -> dict | None:
    """After a stop: the ``done`` result if the child had sent it (the line in hand or any still queued), or
    ``{"output": folder, "stopped": True}`` when it was stopped after committing its outputs; else None."""
    for t in readers:
        t.join(timeout=5.0)
    while True:
        try:
            pending.append(lines.get_nowait())
        except queue.Empty:
            break
    events = [e for e in (_parse(line) if line else None for line in pending) if e is not None]
    for event in events:
        if event.get("event") == "done":
            return event.get("result", {})
    for event in events:
        if event.get("event") == "stopped" and event.get("committed"):
            return {"output": event["committed"][-1], "stopped": True}
    return None


def _pump(stream, sink: Callable[[str], object], at_end: Callable[[], object] | None) -> None:
    for raw in iter(stream.readline, b""):
        sink(raw.decode("utf-8", errors="replace"))
    stream.close()
    if at_end is not None:
        at_end()


def _parse(line: str) -> dict | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "log", "message": line}
    return event if isinstance(event, dict) else {"event": "log", "message": line}


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM (CTRL_BREAK on Windows) to the child's process group, then SIGKILL after ``grace_s``."""
    try:
        if os.name == "nt":
            proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError, OSError):
        pass
    if proc.poll() is None:
        try:
            if os.name == "nt":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        proc.wait()


# --- child side -----------------------------------------------------------------------------------------------------
class _Events:
    """JSON lines on the real stdout; fd 1 itself goes to stderr, so stray prints cannot corrupt the stream."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._last = 0.0
        self.stage = ""
        self._fraction = 0.0
        self._dataset_steps = 0

    def emit(self, event: str, **fields) -> None:
        self._out.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        self._out.flush()

    def warning(self, message: str) -> None:
        """A warning for the user: the parent shows it as one (QGIS: ``feedback.pushWarning``), not as a log line."""
        self.emit("warning", message=str(message))

    def log(self, message: str) -> None:
        self.emit("log", message=str(message))
        if self.stage == "dataset":  # the dataset build reports one line per modality: advance on each
            self._dataset_steps += 1
            self.progress("dataset", 1.0 - 0.5**self._dataset_steps, force=True)

    def progress(self, stage: str, fraction: float, *, force: bool = False) -> None:
        """At most one event per 0.25 s, except the first of each stage (the bar shows when a stage starts); within
        a stage the fraction never goes back (a log line after the stage's own 100 % must not move the bar back)."""
        new_stage, self.stage = stage != self.stage, stage
        fraction = min(max(fraction, 0.0), 1.0)
        self._fraction = fraction if new_stage else max(fraction, self._fraction)
        now = time.monotonic()
        if force or new_stage or now - self._last >= 0.25:
            self._last = now
            self.emit("progress", stage=stage, fraction=round(self._fraction, 4))


def _train(events: _Events, config: str, rebuild: bool, threads: int | None = None) -> dict:
    from .config import load_config
    from .pipeline import run_pipeline

    cfg = load_config(config)
    if threads is not None:
        cfg.train.threads = threads
    events.progress("dataset", 0.0, force=True)
    run = run_pipeline(cfg, rebuild=rebuild, log=events.log, progress=False, on_progress=events.progress)
    events.progress("export", 1.0, force=True)
    return {"name": cfg.name, "output": str(run.output), "files": {k: str(v) for k, v in run.files.items()}}


POOR_DISTILLATION_R2 = 0.8  # below this a distilled model is reported as a poor fit (Chicago: 0.97 at 150 epochs)


def _distil(events: _Events, embeddings: str, out: str, epochs: int | None, seed: int, device: str) -> dict:
    """Distil an embedding table (a file mobclip wrote) into a coordinate encoder saved in ``out``."""
    from .encoders.distilled import DistilConfig, distil_table
    from .export import read_embeddings

    table = read_embeddings(embeddings)
    events.progress("distil", 0.0, force=True)
    cfg = DistilConfig(seed=seed, **({"epochs": epochs} if epochs else {}))
    done = distil_table(
        table, out, cfg, device=device, on_progress=lambda f: events.progress("distil", f), log=events.log
    )
    events.progress("distil", 1.0, force=True)
    events.log(
        f"distilled {len(table)} cells x {table.shape[1]} dimensions in {len(done.encoder.history)} epochs: the "
        f"model reproduces the table's embeddings at its cells with R2 {done.r2:.3f} (1 = exactly)"
    )
    if done.r2 < POOR_DISTILLATION_R2:
        events.warning(
            f"the model reproduces the table only with R2 {done.r2:.3f}: its embeddings are far from the table's. "
            f"Distil again with more epochs (the default is {DistilConfig.epochs}; it stops by itself when the fit "
            "stops improving)"
        )
    return {"output": str(done.path), "model": str(done.path / "model.pth"), "r2": done.r2, "cells": len(table)}


def _embed(events: _Events, model: str, coords: str, out: str, outside: str = "warn") -> dict:
    """Embed the (lon, lat) rows of ``coords``. Locations outside the model's training extent are counted and
    reported as a warning event (a Python warning would only reach this process's stderr, which the parent keeps
    for crashes); ``outside="nan"`` gives them NaN rows, "warn" embeds them anyway."""
    import numpy as np

    from .encoders.distilled import DistilledEncoder
    from .io import atomic_path

    lon_lat = np.load(coords)
    lon, lat = lon_lat[:, 0], lon_lat[:, 1]
    encoder = DistilledEncoder.load(model)
    values = encoder.embed(lon, lat, outside="nan" if outside == "nan" else "ignore")
    n_out = int(encoder.outside_extent(lon, lat).sum())
    with atomic_path(Path(out)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(values, dtype=np.float64))
    if encoder.extent is None:
        events.log(f"{Path(model).name} records no training extent: locations were not checked against one")
    elif n_out:
        events.warning(_outside_message(n_out, len(lon_lat), encoder.extent.describe(), outside))
    return {"rows": int(values.shape[0]), "dims": int(values.shape[1]), "outside": n_out}


def _outside_message(n_out: int, n: int, extent: str, outside: str) -> str:
    what = (
        "their embeddings are left empty (NULL)"
        if outside == "nan"
        else "their embeddings are extrapolations far from any training point; choose NULL for locations outside "
        "the training area to leave them empty"
    )
    return f"{n_out} of {n} locations lie outside the area the distilled model was trained on ({extent}): {what}"


def _project(events: _Events, values: str, out: str, method: str, seed: int) -> dict:
    import numpy as np

    from .analysis.space import embedding_space
    from .io import atomic_path

    events.progress("project", 0.0, force=True)
    xy, used = embedding_space(np.load(values), method=method, seed=seed)
    with atomic_path(Path(out)) as tmp, open(tmp, "wb") as f:
        np.save(f, xy)
    events.progress("project", 1.0, force=True)
    return {"method": used, "rows": int(xy.shape[0])}


class _Stopped(SystemExit):
    pass


def _on_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise _Stopped(128 + signum)


def install_stop_handlers() -> None:
    """Turn the parent's stop signal into an exception, so ``finally`` blocks and atomic writes clean up."""
    for name in ("SIGTERM", "SIGBREAK", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _on_stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobclip_core.worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    train = sub.add_parser("train", help="run the pipeline of a config file")
    train.add_argument("config")
    train.add_argument("--rebuild", action="store_true")
    train.add_argument("--threads", type=int, help="CPU threads for LINE and training (0: every usable core)")
    embed = sub.add_parser("embed", help="embed (lon, lat) rows of an .npy file with a distilled model")
    embed.add_argument("model")
    embed.add_argument("coords")
    embed.add_argument("out")
    embed.add_argument(
        "--outside", choices=("warn", "nan"), default="warn", help="outside the training extent: embed anyway or NaN"
    )
    distil = sub.add_parser("distil", help="embedding table -> a distilled coordinate encoder in a folder")
    distil.add_argument("embeddings")
    distil.add_argument("out")
    distil.add_argument("--epochs", type=int, help="at most this many epochs (default: DistilConfig's)")
    distil.add_argument("--seed", type=int, default=0)
    distil.add_argument("--device", default="auto")
    project = sub.add_parser("project", help="rows of an .npy file -> 2-D map of the embedding space (UMAP or PCA)")
    project.add_argument("values")
    project.add_argument("out")
    project.add_argument("--method", default="auto")
    project.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    install_stop_handlers()
    events = _Events()
    try:
        if args.task == "train":
            result = _train(events, args.config, args.rebuild, args.threads)
        elif args.task == "distil":
            result = _distil(events, args.embeddings, args.out, args.epochs, args.seed, args.device)
        elif args.task == "project":
            result = _project(events, args.values, args.out, args.method, args.seed)
        else:
            result = _embed(events, args.model, args.coords, args.out, args.outside)
        events.emit("done", result=result)  # inside the try: a stop arriving just before it still reports
    except MobClipError as exc:
        events.emit("error", message=str(exc))
        return 2
    except ImportError as exc:  # a missing package: MissingDependencyError's message names it
        events.emit("error", message=f"{exc}")
        return 3
    except _Stopped:
        from .io import COMMITTED

        if COMMITTED:  # the stop came after the outputs were moved into place: they are complete, say so
            events.emit("stopped", committed=[str(p) for p in COMMITTED])
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
