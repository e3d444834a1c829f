"""Real country shapes from the world map QGIS ships (Natural Earth), and rings across the antimeridian made from
them: one module, so the library, the CLI and QGIS are tested on the very same shapes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

WORLD_MAP = Path("/usr/share/qgis/resources/data/world_map.gpkg")  # Natural Earth countries, shipped with QGIS


def world_countries():
    """Country geometries (EPSG:4326) by NAME; skips without QGIS's world map (fails when QGIS is required)."""
    if not WORLD_MAP.exists():
        if os.environ.get("MOBCLIP_REQUIRE_QGIS") == "1":
            pytest.fail(f"{WORLD_MAP} is missing: install QGIS (apt-get install qgis)")
        pytest.skip("QGIS's world map (real country shapes) is not installed")
    import geopandas as gpd

    return gpd.read_file(WORLD_MAP, layer="countries").set_index("NAME").geometry


def unwrapped_hull(parts) -> Polygon:
    """Convex hull of polygon parts on both sides of +-180, in one continuous longitude range (0..360)."""
    shifted = [shapely.affinity.translate(p, xoff=360.0) if p.bounds[2] < 0 else p for p in parts]
    return shapely.convex_hull(shapely.union_all(shifted))


def wrapped(poly: Polygon) -> Polygon:
    """The same ring with longitudes folded back into [-180, 180]: edges across the antimeridian jump by ~360."""
    c = np.asarray(poly.exterior.coords)
    c[:, 0] = (c[:, 0] + 180.0) % 360.0 - 180.0
    return Polygon(c)


def split_reference(poly: Polygon) -> list[Polygon]:
    """The polygon (in 0..360 longitudes) cut at 180 with shapely, each side in [-180, 180]: a reference made
    without the library's antimeridian code."""
    east = poly.intersection(box(0, -90, 180, 90))
    west = shapely.affinity.translate(poly.intersection(box(180, -90, 360, 90)), xoff=-360.0)
    return [g for g in (east, west) if not g.is_empty]


def fiji_across(countries) -> tuple[Polygon, Polygon]:
    """Fiji as one ring: (its hull in 0..360 longitudes, the same ring in [-180, 180] with vertices near 177 and
    -178), the shape that tessellated to 49,062 cells around the globe before the antimeridian was handled."""
    hull = unwrapped_hull(countries["Fiji"].geoms)
    return hull, wrapped(hull)


def inside_bounds(cells, poly: Polygon, margin: float = 0.5) -> bool:
    """Every cell centre (uint64 H3 ids) lies in the polygon's bounding box (longitudes taken in 0..360)."""
    from mobclip_core.grid import cell_centroids

    lon, lat = cell_centroids(np.fromiter(cells, np.uint64))
    lon = np.where(lon < 0, lon + 360.0, lon)
    x0, y0, x1, y1 = poly.bounds
    return bool(((lon > x0 - margin) & (lon < x1 + margin) & (lat > y0 - margin) & (lat < y1 + margin)).all())
