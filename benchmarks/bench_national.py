"""National-scale dry run: ~200,000 res-6 cells through graph build, LINE, training and export, time and peak memory
per stage, and what the paper's 1.2 billion edges would cost on one machine and on a cluster.

Synthetic data of the paper's shape (``mobclip_core.synthetic``): 600,000 places over a 30 x 30 degree box around
the middle of the contiguous US (about 206,000 distinct res-6 cells, planted communities), activity records
streamed in chunks into the out-of-core co-presence builder (records are never all in memory; beyond its budget
the builder spills to disk). LINE is timed on the full graph for a bounded number of samples, training for one
epoch on the top-k sampled graph blended with spatial links (the defaults), then the four export files are
written. Each stage runs in its own child process, so each peak RSS is that stage's own.

Everything at 1.2 billion edges is an estimate: measured cost per unit (record, edge sample, sampled edge) times
the paper's size, assuming the linear cost each stage shows; the README says which numbers are which.
Run: .venv/bin/python -m benchmarks.bench_national [--records 1e7] [--line-samples 1e8] [--work DIR] [--fresh]
(about 35 minutes on 2 cores; stages already measured in --work are kept, so an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "national.md"
RESOLUTION = 6
PLACES, SPAN_DEG, CENTER, COMMUNITIES = 600_000, 30.0, (-98.0, 39.0), 50
PAPER_EDGES = 1.2e9  # undirected edges of the paper's national graph
PAPER_EPOCHS = 50  # epochs to the best validation loss plus patience, about what Chicago took
LINE_SAMPLES_PER_EDGE = 200.0  # LineConfig default


def _places():
    from mobclip_core.synthetic import synthetic_places

    return synthetic_places(
        PLACES, resolution=RESOLUTION, n_communities=COMMUNITIES, center=CENTER, span_deg=SPAN_DEG, seed=0
    )


def stage_graph(work: Path, records: int) -> dict:
    """Records streamed chunk by chunk into the co-presence builder (memory budget 1 GiB, spills beyond)."""
    from mobclip_core.modalities import CopresenceGraphBuilder
    from mobclip_core.synthetic import synthetic_records

    places = _places()
    builder = CopresenceGraphBuilder(RESOLUTION, memory_budget_mb=1024, spill_dir=work)
    spent = 0.0
    for chunk in synthetic_records(records, places, chunk_rows=2_000_000, seed=0):
        t0 = time.perf_counter()
        builder.add_cells(chunk.person_id.to_numpy(), chunk.timestamp.to_numpy(), chunk.cell.to_numpy())
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = builder.finish()
    spent += time.perf_counter() - t0
    graph.save(work / "graph.npz")
    return {"seconds": spent, "records": records, "cells": graph.n_cells, "edges": graph.n_edges}


def stage_line(work: Path, samples: int) -> dict:
    """LINE (numba engine, every core) on the full graph for ``samples`` edge samples."""
    from mobclip_core.modalities import MobilityGraph
    from mobclip_core.models.line import train_line

    graph = MobilityGraph.load(work / "graph.npz")
    res = train_line(graph.adjacency, dim=128, samples=samples, seed=0)
    return {"seconds": res.seconds, "samples": samples, "samples_per_s": res.samples_per_second}


def _dataset(graph):
    """The graph with POI-like (64-d, community-structured) and demographic (16-d) features per cell."""
    import pandas as pd

    from mobclip_core.dataset import RegionDataset
    from mobclip_core.grid import cells_to_strings

    rng = np.random.default_rng(0)
    places = _places().drop_duplicates("cell").set_index("cell")
    community = places.community.reindex(graph.cells).fillna(0).to_numpy(int)
    index = pd.Index(cells_to_strings(graph.cells), name="h3_cell")
    centers = rng.normal(size=(COMMUNITIES, 64))
    poi = pd.DataFrame(centers[community] + rng.normal(size=(graph.n_cells, 64)), index=index).add_prefix("poi_")
    demo = pd.DataFrame(rng.dirichlet(np.ones(16), graph.n_cells), index=index).add_prefix("demo_")
    return RegionDataset.from_parts(graph, {"poi": poi, "demographics": demo})


def stage_train(work: Path) -> dict:
    """One epoch of MobCLIP with the default options (LINE kept minimal here: it is timed on its own)."""
    from mobclip_core.config import LineConfig, MobilityConfig, TrainConfig
    from mobclip_core.modalities import MobilityGraph
    from mobclip_core.training import train_mobclip
    from mobclip_core.training.data import blend_spatial

    graph = MobilityGraph.load(work / "graph.npz")
    ds = _dataset(graph)
    mob = MobilityConfig()
    sampled = blend_spatial(graph.top_k(mob.ratio), mob.spatial_weight)
    t0 = time.perf_counter()
    res = train_mobclip(
        ds,
        TrainConfig(epochs=1, patience=0),
        LineConfig(samples_per_edge=1e-3),  # the floor of 1e5 samples: LINE is timed in its own stage
        ratio=mob.ratio,
        spatial_weight=mob.spatial_weight,
    )
    res.embeddings.to_parquet(work / "embeddings.parquet")
    return {
        "seconds": time.perf_counter() - t0,
        "epoch_s": float(res.history.seconds.iloc[0]),
        "sampled_directed_edges": int(sampled.adjacency.nnz),
        "cells": graph.n_cells,
    }


def stage_export(work: Path) -> dict:
    """GeoParquet, GeoPackage, multi-band GeoTIFF and PCA RGB GeoTIFF of the cell embeddings."""
    import pandas as pd

    from mobclip_core.export import export_all

    emb = pd.read_parquet(work / "embeddings.parquet")
    t0 = time.perf_counter()
    files = export_all(emb, work / "export")
    return {
        "seconds": time.perf_counter() - t0,
        "rows": len(emb),
        "mib": sum(p.stat().st_size for p in files.values()) / 2**20,
    }


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=("graph", "line", "train", "export"))
    p.add_argument("--records", type=float, default=1e7)
    p.add_argument("--line-samples", type=float, default=1e8)
    p.add_argument("--work", default="/tmp/mobclip-national")
    p.add_argument("--fresh", action="store_true", help="measure every stage again (else earlier ones are kept)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.stage == "graph":
        return stage_graph(work, int(args.records))
    if args.stage == "line":
        return stage_line(work, int(args.line_samples))
    if args.stage == "train":
        return stage_train(work)
    if args.stage == "export":
        return stage_export(work)
    from benchmarks._util import run_child

    out = {}
    extra = ["--records", str(args.records), "--line-samples", str(args.line_samples), "--work", str(work)]
    for stage in ("graph", "line", "train", "export"):
        done = work / f"{stage}.json"  # a stage measured earlier in this work folder is kept (the run resumes)
        if done.exists() and not args.fresh:
            out[stage] = json.loads(done.read_text())
        else:
            out[stage] = run_child("benchmarks.bench_national", "--stage", stage, *extra)
            done.write_text(json.dumps(out[stage]))
        print(stage, json.dumps(out[stage]), flush=True)
    report(out)
    return out


def report(m: dict) -> None:
    """Measured table and the extrapolation to the paper's 1.2 billion edges."""
    g, line, tr, ex = m["graph"], m["line"], m["train"], m["export"]
    edges = g["edges"]
    scale = PAPER_EDGES / edges
    line_full_s = LINE_SAMPLES_PER_EDGE * 2 * edges / line["samples_per_s"]
    line_paper_s = LINE_SAMPLES_PER_EDGE * 2 * PAPER_EDGES / line["samples_per_s"]
    sampled_share = tr["sampled_directed_edges"] / (2 * edges)
    # training cost per epoch follows the sampled edges (sparse products); cells stay ~200,000
    train_paper_s = tr["epoch_s"] * scale * PAPER_EPOCHS
    graph_paper_s = g["seconds"] * scale
    csr_gib = 2 * PAPER_EDGES * (4 + 4) / 2**30  # int32 column + float32 weight per directed edge
    cores = os.cpu_count()

    def hours(s: float) -> str:
        return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min" if s >= 60 else f"{s:,.1f} s"

    lines = [
        "# National-scale dry run (synthetic, 200,000 res-6 cells)",
        "",
        f"`python -m benchmarks.bench_national` on {cores} cores, {time.strftime('%Y-%m-%d')}. "
        f"{g['records']:,} synthetic activity records over {g['cells']:,} res-6 cells gave {edges:,} undirected "
        f"co-presence edges ({2 * edges / g['cells']:,.0f} links per cell). Each stage in its own process.",
        "",
        "| stage | work | time (measured) | peak memory (measured) |",
        "|---|---|---|---|",
        f"| graph build (streamed, out of core) | {g['records']:,} records -> {edges:,} edges | {hours(g['seconds'])} "
        f"({g['records'] / g['seconds'] / 1e6:.2f} M records/s) | {g['peak_rss_mib']:,.0f} MiB |",
        f"| LINE (numba, {cores} threads) | {line['samples']:,.0f} edge samples | {hours(line['seconds'])} "
        f"({line['samples_per_s'] / 1e6:.2f} M samples/s) | {line['peak_rss_mib']:,.0f} MiB |",
        f"| MobCLIP training, 1 epoch (defaults) | {tr['cells']:,} cells, {tr['sampled_directed_edges']:,} sampled "
        f"directed links | {hours(tr['epoch_s'])} per epoch | {tr['peak_rss_mib']:,.0f} MiB |",
        f"| export (4 files) | {ex['rows']:,} cells, {ex['mib']:,.0f} MiB written | {hours(ex['seconds'])} "
        f"| {ex['peak_rss_mib']:,.0f} MiB |",
        "",
        f"Full LINE on this graph ({LINE_SAMPLES_PER_EDGE:.0f} samples per directed edge) would take "
        f"{hours(line_full_s)} (estimated from the measured rate).",
        "",
        "## At the paper's 1.2 billion edges (estimated)",
        "",
        "Each stage's measured cost per unit times the paper's size: graph build linear in edges (the records "
        "that make them), LINE linear in edge samples, a training epoch linear in sampled edges "
        f"(sampled here: {sampled_share:.0%} of directed links; cells stay ~200,000), {PAPER_EPOCHS} epochs. "
        "A cluster of N such machines divides graph build (the Spark engine) and training (torchrun, data "
        "parallel) by at most N; LINE's compiled engine is single-machine, so on a cluster LINE runs on the torch "
        "engine under torchrun, or on one large machine (its rate grows with cores).",
        "",
        "| stage | one machine like this | 16 machines (ideal scaling) | memory |",
        "|---|---|---|---|",
        f"| graph build | {hours(graph_paper_s)} | {hours(graph_paper_s / 16)} | bounded by the builder's budget "
        "(spills to disk) |",
        f"| LINE | {hours(line_paper_s)} | {hours(line_paper_s / 16)} | adjacency {csr_gib:,.0f} GiB + "
        f"{2 * 200_000 * 128 * 4 / 2**20:,.0f} MiB vectors |",
        f"| training ({PAPER_EPOCHS} epochs) | {hours(train_paper_s)} | {hours(train_paper_s / 16)} | sampled "
        f"adjacency {csr_gib * sampled_share:,.0f} GiB (or on disk: `[train] disk_block_rows`) |",
        f"| export | {hours(ex['seconds'])} (cells, not edges, set its size) | - | {ex['peak_rss_mib']:,.0f} MiB |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
