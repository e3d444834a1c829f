"""H3 tokenization speed, side by side in one run on this machine.

points -> cells: mobclip_core.grid.points_to_cells against a plain h3-py loop and polars-h3;
polygons -> cells: mobclip_core.grid.polygons_to_cells against polars-h3 alone and h3-py per polygon.
Run: .venv/bin/python -m benchmarks.bench_grid
"""

from __future__ import annotations

import h3
import numpy as np
import polars as pl
import polars_h3 as plh3
import shapely

from benchmarks._util import best_of
from mobclip_core.grid import points_to_cells, polygons_to_cells


def bench_points(n: int = 2_000_000, res: int = 9) -> dict:
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(6, 15, n), rng.uniform(47, 55, n)
    ours = best_of(lambda: points_to_cells(lon, lat, res))
    m = 200_000
    loop = best_of(lambda: [h3.latlng_to_cell(b, a, res) for a, b in zip(lon[:m].tolist(), lat[:m].tolist())], 1)
    loop *= n / m
    frame = pl.DataFrame({"lat": lat, "lng": lon})
    polars = best_of(lambda: frame.select(plh3.latlng_to_cell("lat", "lng", res)))
    return {"n": n, "ours_s": ours, "h3py_loop_s": loop, "polars_h3_s": polars}


def random_polygons(k: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    polys = []
    for _ in range(k):
        cx, cy = rng.uniform(6.5, 14.5), rng.uniform(47.5, 54.5)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 40))
        r = rng.uniform(0.05, 0.25) * rng.uniform(0.6, 1.0, 40)
        polys.append(shapely.Polygon(np.c_[cx + r * np.cos(ang), cy + r * np.sin(ang)]))
    return np.array(polys, dtype=object)


def bench_polygons(res: int = 9) -> dict:
    polys = random_polygons()
    ours = best_of(lambda: polygons_to_cells(polys, res))
    n_cells = len(polygons_to_cells(polys, res))
    frame = pl.DataFrame({"wkb": shapely.to_wkb(polys)})
    polars = best_of(lambda: frame.select(plh3.polygon_to_cells("wkb", res)).explode("wkb"))
    h3py = best_of(lambda: [h3.geo_to_cells(p, res) for p in polys], 1)
    return {"polygons": len(polys), "cells": n_cells, "ours_s": ours, "polars_h3_s": polars, "h3py_s": h3py}


def main() -> dict:
    p = bench_points()
    g = bench_polygons()
    print(f"points -> cells, {p['n']:,} points at res 9")
    print(f"  mobclip_core  {p['n'] / p['ours_s'] / 1e6:6.2f} M pts/s")
    print(f"  polars-h3     {p['n'] / p['polars_h3_s'] / 1e6:6.2f} M pts/s")
    print(f"  h3-py loop    {p['n'] / p['h3py_loop_s'] / 1e6:6.2f} M pts/s")
    print(f"  ratio mobclip / h3-py loop = {p['h3py_loop_s'] / p['ours_s']:.2f}x   (target >= 1.5x and >= 1.5 M/s)")
    print(f"polygons -> cells, {g['polygons']} polygons -> {g['cells']:,} res-9 cells")
    print(f"  mobclip_core  {g['ours_s']:.3f} s   polars-h3 {g['polars_h3_s']:.3f} s   h3-py {g['h3py_s']:.3f} s")
    print(f"  ratio mobclip / polars-h3 = {g['ours_s'] / g['polars_h3_s']:.2f}x   (target <= 1.2x)")
    return {"points": p, "polygons": g}


if __name__ == "__main__":
    main()
