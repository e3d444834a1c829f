"""Real-data benchmark on Chicago: train MobCLIP, distil it, compare with location-encoder baselines.

Inputs (../shared/data/chicago, see benchmarks/chicago_data.py): taxi flows between tracts spread to H3 res-9
cells, supermarket and liquor-store POIs, tract age and race/ethnicity counts. Targets: ten Chi-SDOH tract
variables never used as inputs, at admin level (tract = mean of the cell embeddings whose centre is inside).
Blocked splits hold out whole community areas (`commarea`, 77 groups) and are reported first.
Every source is scored twice, side by side: with early stopping (fast; the timed target) and with the public
protocol's fixed 1,000 trees. Writes benchmarks/results/chicago.{md,csv,png} (+ chicago_fixed.{csv,png}).
Skips cleanly when the shared folder is absent.
Run: .venv/bin/python -m benchmarks.bench_chicago [--work DIR] [--runs 10] [--protocols early fixed]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import geopandas as gpd

from benchmarks.chicago_data import TARGETS, available, prepare_chicago
from mobclip_core.config import load_config
from mobclip_core.encoders.baselines import baseline_encoders
from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
from mobclip_core.evaluation.harness import EmbeddingSource, Task, evaluate, summary_table, to_markdown, write_report
from mobclip_core.export import read_embeddings
from mobclip_core.grid import cell_centroids, strings_to_cells
from mobclip_core.pipeline import run_pipeline

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = {
    "fixed": "Public protocol: 1,000 trees",
    "early": "Up to 1,000 trees, early stopping (50 rounds on a seeded 10% of each training split)",
}


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/mobclip-chicago")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--distil-epochs", type=int, default=300)
    p.add_argument(
        "--protocols",
        nargs="+",
        choices=sorted(PROTOCOLS),
        default=["early", "fixed"],
        help="LightGBM protocols to compare with, in this order (the first writes chicago.csv/png)",
    )
    args = p.parse_args()
    if not available():
        print("Chicago data not found (../shared/data/chicago or $MOBCLIP_CHICAGO): skipped")
        return {}
    work = Path(args.work)
    cfg_path = prepare_chicago(work)
    t0 = time.perf_counter()
    run = run_pipeline(load_config(cfg_path), progress=False)
    train_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = read_embeddings(run.files["geoparquet"])
    cells = strings_to_cells(table.index.to_numpy())
    lon, lat = cell_centroids(cells)
    t0 = time.perf_counter()
    distilled = DistilledEncoder(DistilConfig(epochs=args.distil_epochs)).fit(lon, lat, table.to_numpy())
    distil_s = time.perf_counter() - t0
    distilled.save(work / "distilled")

    tracts = gpd.read_file(work / "tracts.gpkg")
    tasks = [
        Task(code, "admin", tracts[code].astype(float), groups=tracts["commarea"], polygons=tracts) for code in TARGETS
    ]
    sources = [EmbeddingSource("MobCLIP", table), EmbeddingSource("MobCLIP distilled", encoder=distilled.embed)]
    sources += [EmbeddingSource(name, encoder=fn) for name, fn in baseline_encoders(sh_degree=10).items()]
    RESULTS.mkdir(exist_ok=True)
    sections, seconds = [], {}
    for protocol in args.protocols:
        early = 50 if protocol == "early" else None
        t0 = time.perf_counter()
        results = evaluate(sources, tasks, resolution=9, runs=args.runs, early_stopping=early, progress=True)
        seconds[protocol] = time.perf_counter() - t0
        stem = "chicago" if protocol == args.protocols[0] else f"chicago_{protocol}"
        write_report(results, RESULTS, stem=stem)
        means = results.groupby(["split", "source"]).r2_mean.mean()
        lines = []
        for split in ("blocked", "random"):
            m = means[split]
            best_base = m.drop(["MobCLIP", "MobCLIP distilled"]).sort_values().index[-1]
            lines.append(
                f"{split}: MobCLIP mean R2 {m['MobCLIP']:.3f} vs best baseline {best_base} "
                f"{m[best_base]:.3f} ({(m['MobCLIP'] / m[best_base] - 1):+.0%}); distilled keeps "
                f"{m['MobCLIP distilled'] / m['MobCLIP']:.0%} of MobCLIP"
            )
        share = results.groupby("source", sort=False).fit_seconds.sum()
        share = (share / share.sum()).map("{:.0%}".format)
        lines.append("share of fitting time by source: " + ", ".join(f"{k} {v}" for k, v in share.items()))
        sections.append(
            f"### {PROTOCOLS[protocol]}: comparison {seconds[protocol]:.0f} s\n\n"
            + to_markdown(summary_table(results))
            + "\n"
            + "\n".join(lines)
            + "\n"
        )
    text = (
        f"Chicago, {len(tracts)} tracts, {table.shape[0]} res-9 cells; {args.runs} runs per split; "
        f"training {train_s:.0f} s (peak RSS {peak:.0f} MiB), distillation {distil_s:.0f} s.\n\n" + "\n".join(sections)
    )
    if {"fixed", "early"} <= set(seconds):
        text += (
            f"\nComparison wall time, fixed 1,000 trees / early stopping: {seconds['fixed']:.0f} s / "
            f"{seconds['early']:.0f} s = {seconds['fixed'] / seconds['early']:.1f}x (target: under 300 s)\n"
        )
    (RESULTS / "chicago.md").write_text(text)
    print(text)
    return {"train_s": train_s, "eval_s": seconds}


if __name__ == "__main__":
    main()
