"""The whole run for a config: sources -> dataset -> LINE + MobCLIP training -> exported embeddings and run files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .config import RunConfig
from .dataset import RegionDataset, build_region_dataset
from .export import export_all
from .io import atomic_path

STAGES = ("dataset", "line", "train", "export")
"""Stages ``on_progress`` reports, in order."""


@dataclass
class RunOutputs:
    output: Path
    dataset: Path
    embeddings: pd.DataFrame
    files: dict[str, Path]
    timings: dict[str, float]
    coverage: dict = field(default_factory=dict)


def run_pipeline(
    cfg: RunConfig,
    *,
    rebuild: bool = False,
    resume: bool = False,
    log=print,
    progress: bool = True,
    on_progress: Callable[[str, float], None] | None = None,
) -> RunOutputs:
    """Build (or reuse) the region dataset, train, export; the config is saved beside the outputs.

    ``on_progress(stage, fraction)`` reports each of ``STAGES`` from 0 to 1 (for a GUI or a watching process).
    """
    from .training import train_mobclip
    from .training.distributed import init_from_env

    report = on_progress or (lambda stage, fraction: None)
    collectives = init_from_env()  # under torchrun: one process per rank; rank 0 builds and writes
    if not collectives.is_main:
        log, progress, report = (lambda *_: None), False, (lambda *_: None)

    out = cfg.path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    ds_dir = out / "dataset"
    config_json = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    stamp = ds_dir / "config.json"
    t0 = time.perf_counter()
    report("dataset", 0.0)
    same_inputs = stamp.exists() and json.loads(stamp.read_text()).get("inputs") == _inputs_of(cfg)
    if collectives.is_main and (rebuild or not same_inputs):
        log(f"building region dataset -> {ds_dir}")
        ds = build_region_dataset(cfg, progress=lambda m: log("  " + m))
        ds.save(ds_dir)
        stamp.write_text(json.dumps({"inputs": _inputs_of(cfg)}, default=str))
        collectives.barrier()
    else:
        collectives.barrier()
        log(f"reusing region dataset {ds_dir} (inputs unchanged; --rebuild to force)")
        ds = RegionDataset.load(ds_dir)
    timings["build_s"] = time.perf_counter() - t0
    report("dataset", 1.0)
    log(f"  {ds.cells.size} cells, {ds.graph.n_edges} edges, modalities: {sorted(ds.features)}")

    t0 = time.perf_counter()
    result = train_mobclip(
        ds,
        cfg.train,
        cfg.line,
        sampling=cfg.mobility.sampling,
        ratio=cfg.mobility.ratio,
        spatial_weight=cfg.mobility.spatial_weight,
        checkpoint_dir=out / "checkpoint",
        cache_dir=out / "cache",
        resume=resume,
        progress=progress,
        on_progress=report,
        collectives=collectives,
    )
    timings["train_s"] = time.perf_counter() - t0
    timings["line_s"] = result.line_seconds
    cov = result.coverage
    if cov.get("cells_without_mobility"):
        log(
            f"  note: {cov['cells_without_mobility']} of {cov['cells']} cells "
            f"({cov['share_without_mobility']:.1%}) have no mobility link"
        )
    log(
        f"  trained on {result.modalities}: best epoch {result.best_epoch}, {timings['train_s']:.1f} s "
        f"(LINE {result.line_seconds:.1f} s)"
    )
    if not collectives.is_main:
        return RunOutputs(out, ds_dir, result.embeddings, {}, timings, cov)
    t0 = time.perf_counter()
    report("export", 0.0)
    write_run_files(out, result, cfg)
    files = export_all(result.embeddings, out)
    timings["export_s"] = time.perf_counter() - t0
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(config_json)
    with atomic_path(out / "timings.json") as tmp:
        tmp.write_text(json.dumps(timings, indent=2))
    report("export", 1.0)
    return RunOutputs(out, ds_dir, result.embeddings, files, timings, cov)


def write_run_files(out: Path, result, cfg: RunConfig) -> None:
    """The trained model (``checkpoint/``, loadable with ``MobCLIP.load``), the loss log and its plot."""
    result.model.save(
        out / "checkpoint",
        extra={
            "train": asdict(cfg.train),
            "line": asdict(cfg.line),
            "mobility": {k: getattr(cfg.mobility, k) for k in ("sampling", "ratio", "spatial_weight")},
            "best_epoch": result.best_epoch,
            "modalities": result.modalities,
            "coverage": result.coverage,
        },
    )
    with atomic_path(out / "loss_log.csv") as tmp:
        result.history.to_csv(tmp, index=False)
    if len(result.history):
        plot_loss_curve(result.history, out / "loss_curve.png")


def plot_loss_curve(history: pd.DataFrame, path: Path) -> None:
    """Training and validation loss per epoch, drawn without pyplot (no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(history["epoch"], history["train_loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("InfoNCE loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _inputs_of(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    return {k: d[k] for k in ("resolution", "mobility", "poi", "image", "demographics")}
