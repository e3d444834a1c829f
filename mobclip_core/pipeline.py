"""The whole run for a config: sources -> dataset -> LINE + MobCLIP training -> exported embeddings and run files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .collectives import Collectives
from .config import RunConfig
from .dataset import RegionDataset
from .export import export_all, export_paths
from .io import OutputTransaction, atomic_path, check_replaceable, output_transaction
from .modalities.build import build_region_dataset

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
    from .training.trainer import check_device

    check_device(cfg.train.device)  # a GPU this machine lacks is said now, not after the dataset is built
    report = on_progress or (lambda stage, fraction: None)
    collectives = init_from_env(cfg.train.device)  # under torchrun: one process per rank; rank 0 builds and writes
    if not collectives.is_main:
        log, progress, report = (lambda *_: None), False, (lambda *_: None)

    out = cfg.path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if collectives.is_main:  # a layer of the last run held open (Windows) is said now, not after the training
        check_replaceable(export_paths(out))
    timings: dict[str, float] = {}
    ds_dir = out / "dataset"
    config_json = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    t0 = time.perf_counter()
    report("dataset", 0.0)
    ds = _build_or_reuse_dataset(cfg, ds_dir, rebuild=rebuild, collectives=collectives, log=log)
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
        log=lambda line: log("  " + line),
    )
    timings["train_s"] = time.perf_counter() - t0
    timings["line_s"] = result.line_seconds
    _log_training(result, timings, log)
    if not collectives.is_main:
        return RunOutputs(out, ds_dir, result.embeddings, {}, timings, result.coverage)
    files = _write_outputs(out, result, ds, cfg, config_json=config_json, timings=timings, log=log, report=report)
    return RunOutputs(out, ds_dir, result.embeddings, files, timings, result.coverage)


def _build_or_reuse_dataset(
    cfg: RunConfig, ds_dir: Path, *, rebuild: bool, collectives: Collectives, log: Callable[..., None]
) -> RegionDataset:
    """The region dataset: rebuilt (rank 0 only) when its inputs changed, else loaded, so reruns skip the build."""
    inputs = _inputs_of(cfg)
    if collectives.is_main and (rebuild or _dataset_inputs(ds_dir) != inputs):
        log(f"building region dataset -> {ds_dir}")
        ds = build_region_dataset(cfg, progress=lambda m: log("  " + m))
        ds.metadata[INPUTS_KEY] = inputs  # saved with the dataset, in the same atomic swap
        ds.save(ds_dir)
        collectives.barrier()
    else:
        collectives.barrier()
        log(f"reusing region dataset {ds_dir} (inputs unchanged; --rebuild to force)")
        ds = RegionDataset.load(ds_dir)
    return ds


def _log_training(result, timings: dict[str, float], log: Callable[..., None]) -> None:
    """One line on the training, and a note when some cells have no mobility link (their embedding is weaker)."""
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


def _write_outputs(
    out: Path,
    result,
    ds: RegionDataset,
    cfg: RunConfig,
    *,
    config_json: str,
    timings: dict[str, float],
    log: Callable[..., None],
    report: Callable[[str, float], None],
) -> dict[str, Path]:
    """Diagnose and write every run file in one transaction (so they appear together); adds ``export_s``."""
    t0 = time.perf_counter()
    report("export", 0.0)
    diagnostics = run_diagnostics(result, ds, log)
    with output_transaction(out) as txn:  # the run's files appear together, or the previous run's stay
        write_run_files(txn, result, cfg)
        txn.path("diagnostics.json").write_text(json.dumps(diagnostics, indent=2))
        files = export_all(result.embeddings, out, transaction=txn)
        txn.path("config.json").write_text(config_json)
        timings["export_s"] = time.perf_counter() - t0
        txn.path("timings.json").write_text(json.dumps(timings, indent=2))
    report("export", 1.0)
    return files


def run_diagnostics(result, dataset, log=print) -> dict:
    """Where information is lost (see ``evaluation.diagnostics``), logged in one line and written with the run."""
    from .evaluation.diagnostics import diagnose

    report = diagnose(result.embeddings, dataset, result.history, mobility=result.line_embedding)
    recovered = ", ".join(f"{k[12:]} {v:.2f}" for k, v in report.items() if k.startswith("recovery_r2_"))
    log(
        f"  diagnostics: effective rank {report['effective_rank']:.1f} of {result.embeddings.shape[1]}, "
        f"{report['near_duplicate_share']:.0%} near-duplicate cells, inputs recovered from the embedding "
        f"(blocked R2): {recovered}"
    )
    return report


def write_run_files(txn: OutputTransaction, result, cfg: RunConfig) -> None:
    """Stage the trained model (``checkpoint/``, loadable with ``MobCLIP.load``), the loss log and its plot.

    ``checkpoint/last.pt`` (the resume state the trainer keeps) is not part of the run's output.
    """
    from .models.mobclip import CONFIG_FILE, MODEL_FILE

    checkpoint = txn.path(f"checkpoint/{MODEL_FILE}").parent
    txn.path(f"checkpoint/{CONFIG_FILE}")
    result.model.save(
        checkpoint,
        extra={
            "train": asdict(cfg.train),
            "line": asdict(cfg.line),
            "mobility": {k: getattr(cfg.mobility, k) for k in ("sampling", "ratio", "spatial_weight")},
            "best_epoch": result.best_epoch,
            "modalities": result.modalities,
            "coverage": result.coverage,
        },
    )
    result.history.to_csv(txn.path("loss_log.csv"), index=False)
    if len(result.history):
        plot_loss_curve(result.history, txn.path("loss_curve.png"))


def plot_loss_curve(history: pd.DataFrame, path: Path) -> None:
    """Training and validation loss per epoch, drawn without pyplot (no global backend switch)."""
    from .plotting import agg_axes

    fig, ax = agg_axes((5, 3.2))
    ax.plot(history["epoch"], history["train_loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("InfoNCE loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


INPUTS_KEY = "inputs_fingerprint"
_NOT_DATASET_INPUTS = ("output", "name", "cache_dir", "line", "train")  # options that never change the dataset


def _inputs_of(cfg: RunConfig) -> str:
    """Fingerprint of what the dataset is built from: its config sections and every input file they name."""
    from .modalities.cache import section_fingerprint

    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_DATASET_INPUTS}
    return section_fingerprint(d, cfg.path)


def _dataset_inputs(ds_dir: Path) -> str | None:
    """The inputs fingerprint a saved dataset was built from (None: no dataset, or one from before stamps)."""
    try:
        return json.loads((ds_dir / "metadata.json").read_text()).get(INPUTS_KEY)
    except (OSError, ValueError, AttributeError):
        return None
