"""Speed of the plugin's algorithms through processing.run in real QGIS (headless).

1. aggregate a 128-d embedding table of the demo region over 3,000 polygons (target < 5 s);
2. fit LightGBM with spatially blocked 5-fold CV on 10,000 features with 128 embedding fields (target < 30 s);
3. tessellate a 1,000 km^2 polygon at H3 resolution 9 (target < 2 s).
The embedding values are random (speed does not depend on them); the cells are the demo city's.
Run: .venv/bin/python -m benchmarks.bench_qgis
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> dict:
    import geopandas as gpd
    import shapely
    from qgis_support import start_qgis

    from mobclip_core.demo import make_demo_city
    from mobclip_core.export import write_embeddings
    from mobclip_core.grid import cell_centroids, cells_to_strings

    start_qgis()
    import processing

    work = Path(tempfile.mkdtemp(prefix="mobclip-qgis-bench-"))
    city = make_demo_city(work / "city", seed=0)
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        rng.normal(size=(city.cells.size, 128)).astype(np.float32),
        index=pd.Index(cells_to_strings(city.cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(128)],
    )
    write_embeddings(table, work / "emb.gpkg")
    lon, lat = cell_centroids(city.cells)

    # 3,000 Voronoi polygons over the region, in a projected CRS
    seeds = shapely.MultiPoint(np.c_[rng.uniform(lon.min(), lon.max(), 3000), rng.uniform(lat.min(), lat.max(), 3000)])
    frame = shapely.box(lon.min(), lat.min(), lon.max(), lat.max())
    polys = [p.intersection(frame) for p in shapely.voronoi_polygons(seeds, extend_to=frame).geoms]
    gpd.GeoDataFrame({"pid": range(len(polys))}, geometry=polys, crs=4326).to_crs(32632).to_file(work / "polys.gpkg")

    # 10,000 points with 128 embedding fields and a planted target
    n = 10_000
    px, py = rng.uniform(lon.min(), lon.max(), n), rng.uniform(lat.min(), lat.max(), n)
    feats = rng.normal(size=(n, 128))
    pts = gpd.GeoDataFrame(
        pd.DataFrame(feats, columns=[f"emb_{i}" for i in range(128)]), geometry=gpd.points_from_xy(px, py), crs=4326
    )
    pts["target"] = feats[:, 0] * 2 + np.sin(feats[:, 1] * 2) + rng.normal(scale=0.3, size=n)
    pts.to_file(work / "points.gpkg")

    # a 1,000 km^2 square (31.62 km a side) in UTM
    side = 1000**0.5 * 1000
    square = gpd.GeoDataFrame(geometry=[shapely.box(480000, 4970000, 480000 + side, 4970000 + side)], crs=32632)
    square.to_file(work / "square.gpkg")

    timings = {}
    t0 = time.perf_counter()
    processing.run(
        "mobclip:aggregate_embeddings",
        {"INPUT": str(work / "polys.gpkg"), "EMBEDDINGS": str(work / "emb.gpkg"), "OUTPUT": str(work / "agg.gpkg")},
    )
    timings["aggregate 3,000 polygons"] = (time.perf_counter() - t0, 5.0)
    t0 = time.perf_counter()
    res = processing.run(
        "mobclip:fit_lightgbm",
        {
            "INPUT": str(work / "points.gpkg"),
            "TARGET": "target",
            "BLOCKS": 0,
            "BLOCK_RESOLUTION": 8,
            "FOLDS": 5,
            "MODEL": 1,
            "OUTPUT": str(work / "pred.gpkg"),
        },
    )
    timings[f"LightGBM blocked 5-fold CV, 10,000 features (R2 {res['R2']:.2f})"] = (time.perf_counter() - t0, 30.0)
    t0 = time.perf_counter()
    out = processing.run(
        "mobclip:tessellate", {"INPUT": str(work / "square.gpkg"), "RESOLUTION": 9, "OUTPUT": str(work / "cells.gpkg")}
    )
    from qgis.core import QgsVectorLayer

    n_cells = QgsVectorLayer(out["OUTPUT"]).featureCount()
    timings[f"tessellate 1,000 km2 at res 9 ({n_cells:,} cells)"] = (time.perf_counter() - t0, 2.0)
    for name, (sec, target) in timings.items():
        print(f"{name:60s} {sec:6.2f} s   target < {target:.0f} s   ({sec / target:.2f} of target)")
    return {k: v[0] for k, v in timings.items()}


if __name__ == "__main__":
    main()
