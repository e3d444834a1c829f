"""Cell ids: points to cells, string/int conversions, centroids, boundaries, parents, neighbours.

Cells are held as ``uint64`` arrays inside the library (fast, compact) and as 15-character hex strings in tables
and files (what QGIS users and h3-py see). Everything here works with h3-py and numpy alone (the QGIS plugin's
"maps" tier); h3ronpy, when installed, does the bulk conversions faster with identical results.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..constants import H3_MAX_RESOLUTION, H3_MIN_RESOLUTION
from ..exceptions import InvalidInputError, ResolutionError
from . import _backend
from .antimeridian import split_polygon
from .geometry import validate_lonlat
from .wkb import polygon_wkb


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
    """Map WGS84 points to H3 cells (``uint64``)."""
    res = validate_resolution(resolution)
    lon, lat = validate_lonlat(lon, lat)
    return _points_to_cells(lon, lat, res)


def _points_to_cells(lon: np.ndarray, lat: np.ndarray, res: int) -> np.ndarray:
    """``points_to_cells`` for validated float64 arrays: h3ronpy slices in threads (it releases the GIL), or
    an h3-py loop."""
    out = np.empty(lon.size, dtype=np.uint64)
    if lon.size == 0:
        return out
    ronpy = _backend.h3ronpy()
    if ronpy is None:
        import h3.api.numpy_int as h3n

        out[:] = np.fromiter(map(h3n.latlng_to_cell, lat.tolist(), lon.tolist(), [res] * lon.size), np.uint64)
        return out
    from h3ronpy.vector import coordinates_to_cells

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
    return np.array([format(c, "x") for c in cells.tolist()], dtype=object)


def strings_to_cells(cells) -> np.ndarray:
    """Hex strings (or ints) -> ``uint64`` cells, refusing anything that is not a valid H3 cell."""
    arr = np.asarray(cells)
    if arr.dtype.kind in "ui":
        return validate_cells(arr.astype(np.uint64))
    try:
        out = np.fromiter((int(str(c), 16) for c in arr), dtype=np.uint64, count=arr.size)
    except (ValueError, OverflowError) as exc:
        raise InvalidInputError(
            f"not an H3 cell id ({exc}); cell ids are hex strings such as '8928308280fffff'"
        ) from exc
    return validate_cells(out)


def validate_cells(cells: np.ndarray) -> np.ndarray:
    """Check every id is a valid H3 cell; returns the ids as ``uint64``."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size:
        ronpy = _backend.h3ronpy()
        if ronpy is not None:
            valid = np.asarray(ronpy.cells_valid(cells, booleanarray=True), dtype=bool)
        else:
            import h3.api.numpy_int as h3n

            valid = np.fromiter(map(h3n.is_valid_cell, cells.tolist()), dtype=bool, count=cells.size)
        if not valid.all():
            i = int(np.argmax(~valid))
            raise InvalidInputError(f"{int((~valid).sum())} invalid H3 cell ids, e.g. {int(cells[i]):x} at row {i}")
    return cells


def cell_resolution(cells: np.ndarray) -> np.ndarray:
    """Resolution of each cell (bits 52-55 of the id)."""
    return ((np.asarray(cells, dtype=np.uint64) >> np.uint64(52)) & np.uint64(0xF)).astype(np.int64)


def parent_cells(cells: np.ndarray, resolution: int) -> np.ndarray:
    """The parent of each cell at a coarser ``resolution`` (H3's ``cell_to_parent``, in numpy bit operations).

    This is what spatial blocks are made of: cross-validation holds out whole parents.
    """
    res = validate_resolution(resolution)
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size and (cell_resolution(cells) < res).any():
        raise ResolutionError(
            f"cannot take resolution-{res} parents of cells at resolution {int(cell_resolution(cells).min())}: "
            "blocks must be coarser than the cells"
        )
    unused = np.uint64((1 << (3 * (15 - res))) - 1)  # digits res+1..15 are set to 7 (all ones)
    return (cells & ~np.uint64(0xF << 52) | np.uint64(res << 52)) | unused


def cell_centroids(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (lon, lat) in degrees of each cell."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size == 0:
        return np.zeros(0), np.zeros(0)
    if _backend.h3ronpy() is not None:
        from h3ronpy.vector import cells_to_coordinates

        coords = cells_to_coordinates(cells)
        return np.asarray(coords.column("lng"), dtype=np.float64), np.asarray(coords.column("lat"), dtype=np.float64)
    import h3.api.numpy_int as h3n

    lat_lon = np.array(list(map(h3n.cell_to_latlng, cells.tolist())), dtype=np.float64).reshape(-1, 2)
    return lat_lon[:, 1].copy(), lat_lon[:, 0].copy()


def cell_area_km2(cells: np.ndarray) -> np.ndarray:
    """Exact area of each cell in km^2 (H3 cells are not equal-area)."""
    cells = np.asarray(cells, dtype=np.uint64)
    ronpy = _backend.h3ronpy()
    if ronpy is not None:
        return np.asarray(ronpy.cells_area_km2(cells), dtype=np.float64)
    import h3.api.numpy_int as h3n

    return np.fromiter((h3n.cell_area(c, unit="km^2") for c in cells.tolist()), dtype=np.float64, count=cells.size)


def cells_to_wkb(cells: np.ndarray) -> list[bytes]:
    """Cell boundaries as 2D WKB (lon, lat); a cell across +-180 becomes a MultiPolygon split at the antimeridian
    (never a 359-degree-wide polygon)."""
    cells = np.asarray(cells, dtype=np.uint64)
    if cells.size == 0:
        return []
    if _backend.h3ronpy() is not None:
        from h3ronpy.vector import cells_to_wkb_polygons

        wkb = cells_to_wkb_polygons(cells)
        out = list(wkb.to_pylist() if hasattr(wkb, "to_pylist") else wkb)
        lon, lat = cell_centroids(cells)
        for i in np.flatnonzero((np.abs(lon) > 120.0) | (np.abs(lat) > 60.0)):  # only these can reach +-180
            out[i] = _boundary_wkb(int(cells[i]))
        return out
    return [_boundary_wkb(c) for c in cells.tolist()]


def _boundary_wkb(cell: int) -> bytes:
    import h3.api.numpy_int as h3n

    lat_lon = np.asarray(h3n.cell_to_boundary(cell), dtype=np.float64)
    ring = np.vstack([lat_lon[:, ::-1], lat_lon[:1, ::-1]])
    if np.ptp(ring[:, 0]) <= 180.0:
        return polygon_wkb([[ring]])
    return polygon_wkb(split_polygon([ring]), multi=True)


def cells_to_polygons(cells: np.ndarray) -> np.ndarray:
    """Cell boundaries as a shapely array (library side; the QGIS side uses ``cells_to_wkb``)."""
    import shapely

    return shapely.from_wkb(np.asarray(cells_to_wkb(cells), dtype=object))


def neighbours(cells: np.ndarray, k: int = 1, *, include_self: bool = False):
    """Pairs (``h3_cell``, ``neighbour``) of cells within ``k`` grid steps (pentagons have fewer neighbours)."""
    import h3.api.numpy_int as h3n
    import pandas as pd

    cells = np.asarray(cells, dtype=np.uint64)
    if int(k) != k or k < 0:
        raise InvalidInputError(f"neighbours: k must be a whole number of grid steps >= 0, got {k!r}")
    disks = [np.asarray(h3n.grid_disk(int(c), int(k)), dtype=np.uint64) for c in cells.tolist()]
    sizes = np.fromiter((d.size for d in disks), dtype=np.int64, count=len(disks))
    df = pd.DataFrame(
        {"h3_cell": np.repeat(cells, sizes), "neighbour": np.concatenate(disks) if disks else np.zeros(0, np.uint64)}
    )
    if not include_self:
        df = df[df["h3_cell"] != df["neighbour"]].reset_index(drop=True)
    return df
