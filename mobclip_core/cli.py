"""The ``mobclip`` command: one subcommand per step of sources -> cells -> features -> model -> embeddings."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from .exceptions import MissingDependencyError, MobClipError
from .options import Containment, Engine, PositionalEncoding, SpaceMethod, ZoneMethod, choices


def _cmd_demo(args) -> int:
    from .config import load_config
    from .demo import DEMO_CONFIG, make_demo_city
    from .evaluation.probe import zone_probe_table
    from .pipeline import run_pipeline

    out = Path(args.out)
    t0 = time.perf_counter()
    print(f"generating the synthetic demo city (seed {args.seed}) -> {out / 'data'}")
    city = make_demo_city(out / "data", seed=args.seed)
    _write_text(out / "data" / "mobclip.toml", DEMO_CONFIG)
    cfg = load_config(out / "data" / "mobclip.toml")
    run = run_pipeline(cfg, rebuild=True, progress=not args.quiet)
    table = zone_probe_table(run.embeddings, city)
    print(
        "\nzone recovery on the demo city (5-fold linear probe and 10-NN accuracy; random folds, and _blocked: H3 "
        "resolution-7 blocks held out whole; chance = majority share):"
    )
    print(table.to_string(index=False))
    print(f"\noutputs in {run.output}:")
    for kind, path in run.files.items():
        print(f"  {kind:10s} {path}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _write_text(path: Path, text: str) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _cmd_make_demo_data(args) -> int:
    from .demo import DEMO_CONFIG, make_demo_city

    city = make_demo_city(args.out, seed=args.seed, rings=args.rings)
    _write_text(Path(args.out) / "mobclip.toml", DEMO_CONFIG)
    print(f"demo city with {city.cells.size} cells written to {args.out} (config: {Path(args.out) / 'mobclip.toml'})")
    return 0


def _cmd_build(args) -> int:
    from .modalities.build import build_dataset

    result = build_dataset(args.config, args.out, progress=print)
    print(json.dumps(result["summary"], indent=2))
    print(f"dataset written to {result['dataset']}")
    return 0


def _cmd_pois(args) -> int:
    import geopandas as gpd

    from .geofile import write_geofile
    from .modalities.poi import poi_source_kind

    if Path(args.out).suffix.lower() not in (".parquet", ".gpkg"):  # before the read, which can take minutes
        raise MobClipError(f"--out {args.out}: name the output .parquet (GeoParquet) or .gpkg (GeoPackage)")
    path = Path(args.input)
    kind = poi_source_kind(path) if path.exists() else "layer"
    if kind == "osm":
        from .sources.osm import read_osm_pois as read
    elif kind == "overture":
        from .sources.overture import read_overture_places as read
    else:
        raise MobClipError(f"{path} is neither an OpenStreetMap .osm.pbf extract nor Overture places GeoParquet")
    pois = read(path, language=args.language, bbox=args.bbox)
    gdf = gpd.GeoDataFrame(pois, geometry=gpd.points_from_xy(pois["lon"], pois["lat"]), crs="EPSG:4326")
    kept = write_geofile(gdf, args.out, layer="pois")
    top = ", ".join(f"{c} {n}" for c, n in pois["category"].value_counts().head(8).items())
    print(f"{len(pois)} POIs from {path.name} ({kind}) -> {args.out}{_kept(kept, 'pois')}\nmost common: {top}")
    return 0


def _cmd_download(args) -> int:
    from tqdm.auto import tqdm

    from .sources.download import download

    bar = tqdm(unit="B", unit_scale=True, desc=args.url.rsplit("/", 1)[-1], disable=args.quiet)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    path = download(args.url, args.cache, sha256=args.sha256, md5=args.md5, name=args.name, progress=progress)
    bar.close()
    print(path)
    return 0


def _cmd_graph(args) -> int:
    from tqdm.auto import tqdm

    from .modalities.mobility.engines import build_graph_from_records
    from .sources import iter_records

    last = [0]
    with tqdm(unit="rec", unit_scale=True, desc="records") as bar:  # closed on error too: messages start a line

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
    if args.top_k:
        graph = graph.top_k(args.top_k)
    graph.save(args.out)
    print(json.dumps(graph.stats(), indent=2))
    return 0


def _cmd_tessellate(args) -> int:
    import geopandas as gpd

    from .geofile import write_geofile
    from .grid import cells_to_polygons, cells_to_strings, polygons_to_cells, to_wgs84
    from .io import reading
    from .sources import read_layer

    with reading(args.input, "polygon layer"):
        layer = read_layer(args.input)
    layer = to_wgs84(layer, what=str(args.input))
    pairs = polygons_to_cells(layer.geometry.values, args.resolution, containment=args.containment)
    cells = pairs["h3_cell"].drop_duplicates().to_numpy()
    gdf = gpd.GeoDataFrame({"h3_cell": cells_to_strings(cells)}, geometry=cells_to_polygons(cells), crs="EPSG:4326")
    kept = write_geofile(gdf, args.out, layer="cells")
    print(f"{len(gdf)} cells at resolution {args.resolution} -> {args.out}{_kept(kept, 'cells')}")
    return 0


def _threads(text: str) -> int:
    """argparse type of --threads: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0 = every usable core), got {text!r}")
    return value


def _cmd_train(args) -> int:
    from .config import load_config
    from .pipeline import run_pipeline

    cfg = load_config(args.config)
    if args.threads is not None:
        cfg.train.threads = args.threads
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


def _cmd_distil(args) -> int:
    from .encoders.distilled import DistilConfig, distil_table
    from .export import read_embeddings
    from .training.trainer import check_device

    check_device(args.device, "--device")  # before the table is read
    source = Path(args.embeddings)
    table = read_embeddings(source / "embeddings.parquet" if source.is_dir() else source)
    cfg = DistilConfig(epochs=args.epochs, seed=args.seed, posenc=args.posenc)
    done = distil_table(table, args.out, cfg, device=args.device, progress=not args.quiet)
    print(
        f"distilled {len(table)} cells x {table.shape[1]} dimensions into a coordinate encoder "
        f"({cfg.posenc}, {len(done.encoder.history)} epochs; R2 of the teacher's embeddings on its own cells "
        f"{done.r2:.3f}) -> {done.path}\nuse it in QGIS: 'Attach embeddings to features' with the model "
        f"{done.path / 'model.pth'}, or in Python: DistilledEncoder.load({str(done.path)!r})"
    )
    return 0


# --- analysis: similar places, zones, a look inside, change --------------------------------------------------------
def _read_wgs84(path: str, what: str):
    from .grid import to_wgs84
    from .io import reading
    from .sources import read_layer

    with reading(path, what):
        layer = read_layer(path)
    return to_wgs84(layer, what=str(path))


def _reference_geometries(path: str) -> list:
    return list(_read_wgs84(path, "reference layer").geometry.values)


def _poi_points(path: str, category: str):
    """A POI layer as lon, lat, category (polygons by their representative point)."""
    import pandas as pd

    from .exceptions import InvalidInputError

    layer = _read_wgs84(path, "POI layer")
    if category not in layer.columns:
        raise InvalidInputError(f"{path} has no column {category!r} (use --category); it has {list(layer.columns)}")
    points = layer.geometry.representative_point()
    return pd.DataFrame(
        {"lon": points.x.to_numpy(), "lat": points.y.to_numpy(), "category": layer[category].to_numpy()}
    )


def _cmd_similar(args) -> int:
    from shapely.geometry import Point

    from .analysis.outputs import write_cell_layer, write_cell_raster
    from .analysis.similarity import similar_cells
    from .embeddings import read_embedding_table

    table = read_embedding_table(args.embeddings)
    geometries = [Point(lon, lat) for lon, lat in args.point or []]
    if args.places:
        geometries += _reference_geometries(args.places)
    result = similar_cells(table, cells=args.cell, geometries=geometries or None, top_n=args.top, center=args.center)
    frame = result.frame()
    kept = write_cell_layer(frame, args.out, layer="similarity")
    if kept:  # on stderr: stdout keeps what the command printed before (a JSON summary for change)
        print(f"{args.out}{_kept(kept, 'similarity')}", file=sys.stderr)
    if args.raster:
        write_cell_raster(frame["similarity"], args.raster)
    if args.ranking:
        _write_csv(result.top, args.ranking)
    print(f"{int(result.is_reference.sum())} reference cells; the {len(result.top)} most similar others:")
    print(result.top.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _kept(others: list[str], layer: str) -> str:
    """What writing ``layer`` into an existing GeoPackage left there besides it, for the command's last line."""
    if not others:
        return ""
    return f" (layer '{layer}'; the file's other layers kept: {', '.join(others)})"


def _write_csv(frame, path) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _cmd_zones(args) -> int:
    import pandas as pd

    from .analysis.describe import table_zones
    from .analysis.outputs import write_cell_layer, write_cell_raster
    from .embeddings import read_embedding_table

    table = read_embedding_table(args.embeddings)
    pois = _poi_points(args.pois, args.category) if args.pois else None
    k = args.k if args.k == "auto" else int(args.k)
    zones = table_zones(
        table,
        dataset=args.dataset,
        pois=pois,
        method=args.method,
        k=k,
        k_range=(2, args.k_max),
        criterion=args.criterion,
        min_cluster_size=args.min_size,
        seed=args.seed,
    )
    frame = pd.DataFrame({"zone": zones.labels}, index=table.index)
    frame["zone_label"] = [zones.name_of(z) for z in zones.labels]
    kept = write_cell_layer(frame, args.out, layer="zones")
    if kept:  # on stderr: stdout keeps what the command printed before (a JSON summary for change)
        print(f"{args.out}{_kept(kept, 'zones')}", file=sys.stderr)
    if args.raster:
        write_cell_raster(frame["zone"], args.raster)
    if args.profiles:
        _write_csv(zones.profiles.reset_index(), args.profiles)
    if zones.scores is not None:
        print(f"k-means scores per number of zones (the best {args.criterion.replace('bic', 'BIC')} is kept):")
        print(zones.scores.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for note in zones.notes:
        print(f"Note: {note}")
    print(f"{zones.k} zones ({args.method}); {int((zones.labels < 0).sum())} places in no zone")
    print(zones.profiles.to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


def _cmd_space(args) -> int:
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from .analysis.space import embedding_space
    from .embeddings import read_embedding_table
    from .geofile import write_geofile
    from .rasterize import PcaColourScale

    table = read_embedding_table(args.embeddings)
    xy, method = embedding_space(table.to_numpy(), method=args.method, seed=args.seed)
    scale = PcaColourScale.load(args.scale) if args.scale else PcaColourScale.fit(table.to_numpy())
    rgb = scale.transform(table.to_numpy())
    ok = np.isfinite(xy).all(axis=1)
    colours = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb[ok]]
    frame = pd.DataFrame({"h3_cell": table.index[ok], "x": xy[ok, 0], "y": xy[ok, 1], "colour": colours})
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame.x, frame.y), crs=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided")  # embedding space has no CRS
        kept = write_geofile(gdf, args.out, layer="embedding_space")
    print(f"{len(frame)} places placed by {method.upper()} -> {args.out}{_kept(kept, 'embedding_space')}")
    return 0


def _cmd_pca_rgb(args) -> int:
    from .embeddings import read_embedding_table
    from .export import write_image
    from .rasterize import PcaColourScale, embedding_image

    table = read_embedding_table(args.embeddings)
    scale = PcaColourScale.load(args.scale) if args.scale else PcaColourScale.fit(table.to_numpy())
    write_image(
        embedding_image(table, pixels_per_cell=args.pixels_per_cell, rgb=True, colour_scale=scale), args.out, rgb=True
    )
    if args.save_scale:
        scale.save(args.save_scale)
    print(f"PCA RGB on {'the scale of ' + str(args.scale) if args.scale else 'its own scale'} -> {args.out}")
    return 0


def _cmd_change(args) -> int:
    from .analysis.change import embedding_change
    from .analysis.outputs import write_cell_layer, write_cell_raster
    from .embeddings import read_embedding_table

    change = embedding_change(read_embedding_table(args.before), read_embedding_table(args.after))
    kept = write_cell_layer(change.distance.to_frame(), args.out, layer="change")
    if kept:  # on stderr: stdout keeps what the command printed before (a JSON summary for change)
        print(f"{args.out}{_kept(kept, 'change')}", file=sys.stderr)
    if args.raster:
        write_cell_raster(change.distance, args.raster)
    print(json.dumps(change.summary(), indent=2))
    return 0


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip demo`: the synthetic demo city, end to end, to see the tool work with no data of one's own."""
    s = sub.add_parser("demo", help="generate the synthetic demo city and run the whole pipeline on it")
    s.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_demo)


def _add_make_demo_data_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip make-demo-data`: only the demo city's inputs and config, to edit before building."""
    s = sub.add_parser("make-demo-data", help="only write the synthetic demo city's inputs and a config")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rings", type=int, default=14, help="city radius in H3 grid rings (631 cells at 14)")
    s.set_defaults(func=_cmd_make_demo_data)


def _add_build_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip build`: the region dataset alone, to inspect before training."""
    s = sub.add_parser("build", help="sources -> region dataset (cells, graph, aligned modality features)")
    s.add_argument("config", help="TOML config naming inputs and resolution")
    s.add_argument("--out", help="dataset folder (default: <output>/dataset)")
    s.set_defaults(func=_cmd_build)


def _add_pois_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip pois`: POIs from OSM or Overture as a layer, to look at before training on them."""
    s = sub.add_parser(
        "pois", help="OpenStreetMap .osm.pbf or Overture places -> POI GeoParquet (name, category) to look at in QGIS"
    )
    s.add_argument("input", help=".osm.pbf extract, or Overture places GeoParquet (file or folder)")
    s.add_argument("--out", required=True, help="output GeoParquet (.parquet) or GeoPackage (.gpkg)")
    s.add_argument("--language", default=None, help="names in this language where present (OSM name:xx), e.g. fi")
    s.add_argument("--bbox", type=float, nargs=4, metavar=("WEST", "SOUTH", "EAST", "NORTH"), default=None)
    s.set_defaults(func=_cmd_pois)


def _add_download_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip download`: one input file, checked by checksum, so runs start from known data."""
    s = sub.add_parser(
        "download", help="fetch one file (an OSM extract, a GTFS feed...) into a cache folder, checked by checksum"
    )
    s.add_argument("url")
    s.add_argument("--cache", default="downloads", help="cache folder (default: ./downloads)")
    s.add_argument("--sha256", default=None, help="the file's published SHA-256")
    s.add_argument("--md5", default=None, help="or its MD5 (Geofabrik publishes <extract>.osm.pbf.md5)")
    s.add_argument("--name", default=None, help="file name in the cache (default: the URL's)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_download)


def _add_graph_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip graph`: the weekly co-presence graph alone, streamed from the records."""
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
        choices=choices(Engine),
        default="memory",
        help="memory: streaming numpy/scipy (spills past a budget); duckdb: out of core; spark: clusters",
    )
    s.set_defaults(func=_cmd_graph)


def _add_tessellate_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip tessellate`: a polygon layer as H3 cell polygons, to see the grid in QGIS."""
    s = sub.add_parser("tessellate", help="polygon layer -> H3 cell polygons (GeoPackage)")
    s.add_argument("input")
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--containment", choices=choices(Containment), default=Containment.CENTER.value)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_tessellate)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip train`: the whole run from a config: build if needed, train, export."""
    s = sub.add_parser("train", help="build (if needed), train LINE + MobCLIP, export embeddings")
    s.add_argument("config")
    s.add_argument("--rebuild", action="store_true", help="rebuild the dataset even if inputs are unchanged")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    s.add_argument(
        "--threads",
        type=_threads,
        help="CPU threads for LINE and training (default: [train] threads of the config; 0 = every usable core)",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_train)


def _add_distil_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip distil`: a coordinate encoder, so places between or without cells get embeddings too."""
    from .encoders.distilled import DistilConfig

    s = sub.add_parser(
        "distil",
        help="embedding table or run folder -> a coordinate encoder (lon, lat -> embedding) for anywhere in its extent",
    )
    s.add_argument("embeddings", help="a run's output folder (its embeddings.parquet) or an embedding table")
    s.add_argument("--out", required=True, help="folder for the distilled model (model.pth + config.json)")
    s.add_argument("--epochs", type=int, default=DistilConfig.epochs, help="at most this many epochs (early stop)")
    s.add_argument(
        "--posenc", choices=choices(PositionalEncoding), default=DistilConfig.posenc, help="sh: the published layout"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--device", default="auto", help='"auto" (a GPU when torch sees one, else the CPU), "cpu", "cuda" or "cuda:N"'
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_distil)


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip export`: an embedding table in the GIS formats."""
    s = sub.add_parser("export", help="embedding table -> GeoParquet, GeoPackage, GeoTIFF, PCA RGB GeoTIFF")
    s.add_argument("embeddings")
    s.add_argument("--out", required=True)
    s.add_argument("--stem", default="embeddings")
    s.set_defaults(func=_cmd_export)


def _add_similar_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip similar`: places like the reference ones."""
    s = sub.add_parser("similar", help="embedding table + reference places -> similarity of every cell, top-N")
    s.add_argument("embeddings", help="embedding table (.parquet or .gpkg)")
    s.add_argument("--cell", action="append", help="a reference H3 cell id (repeatable)")
    s.add_argument("--point", type=float, nargs=2, action="append", metavar=("LON", "LAT"), help="a reference point")
    s.add_argument("--places", help="a layer of reference points or polygons")
    s.add_argument("--top", type=int, default=10, help="how many of the most similar cells to list (default 10)")
    s.add_argument("--center", action="store_true", help="subtract the mean embedding first (more contrast)")
    s.add_argument("--out", required=True, help="cells with similarity and rank (.gpkg or .parquet)")
    s.add_argument("--raster", help="also the similarity as a GeoTIFF")
    s.add_argument("--ranking", help="also the top-N as CSV")
    s.set_defaults(func=_cmd_similar)


def _add_zones_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip zones`: functional zones with readable labels."""
    s = sub.add_parser("zones", help="embedding table -> functional zones (k-means or HDBSCAN) with readable labels")
    s.add_argument("embeddings")
    s.add_argument("--method", choices=choices(ZoneMethod), default=ZoneMethod.KMEANS.value)
    s.add_argument("--k", default="auto", help="number of zones, or 'auto' (the best --criterion in 2..--k-max)")
    s.add_argument("--k-max", type=int, default=12)
    s.add_argument("--criterion", choices=("silhouette", "bic"), default="silhouette", help="how --k auto picks k")
    s.add_argument("--min-size", type=int, default=None, help="HDBSCAN: smallest zone (default 2%% of places)")
    s.add_argument("--dataset", help="the region dataset folder the embeddings were trained on (describes zones)")
    s.add_argument("--pois", help="a POI layer to name each zone's typical categories")
    s.add_argument("--category", default="category", help="the POI layer's category column")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="cells with zone and zone_label (.gpkg or .parquet)")
    s.add_argument("--raster", help="also the zones as a GeoTIFF")
    s.add_argument("--profiles", help="also the zone profiles as CSV")
    s.set_defaults(func=_cmd_zones)


def _add_space_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip space`: the embedding space as a 2-D map, to see which cells the model finds alike."""
    s = sub.add_parser("space", help="embedding table -> 2-D map of the embedding space (UMAP or PCA) as points")
    s.add_argument("embeddings")
    s.add_argument("--method", choices=choices(SpaceMethod), default=SpaceMethod.AUTO.value)
    s.add_argument("--scale", help="colour the points on this saved PCA colour scale (see pca-rgb --save-scale)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="points (.gpkg) with h3_cell, x, y and colour")
    s.set_defaults(func=_cmd_space)


def _add_pca_rgb_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip pca-rgb`: a colour picture of the embeddings, comparable between tables on a shared scale."""
    s = sub.add_parser("pca-rgb", help="embedding table -> PCA RGB GeoTIFF, on its own or a saved colour scale")
    s.add_argument("embeddings")
    s.add_argument("--scale", help="apply this saved colour scale (JSON) instead of fitting one")
    s.add_argument("--save-scale", help="save the colour scale used (JSON) to colour other tables alike")
    s.add_argument("--pixels-per-cell", type=float, default=4.0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_pca_rgb)


def _add_change_parser(sub: argparse._SubParsersAction) -> None:
    """`mobclip change`: per-cell change between two embedding tables."""
    s = sub.add_parser("change", help="two embedding tables of the same cells -> per-cell change after alignment")
    s.add_argument("before")
    s.add_argument("after")
    s.add_argument("--out", required=True, help="cells with change (.gpkg or .parquet)")
    s.add_argument("--raster", help="also the change as a GeoTIFF")
    s.set_defaults(func=_cmd_change)


_SUBCOMMANDS = (
    _add_demo_parser,
    _add_make_demo_data_parser,
    _add_build_parser,
    _add_pois_parser,
    _add_download_parser,
    _add_graph_parser,
    _add_tessellate_parser,
    _add_train_parser,
    _add_distil_parser,
    _add_export_parser,
    _add_similar_parser,
    _add_zones_parser,
    _add_space_parser,
    _add_pca_rgb_parser,
    _add_change_parser,
)
"""Each subcommand's parser, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mobclip",
        description="MobCLIP location embeddings: build a region dataset from mobility, POIs, imagery and "
        "demographics, train the model, export embeddings. Every step reads one TOML config.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add_parser in _SUBCOMMANDS:
        add_parser(sub)
    return p


class _Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so every ``finally`` and staged output is cleaned up."""


def _terminate(signum, frame) -> None:
    raise _Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input ends in ``mobclip: error: ...`` and exit code 2, never a traceback."""
    args = build_parser().parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return args.func(args)
    except (MobClipError, MissingDependencyError) as exc:
        print(f"mobclip: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no: missing, unreadable, read-only, full
        detail = exc.strerror or str(exc) or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        print(
            f"mobclip: error: {detail}{where}. Check that the path exists and that you may read (inputs) or write "
            "(outputs) there, and that the disk has room",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("mobclip: interrupted; outputs being written were discarded, earlier ones are unchanged", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(
            f"mobclip: terminated by signal {exc.args[0]}; outputs being written were discarded, earlier ones are "
            "unchanged",
            file=sys.stderr,
        )
        return 128 + int(exc.args[0])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
