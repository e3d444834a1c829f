"""Real-data benchmark on Chicago: MobCLIP against the model's own inputs unlearned and the location encoders.

Inputs (../shared/data/chicago, see benchmarks/chicago_data.py): taxi flows between tracts spread to H3 res-9
cells, supermarket and liquor-store POIs, tract age structure. Targets: the ten Chi-SDOH tract variables in
``TARGETS`` (never inputs, never used to choose defaults; ``chicago_search`` chose them on other variables).

Two levels, blocked splits first:
- tracts (791): LightGBM with the public protocol's fixed 1,000 trees, 10 runs of 80/20 splits; blocked splits
  hold out whole community areas; tract features are the mean of its cells' features;
- community areas (77, population-weighted tract means of the same targets): Ridge with its penalty chosen by
  leave-one-out inside each training split, 10 runs; blocked splits hold out H3 res-6 blocks.

Sources: the default MobCLIP, the same model's embedding without its neighbourhood context (``[train] context_m
= []``) and with the neighbourhood weighted 0.85 (``context_weight``; alone and + coordinates), the paper's
setting (mobility tower only), MobCLIP + coordinates (raw, and as each location encoder codes them), MobCLIP +
its means over the surrounding H3 rings 2 and 4, the distilled coordinate encoder, the inputs per cell (LINE or a
flow SVD, with the POI and demographic features),
the inputs reduced to 128-d, the inputs propagated over the mobility graph and over the model's graph (mobility +
spatial links), the inputs + their ring means, LINE alone, and the location encoders (SH, Sphere2Vec, NeRF, raw
coordinates, GeoCLIP). A labelled variant trained with race/ethnicity shares as an extra input is reported apart.
Writes benchmarks/results/chicago.{md,csv,png} and chicago_areas.{csv,png}. Skips when the shared folder is absent.
Run: .venv/bin/python -m benchmarks.bench_chicago [--work DIR] [--runs 10] [--rescore SOURCE ...]
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.chicago_data import TARGETS, available, community_areas, prepare_chicago
from mobclip_core.config import load_config
from mobclip_core.encoders.baselines import baseline_encoders
from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
from mobclip_core.evaluation import input_baselines as ib
from mobclip_core.evaluation.harness import EmbeddingSource, Task, evaluate, summary_table, to_markdown, write_report
from mobclip_core.export import read_embeddings
from mobclip_core.grid import cell_centroids, strings_to_cells
from mobclip_core.pipeline import run_pipeline

RESULTS = Path(__file__).parent / "results"
LOCATION_ENCODERS = ("SH (L=10)", "Sphere2Vec sphereC+", "NeRF", "raw coordinates", "GeoCLIP")


def train(cfg_path: Path, preset: str | None = None):
    """Run the pipeline of a config (or of it under a preset); returns (run outputs, dataset, seconds, peak MiB)."""
    import tomllib

    from mobclip_core.config import config_from_dict
    from mobclip_core.dataset import RegionDataset

    cfg = load_config(cfg_path)
    if preset:
        raw = {**tomllib.loads(cfg_path.read_text()), "preset": preset}
        cfg = config_from_dict(raw, base_dir=cfg_path.parent)
        cfg = replace(cfg, output=f"{cfg.output}-{preset}")
    t0 = time.perf_counter()
    run = run_pipeline(cfg, progress=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return run, RegionDataset.load(run.dataset), seconds, peak


def sources_for(work: Path, runs: int) -> tuple[list[EmbeddingSource], dict]:
    cfg_path = prepare_chicago(work)
    run, ds, train_s, peak = train(cfg_path)
    table = read_embeddings(run.files["geoparquet"])
    paper, *_ = train(cfg_path, preset="paper")
    paper_table = read_embeddings(paper.files["geoparquet"])
    cfg = load_config(cfg_path)
    line = np.load(next((run.output / "cache").glob("line-*.npy")))
    lon, lat = cell_centroids(strings_to_cells(table.index.to_numpy()))
    t0 = time.perf_counter()
    distilled = DistilledEncoder(DistilConfig()).fit(lon, lat, table.to_numpy())
    distil_s = time.perf_counter() - t0
    distilled.save(work / "distilled")

    variants = context_variants(run.output, ds, table)
    tables = {
        "MobCLIP": table,
        "MobCLIP, cell only (context_m = [])": variants.pop("MobCLIP, cell only (context_m = [])"),
        "MobCLIP, paper setting": paper_table,
        **variants,
        **derived_tables(table),
        **input_tables(ds, line, cfg),
    }
    sources = [EmbeddingSource(name, t) for name, t in tables.items()]
    sources.insert(3, EmbeddingSource("MobCLIP distilled", encoder=lambda x, y: distilled.embed(x, y, outside="nan")))
    coders = baseline_encoders(sh_degree=10)
    sources += [EmbeddingSource(name, encoder=coders[name]) for name in LOCATION_ENCODERS if name in coders]
    race_cfg = prepare_chicago(work, demographics="age+race")
    race, race_ds, *_ = train(race_cfg)
    race_line = np.load(next((race.output / "cache").glob("line-*.npy")))
    sources += [
        EmbeddingSource("MobCLIP, + race/ethnicity input", read_embeddings(race.files["geoparquet"])),
        EmbeddingSource("inputs, + race/ethnicity input", ib.input_features(race_ds, race_line)),
    ]
    info = {"train_s": train_s, "peak_mib": peak, "distil_s": distil_s, "cells": len(table), "coverage": run.coverage}
    return sources, info


CONTEXT_WEIGHT_SMOOTH = 0.85  # chosen on the development targets under random splits (results/chicago_search.md)


def context_variants(output: Path, ds, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The same trained model's embedding exported with other neighbourhood settings, with no second training:
    without the context (``context_m = []``: what the context adds) and with the neighbourhood weighted
    ``CONTEXT_WEIGHT_SMOOTH`` (the setting README suggests for area-level targets), alone and with coordinates."""
    from mobclip_core.config import TrainConfig
    from mobclip_core.models.mobclip import MobCLIP

    model = MobCLIP.load(output / "checkpoint")
    cfg = TrainConfig()

    def export(context_m, weight) -> pd.DataFrame:
        emb = model.embed_dataset(ds, cfg.output, context_m=context_m, context_weight=weight)
        return pd.DataFrame(emb, index=table.index, columns=table.columns)

    smooth = export(cfg.context_m, CONTEXT_WEIGHT_SMOOTH)
    return {
        "MobCLIP, cell only (context_m = [])": export([], 0.0),
        f"MobCLIP, context_weight {CONTEXT_WEIGHT_SMOOTH}": smooth,
        f"MobCLIP, context_weight {CONTEXT_WEIGHT_SMOOTH} + coordinates": ib.with_coordinates(smooth),
    }


def derived_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The default embedding with free extras: the cell centre's coordinates (raw, and as each location encoder
    codes them: does the embedding add to that encoder?), the 1-2 km neighbourhood's means."""
    coders = baseline_encoders(sh_degree=10)
    return {
        "MobCLIP + coordinates": ib.with_coordinates(table),
        **{
            f"MobCLIP + {name}": ib.with_coordinates(table, coders[name])
            for name in LOCATION_ENCODERS
            if name in coders and name != "raw coordinates"
        },
        "MobCLIP + neighbourhood means": ib.with_neighbourhood(table),
    }


def input_tables(ds, line: np.ndarray, cfg) -> dict[str, pd.DataFrame]:
    """The unlearned baselines: the default run's inputs per cell, reduced, propagated, LINE alone."""
    from mobclip_core.training.data import blend_spatial

    inputs = ib.input_features(ds, line)
    model_graph = blend_spatial(ds.graph, cfg.mobility.spatial_weight)
    return {
        "inputs (LINE + POI + demographics)": inputs,
        "inputs (flow SVD + POI + demographics)": ib.input_features(ds, ib.flow_svd(ds.graph)),
        "inputs reduced to 128-d": ib.reduced(inputs, 128),
        "inputs + propagated over the mobility graph": pd.concat(
            [inputs, ib.propagated(inputs, ds.graph, cfg.train.layers)], axis=1
        ),
        "inputs + propagated over the model's graph": pd.concat(
            [inputs, ib.propagated(inputs, model_graph, cfg.train.layers)], axis=1
        ),
        "inputs + neighbourhood means": ib.with_neighbourhood(inputs),
        "LINE alone": ib.input_features(ds, line, modalities=[]),
    }


def _gain(new: float, base: float) -> str:
    """``new`` against ``base`` in percent, or as a difference of R^2 where a percentage of ``base`` means nothing."""
    return f"{new / base - 1:+.0%}" if base > 0 else f"{new - base:+.3f} R^2"


def headline(results: pd.DataFrame) -> list[str]:
    """The comparisons the issue asks for, per split."""
    means = results.groupby(["split", "source"]).r2_mean.mean()
    lines = []
    for split in ("blocked", "random"):
        m = means[split]
        raw = max(m["inputs (LINE + POI + demographics)"], m["inputs + propagated over the mobility graph"])
        model_graph = m["inputs + propagated over the model's graph"]
        loc = m[[s for s in LOCATION_ENCODERS if s in m]]
        lines.append(
            f"{split}: MobCLIP {m['MobCLIP']:.3f}; vs the better of inputs / inputs propagated over the mobility "
            f"graph {raw:.3f} ({m['MobCLIP'] / raw - 1:+.0%}); vs inputs propagated over the model's graph "
            f"{model_graph:.3f} ({m['MobCLIP'] / model_graph - 1:+.0%}); vs the best location encoder "
            f"({loc.idxmax()}) {loc.max():.3f} ({m['MobCLIP'] / loc.max() - 1:+.0%}); MobCLIP + coordinates "
            f"{m['MobCLIP + coordinates']:.3f}; distilled keeps {m['MobCLIP distilled'] / m['MobCLIP']:.0%}; "
            f"paper setting {m['MobCLIP, paper setting']:.3f}"
            + "".join(
                f"; {name} {m[name]:.3f}"
                for name in (
                    "MobCLIP, cell only (context_m = [])",
                    f"MobCLIP, context_weight {CONTEXT_WEIGHT_SMOOTH} + coordinates",
                    "MobCLIP + neighbourhood means",
                    "inputs + neighbourhood means",
                )
                if name in m
            )
        )
        pairs = {s: f"MobCLIP + {s}" if s != "raw coordinates" else "MobCLIP + coordinates" for s in loc.index}
        pairs = {s: p for s, p in pairs.items() if p in m}
        if pairs:
            with_loc = m[list(pairs.values())]
            lines.append(
                f"{split}, MobCLIP added to each location encoder's code: "
                + ", ".join(f"{s} {m[s]:.3f} -> {m[p]:.3f} ({_gain(m[p], m[s])})" for s, p in pairs.items())
                + f"; the best with MobCLIP ({with_loc.idxmax()}) {with_loc.max():.3f} against the best without "
                f"({loc.idxmax()}) {loc.max():.3f} ({_gain(with_loc.max(), loc.max())})"
            )
    return lines


def tasks(work: Path):
    import geopandas as gpd

    tracts = gpd.read_file(work / "tracts.gpkg")
    areas = community_areas(tracts, TARGETS)
    tract_tasks = [
        Task(code, "admin", tracts[code].astype(float), groups=tracts["commarea"], polygons=tracts) for code in TARGETS
    ]
    area_tasks = [
        Task(code, "admin", areas[code].astype(float), polygons=areas, block_resolution=6) for code in TARGETS
    ]
    return tract_tasks, area_tasks


def report(tract_results: pd.DataFrame, area_results: pd.DataFrame, header: str, early_stopping: int | None) -> str:
    """Write the CSVs and plots, and the Markdown with both levels and the headline comparisons."""
    RESULTS.mkdir(exist_ok=True)
    write_report(tract_results, RESULTS, stem="chicago")
    write_report(area_results, RESULTS, stem="chicago_areas")
    text = (
        header
        + "\n\n"
        + (
            "### Tracts: LightGBM, public protocol (1,000 trees); mean R^2 (sd over runs)\n\n"
            if early_stopping is None
            else f"### Tracts: LightGBM, early stopping ({early_stopping} rounds); mean R^2 (sd over runs)\n\n"
        )
        + to_markdown(summary_table(tract_results))
        + "\n"
        + "\n".join(f"- {line}" for line in headline(tract_results))
        + "\n\n### Community areas: Ridge (penalty by leave-one-out within each training split)\n\n"
        + to_markdown(summary_table(area_results))
        + "\n"
        + "\n".join(f"- {line}" for line in headline(area_results))
        + "\n"
    )
    (RESULTS / "chicago.md").write_text(text)
    return text


def rescore(work: Path, names: list[str], runs: int, early_stopping: int | None) -> str:
    """Score the named sources that need no training (unlearned baselines, the kept embedding with extras) from the
    run kept in ``work``, and put them in place of their rows in the results, or add them: after a fix to a
    baseline or a new one, without training everything again."""
    from mobclip_core.dataset import RegionDataset

    cfg = load_config(prepare_chicago(work))
    output = cfg.path(cfg.output)
    ds = RegionDataset.load(output / "dataset")
    line = np.load(next((output / "cache").glob("line-*.npy")))
    table = read_embeddings(output / "embeddings.parquet")
    tables = {**context_variants(output, ds, table), **derived_tables(table), **input_tables(ds, line, cfg)}
    unknown = set(names) - set(tables)
    if unknown:
        raise SystemExit(
            f"--rescore takes the sources computed from the kept run ({sorted(tables)}), not {sorted(unknown)}"
        )
    sources = [EmbeddingSource(name, tables[name]) for name in names]
    tract_tasks, area_tasks = tasks(work)
    new_tracts = evaluate(sources, tract_tasks, resolution=9, runs=runs, early_stopping=early_stopping)
    new_areas = evaluate(sources, area_tasks, resolution=9, runs=runs, model="ridge")

    def splice(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
        """``new``'s rows in place of the same sources' rows; a source new to the file goes where a full run puts
        it (the order of ``tables`` among the file's sources)."""
        order = list(dict.fromkeys(old.source))
        for name in (n for n in tables if n not in order):
            before = [n for n in list(tables)[: list(tables).index(name)] if n in order]
            order.insert(order.index(before[-1]) + 1 if before else len(order), name)
        out = pd.concat([old[~old.source.isin(names)], new], ignore_index=True)
        return out.sort_values("source", key=lambda c: c.map(order.index), kind="stable", ignore_index=True)

    tract_results = splice(pd.read_csv(RESULTS / "chicago.csv"), new_tracts)
    area_results = splice(pd.read_csv(RESULTS / "chicago_areas.csv"), new_areas)
    header = (RESULTS / "chicago.md").read_text().split("\n", 1)[0]
    note = f" Scored afterwards from the kept run, same protocol: {', '.join(names)}."
    return report(tract_results, area_results, header + ("" if note in header else note), early_stopping)


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/mobclip-chicago")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        help="LightGBM stops after N rounds without gain (default: 1,000 trees)",
    )
    p.add_argument(
        "--rescore",
        nargs="+",
        metavar="SOURCE",
        help="score only these unlearned baselines again (from the run kept in --work) and replace their rows",
    )
    args = p.parse_args()
    if not available():
        print("Chicago data not found (../shared/data/chicago or $MOBCLIP_CHICAGO): skipped")
        return {}
    work = Path(args.work)
    if args.rescore:
        print(rescore(work, args.rescore, args.runs, args.early_stopping))
        return {}
    sources, info = sources_for(work, args.runs)
    tract_tasks, area_tasks = tasks(work)
    t0 = time.perf_counter()
    tract_results = evaluate(
        sources, tract_tasks, resolution=9, runs=args.runs, early_stopping=args.early_stopping, progress=True
    )
    tract_s = time.perf_counter() - t0
    area_results = evaluate(sources, area_tasks, resolution=9, runs=args.runs, model="ridge")
    cov = info["coverage"]
    header = (
        f"Chicago: {len(tract_tasks[0].target)} tracts, {info['cells']} res-9 cells "
        f"({cov.get('cells_without_mobility', 0)} without any taxi link, {cov.get('share_without_mobility', 0):.1%}); "
        f"{args.runs} runs per split. Training the default {info['train_s']:.0f} s (peak RSS {info['peak_mib']:.0f} "
        f"MiB, this process), distillation {info['distil_s']:.0f} s; tract comparison {tract_s:.0f} s."
    )
    print(report(tract_results, area_results, header, args.early_stopping))
    return info


if __name__ == "__main__":
    main()
