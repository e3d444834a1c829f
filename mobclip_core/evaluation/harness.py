"""Compare embedding sources on downstream tasks at point, grid and admin-polygon level.

A *source* gives features for H3 cells (an embedding table) or for coordinates (a location encoder). A *task*
gives a target per sample: per H3 cell (grid), per point, or per admin polygon; admin features are the mean of
the source's features over the cells whose centre falls in the polygon (the paper's protocol). Each (source,
task, split) is scored over repeated 80/20 splits with LightGBM (Ridge under 300 samples): blocked splits hold
out whole spatial groups (admin groups or coarse H3 parents) and are reported first; random splits are the
optimistic reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..embeddings import polygon_means
from ..exceptions import InvalidInputError
from ..grid import (
    cell_blocks,
    cell_centroids,
    lookup_rows,
    point_blocks,
    points_to_cells,
    representative_points,
    strings_to_cells,
    to_wgs84,
)
from ..io import atomic_path
from .regression import ADMIN_PARAMS, GRID_PARAMS, fit_model, make_model, r2_score
from .splits import holdout_split


@dataclass
class EmbeddingSource:
    """Features for cells: from a table indexed by hex ``h3_cell``, or a function of (lon, lat) arrays."""

    name: str
    table: pd.DataFrame | None = None
    encoder: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def for_cells(self, cells: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return lookup_rows(self.table, cells)
        lon, lat = cell_centroids(cells)
        return np.asarray(self.encoder(lon, lat), dtype=np.float64)

    def for_points(self, lon: np.ndarray, lat: np.ndarray, resolution: int) -> np.ndarray:
        if self.table is not None:
            return self.for_cells(points_to_cells(lon, lat, resolution))
        return np.asarray(self.encoder(lon, lat), dtype=np.float64)


@dataclass
class Task:
    """A downstream target. ``level`` is "grid" (index: hex cells), "point" (lon/lat columns) or "admin"."""

    name: str
    level: str
    target: pd.Series
    groups: pd.Series | None = None  # spatial blocks per sample; default: coarse H3 parents
    polygons: object = None  # GeoDataFrame for admin tasks, indexed like ``target``
    points: pd.DataFrame | None = None  # lon/lat for point tasks, indexed like ``target``
    block_resolution: int = 6
    extra: dict = field(default_factory=dict)


def admin_features(source: EmbeddingSource, polygons, resolution: int) -> np.ndarray:
    """Mean source features over the cells whose centres fall in each polygon; a polygon too small to hold a cell
    centre takes its representative point's cell (NaN where no cell has features). Same helper as QGIS's
    'Aggregate embeddings over polygons'."""
    polys = to_wgs84(polygons, what="admin polygons")
    return polygon_means(polys.geometry.values, resolution, source.for_cells).values


def _features(source: EmbeddingSource, task: Task, resolution: int) -> np.ndarray:
    if task.level == "grid":
        return source.for_cells(strings_to_cells(task.target.index.to_numpy()))
    if task.level == "point":
        return source.for_points(task.points["lon"].to_numpy(), task.points["lat"].to_numpy(), resolution)
    if task.level == "admin":
        return admin_features(source, task.polygons, resolution)
    raise InvalidInputError(f"unknown task level {task.level!r}: use grid, point or admin")


def _groups(task: Task, resolution: int) -> np.ndarray:
    if task.groups is not None:
        return task.groups.astype(str).to_numpy()
    if task.level == "grid":
        return cell_blocks(strings_to_cells(task.target.index.to_numpy()), task.block_resolution)
    if task.level == "point":
        lon, lat = task.points["lon"].to_numpy(), task.points["lat"].to_numpy()
    else:
        lon, lat = representative_points(to_wgs84(task.polygons).geometry.values)
    return point_blocks(lon, lat, task.block_resolution, resolution)


def _score(x, y, tr, te, model, params, seed, early_stopping) -> tuple[str, float, float, float]:
    t0 = time.perf_counter()
    kind, est = make_model(model, len(tr), params, seed, 1)
    fit_model(est, kind, x, y, tr, early_stopping, seed)
    pred = est.predict(x[te])
    rmse = float(np.sqrt(np.mean((y[te] - pred) ** 2)))
    return kind, r2_score(y[te], pred), rmse, time.perf_counter() - t0


def evaluate(
    sources: list[EmbeddingSource],
    tasks: list[Task],
    *,
    resolution: int,
    runs: int = 10,
    splits: tuple[str, ...] = ("blocked", "random"),
    model: str = "auto",
    n_jobs: int = 2,
    early_stopping: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """R^2 and RMSE (mean and std over ``runs``) of every source on every task and split; blocked first.
    ``fit_seconds`` is the CPU-side time spent fitting and scoring those runs (summed over worker processes).

    Features are computed once per (task, source); the independent fits run in ``n_jobs`` processes. By default
    LightGBM grows the protocol's fixed 1,000 trees; ``early_stopping=50`` instead stops each fit when a seeded 10%
    of its training rows stops improving for 50 rounds (a documented deviation, 3-4x faster on small admin tasks).
    The test rows are never seen while fitting either way.
    """
    jobs, meta = _plan_fits(sources, tasks, resolution, runs, splits, model, early_stopping)
    t0 = time.perf_counter()
    scores = _run_fits(jobs, n_jobs, progress)
    df = _summarise(meta, scores)
    df.attrs["seconds"] = time.perf_counter() - t0
    order = {s: i for i, s in enumerate(splits)}
    return df.sort_values("split", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def _plan_fits(
    sources: list[EmbeddingSource],
    tasks: list[Task],
    resolution: int,
    runs: int,
    splits: tuple[str, ...],
    model: str,
    early_stopping: int | None,
) -> tuple[list, list[tuple]]:
    """Every independent fit as a delayed job, with its (task, level, source, split, n); features built once."""
    from joblib import delayed

    jobs, meta = [], []
    for task in tasks:
        y_all = task.target.to_numpy(dtype=np.float64)
        groups_all = _groups(task, resolution)
        params = ADMIN_PARAMS if task.level == "admin" else GRID_PARAMS
        for source in sources:
            x_all = _features(source, task, resolution)
            ok = np.isfinite(y_all) & np.isfinite(x_all).all(axis=1)
            x, y, groups = x_all[ok], y_all[ok], groups_all[ok]
            if len(y) < 5:
                raise InvalidInputError(
                    f"task {task.name!r}: only {len(y)} samples have both a target and {source.name} features"
                )
            for split in splits:
                for run in range(runs):
                    tr, te = holdout_split(len(y), groups, split == "blocked", seed=run)
                    jobs.append(delayed(_score)(x, y, tr, te, model, params, run, early_stopping))
                    meta.append((task.name, task.level, source.name, split, len(y)))
    return jobs, meta


def _run_fits(jobs: list, n_jobs: int, progress: bool) -> list[tuple[str, float, float, float]]:
    """The fits' scores in job order, over ``n_jobs`` processes, with a progress bar when asked."""
    from joblib import Parallel

    iterator = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(jobs), desc="evaluate", unit="fit")
    return list(iterator)


def _summarise(meta: list[tuple], scores: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    """Mean and std over the runs of each (task, level, source, split), in first-seen order."""
    raw = pd.DataFrame(
        [(*m, *sc) for m, sc in zip(meta, scores)],
        columns=["task", "level", "source", "split", "n", "model", "r2", "rmse", "seconds"],
    )
    return (
        raw.groupby(["task", "level", "source", "split"], sort=False)
        .agg(
            model=("model", "first"),
            n=("n", "first"),
            r2_mean=("r2", "mean"),
            r2_std=("r2", "std"),
            rmse_mean=("rmse", "mean"),
            rmse_std=("rmse", "std"),
            runs=("r2", "size"),
            fit_seconds=("seconds", "sum"),
        )
        .reset_index()
    )


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Wide R^2 table: one row per (split, source), one column per task, plus the mean; blocked first."""
    cell = results.assign(v=results.r2_mean.map("{:.3f}".format) + " (" + results.r2_std.map("{:.3f}".format) + ")")
    wide = cell.pivot_table(index=["split", "source"], columns="task", values="v", aggfunc="first")
    means = results.groupby(["split", "source"]).r2_mean.mean().rename("mean R2")
    wide = wide.join(means.map("{:.3f}".format))
    split_order = list(dict.fromkeys(results.split))
    source_order = list(dict.fromkeys(results.source))
    wide = wide.reset_index()
    wide["_s"] = wide.split.map(split_order.index)
    wide["_o"] = wide.source.map(source_order.index)
    return wide.sort_values(["_s", "_o"]).drop(columns=["_s", "_o"]).reset_index(drop=True)


def write_report(results: pd.DataFrame, out_dir: str | Path, stem: str = "evaluation") -> dict[str, Path]:
    """CSV of every score, Markdown summary (blocked first) and a bar plot of mean R^2 per source."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "markdown": out / f"{stem}.md", "plot": out / f"{stem}.png"}
    with atomic_path(paths["csv"]) as tmp:
        results.to_csv(tmp, index=False)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(to_markdown(summary_table(results)))
    from ..plotting import agg_axes  # no pyplot: the global backend stays as it was

    means = results.groupby(["source", "split"], sort=False).r2_mean.mean().unstack("split")
    # horizontal bars, first source on top, the figure as tall as the sources need: long names stay readable
    fig, ax = agg_axes((8, 1.2 + 0.3 * len(means)))
    means[[c for c in ("blocked", "random") if c in means]].iloc[::-1].plot.barh(ax=ax)
    ax.set_xlabel("mean R2 over tasks")
    ax.set_ylabel("")
    ax.axvline(0, color="k", lw=0.5)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], title="split")
    fig.tight_layout()
    with atomic_path(paths["plot"]) as tmp:
        fig.savefig(tmp, format="png")
    return paths


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
