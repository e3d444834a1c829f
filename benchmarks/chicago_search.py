"""Choose MobCLIP's defaults on Chicago by blocked validation on DEVELOPMENT targets only.

The ten targets `bench_chicago` reports are never looked at here. Development targets are other Chi-SDOH tract
variables that are not inputs either (child poverty, uninsured, limited English, single parents, no vehicle,
transit and car commuting, commute time, disability, health literacy). Every variant is a config override; each
is trained with several seeds and scored twice:
- tracts (791): LightGBM with early stopping, 80/20 splits holding out whole community areas, 5 runs;
- community areas (77, population-weighted means): Ridge with leave-one-out alpha, splits holding out H3 res-6
  blocks, 10 runs.
The score of a variant is the mean R^2 over targets, averaged over seeds, with the spread over seeds.
Embeddings are kept in --work so an interrupted search resumes. Writes benchmarks/results/chicago_search.{md,csv}.
Run: .venv/bin/python -m benchmarks.chicago_search [--seeds 3] [--variants NAME ...] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmarks.chicago_data import DEV_TARGETS, available, community_areas, prepare_chicago
from mobclip_core.evaluation.harness import EmbeddingSource, Task, evaluate, to_markdown

RESULTS = Path(__file__).parent / "results"
LOG_MARK = "<!-- the search log below"  # chicago_search.md: what follows is kept when the table is rewritten

PAPER = {"preset": "paper"}
BASE = {"train": {"output": "fused", "propagate_modalities": True, "layers": 4}, "mobility": {"spatial_weight": 1.0}}


def _with(section: str, **values) -> dict:
    """BASE with some options of one section changed."""
    out = {k: dict(v) for k, v in BASE.items()}
    out.setdefault(section, {}).update(values)
    return out


VARIANTS: dict[str, dict] = {
    # name: {"preset": ..., "train": {...}, "mobility": {...}, "line": {...}, "resolution": int}; in running order
    "default (fused, propagated, 4 layers, spatial 1)": BASE,
    "paper (mobility tower, 2 layers, no spatial links)": PAPER,
    "default, cell only (context_m = [])": _with("train", context_m=[]),
    "default, no spatial links": _with("mobility", spatial_weight=0.0),
    "default, 2 layers": _with("train", layers=2),
    "paper + fused towers": {"preset": "paper", "train": {"output": "fused"}},
    "paper + fused, propagated towers": {"preset": "paper", "train": {"output": "fused", "propagate_modalities": True}},
    "default, 6 layers": _with("train", layers=6),
    "default, 8 layers": _with("train", layers=8),
    "default, spatial 0.3": _with("mobility", spatial_weight=0.3),
    "default, spatial 3": _with("mobility", spatial_weight=3.0),
    "default, frozen LINE": _with("train", freeze_nodes=True),
    "default, edge dropout 0.2": _with("train", edge_dropout=0.2),
    "default, learnable temperature": _with("train", learnable_temperature=True),
    "default, temperatures halved (POI 0.25, demographics 0.35)": _with(
        "train", temperatures={"poi": 0.25, "demographics": 0.35, "image": 0.1}
    ),
    "default, temperatures 0.1": _with("train", temperatures={"poi": 0.1, "demographics": 0.1, "image": 0.1}),
    "default, node lr 1e-3 (= lr, the default before 2026-12)": _with("train", node_lr=1e-3),
    "default, node lr 3e-4": _with("train", node_lr=3e-4),
    "default, node weight decay 0.1": _with("train", node_weight_decay=0.1),
    "default, lr 3e-3": _with("train", lr=3e-3),
    "default, lr 3e-4": _with("train", lr=3e-4),
    "default, weight decay 1e-2": _with("train", weight_decay=1e-2),
    "default, weight decay 1e-4": _with("train", weight_decay=1e-4),
    "default, weight decay 1e-1": _with("train", weight_decay=1e-1),
    "default, batch 256": _with("train", batch_size=256),
    "default, batch 4096": _with("train", batch_size=4096),
    "default, batch 4096, 300 epochs": _with("train", batch_size=4096, epochs=300),
    "default, 200 epochs": _with("train", epochs=200),
    "default, H3 res 8": {**BASE, "resolution": 8},
    "default, LINE 200 samples/edge": {**BASE, "line": {"samples_per_edge": 200}},
    "default, LINE 5 negatives (the default before 2026-12-03)": {**BASE, "line": {"negatives": 5}},
    "default, LINE 20 negatives": {**BASE, "line": {"negatives": 20}},
    "default, LINE first + second order": {**BASE, "line": {"order": "both"}},
}


def variant_config(base_raw: dict, spec: dict, base_dir: Path):
    """The Chicago config with a variant's overrides (and preset) applied, validated like a config file."""
    from mobclip_core.config import config_from_dict

    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base_raw.items()}
    for key, value in spec.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return config_from_dict(raw, base_dir=base_dir)


def run_key(cfg, seed: int) -> str:
    """Cache key of one training: the resolved settings (not the override text), so a changed default retrains."""
    from dataclasses import asdict

    settings = {"resolution": cfg.resolution, "seed": seed}
    settings.update({name: asdict(getattr(cfg, name)) for name in ("train", "line", "mobility")})
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def train_variant(cfg, seed: int, cache: Path):
    from mobclip_core.dataset import RegionDataset
    from mobclip_core.modalities.build import build_region_dataset
    from mobclip_core.training import train_mobclip

    ds_dir = cache / f"dataset-res{cfg.resolution}"
    if (ds_dir / "metadata.json").exists():
        ds = RegionDataset.load(ds_dir)
    else:
        ds = build_region_dataset(cfg)
        ds.save(ds_dir)
    return train_mobclip(
        ds,
        replace(cfg.train, seed=seed),
        cfg.line,
        sampling=cfg.mobility.sampling,
        ratio=cfg.mobility.ratio,
        spatial_weight=cfg.mobility.spatial_weight,
        cache_dir=cache / "line",
    )


def score(tables: dict[str, pd.DataFrame], tracts, areas, runs: int = 5, resolution: int = 9) -> pd.DataFrame:
    """Mean dev R^2 per table at tract level (LightGBM) and community-area level (Ridge), blocked splits; a polygon's
    features are the mean over its cells of ``resolution`` (the tables' own)."""
    sources = [EmbeddingSource(k, v) for k, v in tables.items()]
    tract_tasks = [
        Task(c, "admin", tracts[c].astype(float), groups=tracts["commarea"], polygons=tracts) for c in DEV_TARGETS
    ]
    area_tasks = [Task(c, "admin", areas[c].astype(float), polygons=areas, block_resolution=6) for c in DEV_TARGETS]
    t = evaluate(sources, tract_tasks, resolution=resolution, runs=runs, splits=("blocked",), early_stopping=50)
    a = evaluate(sources, area_tasks, resolution=resolution, runs=2 * runs, splits=("blocked",), model="ridge")
    return pd.DataFrame(
        {
            "tracts (LightGBM)": t.groupby("source", sort=False).r2_mean.mean(),
            "community areas (Ridge)": a.groupby("source", sort=False).r2_mean.mean(),
        }
    )


def main() -> pd.DataFrame:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/mobclip-chicago-search")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    args = p.parse_args()
    if not available():
        print("Chicago data not found (../shared/data/chicago or $MOBCLIP_CHICAGO): skipped")
        return pd.DataFrame()
    import tomllib

    import geopandas as gpd

    work = Path(args.work)
    cfg_path = prepare_chicago(work / "inputs")
    base_raw = tomllib.loads(cfg_path.read_text())

    tracts = gpd.read_file(work / "inputs" / "tracts.gpkg")
    areas = community_areas(tracts, DEV_TARGETS)
    rows = []
    for name in args.variants:
        spec = VARIANTS[name]
        cfg = variant_config(base_raw, spec, cfg_path.parent)
        per_seed = []
        for seed in range(args.seeds):
            slug = run_key(cfg, seed)
            path = work / "embeddings" / f"{slug}.parquet"
            if path.exists():
                emb = pd.read_parquet(path)
            else:
                t0 = time.perf_counter()
                res = train_variant(cfg, seed, work / "cache")
                emb = res.embeddings
                path.parent.mkdir(parents=True, exist_ok=True)
                emb.to_parquet(path)
                print(f"{name} seed {seed}: best epoch {res.best_epoch}, {time.perf_counter() - t0:.0f} s", flush=True)
            scored = work / "scores" / f"{slug}-runs{args.runs}.json"  # an interrupted search keeps its scores
            if scored.exists():
                per_seed.append(pd.Series(json.loads(scored.read_text())))
            else:
                row = score({name: emb}, tracts, areas, args.runs, cfg.resolution).iloc[0]
                scored.parent.mkdir(parents=True, exist_ok=True)
                scored.write_text(json.dumps(row.to_dict()))
                per_seed.append(row)
        s = pd.DataFrame(per_seed)
        rows.append({"variant": name, **{f"{c} mean": s[c].mean() for c in s}, **{f"{c} sd": s[c].std() for c in s}})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "chicago_search.csv", index=False)
    specs = {n: VARIANTS[n] for n in args.variants}
    md = RESULTS / "chicago_search.md"
    log = md.read_text() if md.exists() else ""
    md.write_text(  # the generated table; the hand-written search log after LOG_MARK stays
        f"Chicago development targets ({', '.join(DEV_TARGETS)}), {args.seeds} training seeds; mean R^2 over "
        "targets, averaged over seeds (sd over seeds).\n\n"
        + to_markdown(table.round(3))
        + "\nVariants (config overrides):\n\n```json\n"
        + json.dumps(specs, indent=1, default=str)
        + "\n```\n\n"
        + (log[log.index(LOG_MARK) :] if LOG_MARK in log else "")
    )
    print(table.round(3).to_string())
    return table


if __name__ == "__main__":
    main()
