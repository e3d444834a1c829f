"""Real-data benchmark on Chicago: train MobCLIP, distil it, compare with location-encoder baselines.

Inputs (../shared/data/chicago, see benchmarks/chicago_data.py): taxi flows between tracts spread to H3 res-9
cells, supermarket and liquor-store POIs, tract age and race/ethnicity counts. Targets: ten Chi-SDOH tract
variables never used as inputs, at admin level (tract = mean of the cell embeddings whose centre is inside).
Blocked splits hold out whole community areas (`commarea`, 77 groups) and are reported first.
Writes benchmarks/results/chicago.{md,csv,png}. Skips cleanly when the shared folder is absent.
Run: .venv/bin/python -m benchmarks.bench_chicago [--work DIR] [--runs 10]
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


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/mobclip-chicago")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--distil-epochs", type=int, default=300)
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
    t0 = time.perf_counter()
    results = evaluate(sources, tasks, resolution=9, runs=args.runs, progress=True)
    eval_s = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    write_report(results, RESULTS, stem="chicago")
    wide = summary_table(results)
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
    text = (
        f"Chicago, {len(tracts)} tracts, {table.shape[0]} res-9 cells; {args.runs} runs per split; "
        f"training {train_s:.0f} s (peak RSS {peak:.0f} MiB), distillation {distil_s:.0f} s, "
        f"comparison {eval_s:.0f} s.\n\n" + to_markdown(wide) + "\n" + "\n".join(lines) + "\n"
    )
    (RESULTS / "chicago.md").write_text(text)
    print(text)
    return {"train_s": train_s, "eval_s": eval_s}


if __name__ == "__main__":
    main()
