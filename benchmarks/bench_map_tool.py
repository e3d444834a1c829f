"""The desktop map tool ("Find similar places") on 100,000 H3 cells, in real QGIS (headless, offscreen).

What a click costs, measured on the tool's own code (``qgis_plugin.similarity_tool.SimilarityOverlay``) over a
GeoPackage of 100,000 res-9 cells around Chicago with 128 float32 emb_* fields (what Train embeddings writes):

- activating the tool: reading the emb_* fields into the index and building the similarity raster (once);
- the click lookup: ``row_at`` (the cell under the clicked point);
- the update: ``update(row)``: the scores, the raster rewritten in GDAL's memory file system, the layer reloaded;
- the redraw: QGIS rendering the updated raster layer to a 1280 x 800 image (the canvas does this in its render
  thread after ``triggerRepaint``);
- next to them, the numpy-only step that benchmarks/bench_analysis.py times (the scores into the pixel array).

The same for the tool's feature mode (a layer without h3_cell: a copy of the features whose 'similarity' field is
rewritten and restyled per click) on the same 100,000 polygons. Each per-click time is the median of several clicks
on random cells. Run: .venv/bin/python -m benchmarks.bench_map_tool
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

N_CELLS = 100_000
DIM = 128
CLICKS = 15


def city_cells(n: int = N_CELLS, lat: float = 41.8781, lon: float = -87.6298, res: int = 9) -> np.ndarray:
    """The ``n`` res-``res`` H3 cells nearest to (lat, lon), sorted."""
    import h3

    from mobclip_core.grid import cell_centroids, strings_to_cells

    centre = h3.latlng_to_cell(lat, lon, res)
    k = int(np.ceil(np.sqrt(n / 3))) + 2  # a disk of k rings holds 1 + 3k(k+1) cells
    cells = strings_to_cells(np.array(sorted(h3.grid_disk(centre, k))))
    clon, clat = cell_centroids(cells)
    d2 = ((clon - lon) * np.cos(np.radians(lat))) ** 2 + (clat - lat) ** 2
    return np.sort(cells[np.argsort(d2, kind="stable")[:n]])


def write_layers(work: Path) -> tuple[Path, Path, pd.DataFrame]:
    """The cells with clustered 128-d embeddings as a GeoPackage (cell mode), and a copy whose h3_cell field is
    renamed 'place' (the tool's feature mode: polygons with emb_* fields)."""
    from mobclip_core.export import write_embeddings
    from mobclip_core.grid import cells_to_strings

    rng = np.random.default_rng(0)
    cells = city_cells()
    centres = rng.normal(size=(8, DIM)).astype(np.float32)
    values = centres[rng.integers(0, 8, cells.size)] + rng.normal(scale=0.8, size=(cells.size, DIM)).astype(np.float32)
    table = pd.DataFrame(
        values,
        index=pd.Index(cells_to_strings(cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(DIM)],
    )
    cells_path = write_embeddings(table, work / "cells.gpkg")
    polygons_path = work / "polygons.gpkg"
    shutil.copy(cells_path, polygons_path)
    with sqlite3.connect(polygons_path) as con:
        con.execute("ALTER TABLE embeddings RENAME COLUMN h3_cell TO place")
    return cells_path, polygons_path, table


def median_ms(fn, args) -> float:
    """Median wall time of ``fn(a)`` over ``args``, in milliseconds."""
    times = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def click_points(table: pd.DataFrame, n: int = CLICKS) -> list:
    """The centres of ``n`` random cells, as map points (EPSG:4326, the layer's CRS)."""
    from qgis.core import QgsPointXY

    from mobclip_core.grid import cell_centroids, strings_to_cells

    pick = np.random.default_rng(1).choice(len(table), n, replace=False)
    lon, lat = cell_centroids(strings_to_cells(table.index.to_numpy()[pick]))
    return [QgsPointXY(float(x), float(y)) for x, y in zip(lon, lat)]


def render_ms(layer, repeat: int = 5) -> float:
    """Median time QGIS takes to render ``layer`` over its extent into a 1280 x 800 image."""
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(1280, 800))

    def render(_):
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()

    return median_ms(render, range(repeat))


def bench_cells(path: Path, points: list) -> dict:
    """Activation, lookup, update, redraw (and the numpy-only step) of the tool on the cell layer."""
    from mobclip.processing_algorithms._places import pseudocolour_style
    from mobclip.qgis_plugin.similarity_tool import SimilarityOverlay
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{path}|layername=embeddings", "cells")
    t0 = time.perf_counter()
    overlay = SimilarityOverlay(layer)
    out = {"activate_s": time.perf_counter() - t0, "raster": overlay.pixels.shape}
    rows = [overlay.row_at(p) for p in points]
    assert None not in rows
    out["lookup_ms"] = median_ms(overlay.row_at, points)
    out["update_ms"] = median_ms(overlay.update, rows)
    pseudocolour_style(overlay.result)  # the tool styles the raster on the first click
    out["render_ms"] = render_ms(overlay.result)

    def numpy_only(row):
        scores = overlay.index.similarity(overlay.index.direction(rows=[row]))
        np.where(overlay.pixels >= 0, scores[overlay.pixels], np.nan).astype(np.float32)

    out["numpy_ms"] = median_ms(numpy_only, rows)
    overlay.close()
    return out


def bench_features(path: Path, points: list) -> dict:
    """Activation, lookup, update + restyle, redraw of the tool on the same cells as plain polygons."""
    from mobclip.qgis_plugin.similarity_tool import SimilarityOverlay, restyle_quantiles
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{path}|layername=embeddings", "polygons")
    t0 = time.perf_counter()
    overlay = SimilarityOverlay(layer)
    out = {"activate_s": time.perf_counter() - t0}
    assert not overlay.cell_mode
    rows = [overlay.row_at(p) for p in points]
    assert None not in rows
    out["lookup_ms"] = median_ms(overlay.row_at, points)
    out["update_ms"] = median_ms(overlay.update, rows[:5])
    restyle_quantiles(overlay.result, "similarity", overlay.scores)  # the first click: QGIS's quantile style

    restyles = []
    for row in rows[5:10]:
        overlay.update(row)
        restyles.append(median_ms(lambda s: restyle_quantiles(overlay.result, "similarity", s), [overlay.scores]))
    out["style_ms"] = statistics.median(restyles)
    out["render_ms"] = render_ms(overlay.result, 3)
    return out


def report(cells: dict, features: dict, write_s: float, load: tuple[float, float]) -> str:
    """The results as the text written to benchmarks/results/bench_map_tool.txt; ``load``: the 1-minute load
    average at the start and the end (other jobs on the machine distort the times)."""
    c, f = cells, features
    lines = [
        f"map tool on {N_CELLS:,} H3 res-9 cells x {DIM} float32 emb_* fields (GeoPackage, written in {write_s:.0f} s)",
        f"cells (h3_cell field): similarity raster {c['raster'][1]} x {c['raster'][0]} px",
        ("activate the tool (read emb_*, build the raster, once)", c["activate_s"], "s"),
        (f"click lookup: row_at (median of {CLICKS})", c["lookup_ms"], "ms"),
        ("update(row): scores, raster write, reload (median)", c["update_ms"], "ms"),
        ("= one click before the redraw", c["lookup_ms"] + c["update_ms"], "ms"),
        ("redraw: QGIS renders the raster, 1280 x 800 (median)", c["render_ms"], "ms"),
        ("numpy-only step (scores -> pixel array, bench_analysis)", c["numpy_ms"], "ms"),
        "features (no h3_cell: the same cells as plain polygons)",
        ("activate the tool (read emb_*, copy the features, once)", f["activate_s"], "s"),
        (f"click lookup: row_at (median of {CLICKS})", f["lookup_ms"], "ms"),
        ("update(row): scores, similarity field (median of 5)", f["update_ms"], "ms"),
        ("restyle: quantile classes (median of 5, after the first)", f["style_ms"], "ms"),
        ("= one click before the redraw", f["lookup_ms"] + f["update_ms"] + f["style_ms"], "ms"),
        ("redraw: QGIS renders the polygons, 1280 x 800 (median)", f["render_ms"], "ms"),
        f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end, on {os.cpu_count()} cores",
    ]
    return "\n".join(x if isinstance(x, str) else f"  {x[0]:<57s}{x[1]:8.1f} {x[2]}" for x in lines)


def main() -> dict:
    from qgis_support import start_qgis

    start_qgis()
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="mobclip-map-tool-bench-"))
    try:
        t0 = time.perf_counter()
        cells_path, polygons_path, table = write_layers(work)
        write_s = time.perf_counter() - t0
        points = click_points(table)
        cells = bench_cells(cells_path, points)
        features = bench_features(polygons_path, points)
        print(report(cells, features, write_s, (load, os.getloadavg()[0])))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"cells": cells, "features": features}


if __name__ == "__main__":
    main()
