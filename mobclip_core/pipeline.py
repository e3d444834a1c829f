"""The whole run for a config: sources -> dataset -> LINE + MobCLIP training -> exported embeddings."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import RunConfig
from .dataset import RegionDataset
from .export import export_all
from .io import atomic_path
from .modalities.build import build_region_dataset


@dataclass
class RunOutputs:
    output: Path
    dataset: Path
    embeddings: pd.DataFrame
    files: dict[str, Path]
    timings: dict[str, float]


def run_pipeline(
    cfg: RunConfig, *, rebuild: bool = False, resume: bool = False, log=print, progress: bool = True
) -> RunOutputs:
    """Build (or reuse) the region dataset, train, export; the config is saved beside the outputs."""
    from .training import train_mobclip
    from .training.distributed import barrier, init_from_env

    rank, world = init_from_env()  # under torchrun: one process per rank; rank 0 builds and writes
    if rank != 0:
        log, progress = (lambda *_: None), False

    out = cfg.path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    ds_dir = out / "dataset"
    config_json = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    stamp = ds_dir / "config.json"
    t0 = time.perf_counter()
    same_inputs = stamp.exists() and json.loads(stamp.read_text()).get("inputs") == _inputs_of(cfg)
    if rank == 0 and (rebuild or not same_inputs):
        log(f"building region dataset -> {ds_dir}")
        ds = build_region_dataset(cfg, progress=lambda m: log("  " + m))
        ds.save(ds_dir)
        stamp.write_text(json.dumps({"inputs": _inputs_of(cfg)}, default=str))
        barrier()
    else:
        barrier()
        if rank == 0:
            log(f"reusing region dataset {ds_dir} (inputs unchanged; --rebuild to force)")
        ds = RegionDataset.load(ds_dir)
    timings["build_s"] = time.perf_counter() - t0
    log(f"  {ds.cells.size} cells, {ds.graph.n_edges} edges, modalities: {sorted(ds.features)}")

    t0 = time.perf_counter()
    result = train_mobclip(
        ds,
        cfg.train,
        cfg.line,
        sampling=cfg.mobility.sampling,
        ratio=cfg.mobility.ratio,
        out_dir=out,
        resume=resume,
        progress=progress,
    )
    timings["train_s"] = time.perf_counter() - t0
    timings["line_s"] = result.line_seconds
    log(
        f"  trained on {result.modalities}: best epoch {result.best_epoch}, {timings['train_s']:.1f} s "
        f"(LINE {result.line_seconds:.1f} s)"
    )
    if rank != 0:
        return RunOutputs(out, ds_dir, result.embeddings, {}, timings)
    t0 = time.perf_counter()
    files = export_all(result.embeddings, out)
    timings["export_s"] = time.perf_counter() - t0
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(config_json)
    with atomic_path(out / "timings.json") as tmp:
        tmp.write_text(json.dumps(timings, indent=2))
    return RunOutputs(out, ds_dir, result.embeddings, files, timings)


def _inputs_of(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    return {k: d[k] for k in ("resolution", "mobility", "poi", "image", "demographics")}
