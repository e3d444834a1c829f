"""Cell ids: points to cells, string/int conversions, centroids, polygons, neighbours.

Cells are held as ``uint64`` arrays inside the library (fast, compact) and as 15-character hex strings in tables
and files (what QGIS users and h3-py see).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import h3
import h3ronpy
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Polygon, box

from ..constants import H3_MAX_RESOLUTION, H3_MIN_RESOLUTION
from ..exceptions import InvalidInputError, ResolutionError
from .geometry import validate_lonlat


def validate_resolution(resolution: int) -> int:
    """Return ``resolution`` as an int after checking it is an H3 resolution (0..15)."""
    try:
        res = int(resolution)
    except (TypeError, ValueError) as exc:
        raise ResolutionError(f"H3 resolution must be an integer 0..15, got {resolution!r}") from exc
    if res != resolution or not H3_MIN_RESOLUTION <= res <= H3_MAX_RESOLUTION:
        raise ResolutionError(
            f"unknown H3 resolution {resolution!r}: use an integer from {H3_MIN_RESOLUTION} to "
            f"{H3_MAX_RESOLUTION} (5-7 for countries, 8-10 for cities)"
        )
    return res


_PARALLEL_POINTS = 200_000  # below this, one thread is faster than splitting


def points_to_cells(lon: np.ndarray, lat: np.ndarray, resolution: int) -> np.ndarray:
    """Map WGS84 points to H3 cells (``uint64``), vectorized through h3o (h3ronpy), on all cores."""
    res = validate_resolution(resolution)
    lon, lat = validate_lonlat(lon, lat)
    return _points_to_cells(lon, lat, res)


def _points_to_cells(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """``points_to_cells`` for validated float64 arrays: slices converted in threads (h3ronpy releases the GIL)."""
    from h3ronpy.vector import coordinates_to_cells

    out = np.empty(lon.size, dtype=np.uint64)
    if lon.size == 0:
        return out
    n_threads = min(len(os.sched_getaffinity(0)), max(1, lon.size // _PARALLEL_POINTS))
    bounds = np.linspace(0, lon.size, n_threads + 1).astype(np.int64)

    def convert(k: int) -> None:
        s = slice(bounds[k], bounds[k + 1])
        out[s] = np.asarray(coordinates_to_cells(lat[s], lon[s], res), dtype=np.uint64)

    if n_threads == 1:
        convert(0)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(convert, range(n_threads)))
    return out


def cells_to_strings(cells: np.ndarray) -> np.ndarray:
    """``uint64`` cells -> hex strings (h3-py's ``str`` form), as an object array."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size == 0:
        return np.empty(0, dtype=object)
    return np.asarray(h3ronpy.cells_to_string(cells).to_pylist(), dtype=object)


def strings_to_cells(cells) -> np.ndarray:
    """Hex strings (or ints) -> ``uint64`` cells, refusing anything that is not a valid H3 cell."""
    arr = np.asarray(cells)
    if arr.dtype.kind in "ui":
        return validate_cells(arr.astype(np.uint64))
    try:
        out = np.fromiter((int(str(c), 16) for c in arr), dtype=np.uint64, count=arr.size)
    except ValueError as exc:
        raise InvalidInputError(
            f"not an H3 cell id ({exc}); cell ids are hex strings such as '8928308280fffff'"
        ) from exc
    return validate_cells(out)


def validate_cells(cells: np.ndarray) -> np.ndarray:
    """Check every id is a valid H3 cell; returns the ids as ``uint64``."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size:
        valid = np.asarray(h3ronpy.cells_valid(cells, booleanarray=True), dtype=bool)
        if not valid.all():
            i = int(np.argmax(~valid))
            raise InvalidInputError(f"{int((~valid).sum())} invalid H3 cell ids, e.g. {int(cells[i]):x} at row {i}")
    return cells


def cell_centroids(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (lon, lat) in degrees of each cell."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size == 0:
        return np.zeros(0), np.zeros(0)
    from h3ronpy.vector import cells_to_coordinates

    coords = cells_to_coordinates(cells)
    lat = np.asarray(coords.column("lat"), dtype=np.float64)
    lon = np.asarray(coords.column("lng"), dtype=np.float64)
    return lon, lat


def cell_area_km2(cells: np.ndarray) -> np.ndarray:
    """Exact area of each cell in km^2 (H3 cells are not equal-area)."""
    return np.asarray(h3ronpy.cells_area_km2(np.asarray(cells, dtype=np.uint64)), dtype=np.float64)


def _split_at_antimeridian(poly: Polygon) -> shapely.Geometry:
    coords = np.asarray(poly.exterior.coords).copy()
    coords[coords[:, 0] < 0, 0] += 360.0
    shifted = Polygon(coords)
    west = shifted.intersection(box(-180.0, -90.0, 180.0, 90.0))
    east = shapely.affinity.translate(shifted.intersection(box(180.0, -90.0, 540.0, 90.0)), xoff=-360.0)
    return shapely.union(west, east)


def cells_to_polygons(cells: np.ndarray) -> np.ndarray:
    """Cell boundaries as a shapely array; cells across +-180 become MultiPolygons split at the antimeridian."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size == 0:
        return np.empty(0, dtype=object)
    from h3ronpy.vector import cells_to_wkb_polygons

    wkb = cells_to_wkb_polygons(cells)
    geoms = shapely.from_wkb(np.asarray(wkb.to_pylist() if hasattr(wkb, "to_pylist") else wkb, dtype=object))
    bounds = shapely.bounds(geoms)
    wide = np.flatnonzero(bounds[:, 2] - bounds[:, 0] > 180.0)
    for i in wide:
        geoms[i] = _split_at_antimeridian(geoms[i])
    return geoms


def neighbours(cells: np.ndarray, k: int = 1, *, include_self: bool = False) -> pd.DataFrame:
    """Pairs (``h3_cell``, ``neighbour``) of cells within ``k`` grid steps (pentagons have fewer neighbours)."""
    cells = np.asarray(cells, dtype=np.uint64)
    if k < 0:
        raise InvalidInputError(f"k must be >= 0, got {k}")
    disks = [np.asarray([int(x, 16) for x in h3.grid_disk(format(int(c), "x"), k)], dtype=np.uint64) for c in cells]
    sizes = np.fromiter((d.size for d in disks), dtype=np.int64, count=len(disks))
    df = pd.DataFrame({"h3_cell": np.repeat(cells, sizes), "neighbour": np.concatenate(disks) if disks else []})
    if not include_self:
        df = df[df["h3_cell"] != df["neighbour"]].reset_index(drop=True)
    return df
