"""Polygons to H3 cells, in bulk: the one path the library, the evaluation and the QGIS algorithms share.

Geometries come in as shapely geometries (library) or WKB bytes (QGIS: ``QgsGeometry.asWkb``) in EPSG:4326. Each
polygon is split for H3 (``antimeridian.split_polygon``), then filled by centre containment (adjacent polygons get
disjoint cells) or by overlap. Polygons too small to hold any cell centre can fall back to the cell of their
representative point. Needs only numpy, pandas and h3-py; polars-h3 speeds up centre containment when installed
(same cells).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError
from ..options import Containment as ContainmentOption
from ..options import choices
from . import _backend
from .antimeridian import interior_point, split_polygon
from .cells import cells_to_strings, points_to_cells, validate_resolution
from .wkb import Polygon, geometries_to_wkb, parse_wkb, polygon_wkb

Containment = Literal["center", "overlap"]  # the values of options.Containment
Fallback = Literal["none", "point"]


@dataclass
class PreparedPolygons:
    """Geometries split for H3: the parts and the input each came from (see ``prepare_polygons``)."""

    parts: list[Polygon]
    owner: np.ndarray  # int64, index into the input sequence
    size: int  # number of inputs
    _points: dict[int, tuple[float, float]]  # the first point of inputs that are points, not polygons

    def representative_points(self, which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) of a point inside each input polygon, the point of point inputs, NaN for empty ones.

        ``which`` (input positions) limits the work to those inputs; the others are NaN.
        """
        wanted = np.ones(self.size, dtype=bool) if which is None else np.isin(np.arange(self.size), which)
        lon, lat = np.full(self.size, np.nan), np.full(self.size, np.nan)
        for i, (x, y) in self._points.items():
            lon[i], lat[i] = x, y
        starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]]) if self.owner.size else []
        for start, stop in zip(starts, [*starts[1:], self.owner.size]):
            if wanted[self.owner[start]]:
                lon[self.owner[start]], lat[self.owner[start]] = interior_point(self.parts[start:stop])
        return lon, lat


def prepare_polygons(geometries) -> PreparedPolygons:
    """Split every polygonal geometry (shapely or WKB, EPSG:4326) for H3; point inputs keep their point."""
    wkbs = geometries_to_wkb(geometries)
    parts: list[Polygon] = []
    owner: list[int] = []
    points: dict[int, tuple[float, float]] = {}
    for i, wkb in enumerate(wkbs):
        parsed = parse_wkb(wkb)
        mine = [p for poly in parsed.polygons for p in split_polygon(poly)]
        parts.extend(mine)
        owner.extend([i] * len(mine))
        if not mine and parsed.points:
            points[i] = parsed.points[0]
    return PreparedPolygons(parts, np.asarray(owner, dtype=np.int64), len(wkbs), points)


def representative_points(geometries) -> tuple[np.ndarray, np.ndarray]:
    """A point inside each polygon (GEOS's point-on-surface rule) or the point of a point geometry; NaN if none.

    Polygons across the antimeridian or around a pole get a point inside their split parts, in [-180, 180].
    """
    return prepare_polygons(geometries).representative_points()


def polygons_to_cells(
    geometries,
    resolution: int,
    *,
    containment: Containment = "center",
    fallback: Fallback = "none",
    cell_ids: Literal["uint64", "str"] = "uint64",
    on_progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """Cells covering each WGS84 polygon: columns ``polygon`` (position in ``geometries``) and ``h3_cell``.

    ``containment="center"`` keeps cells whose centre lies in the polygon, so adjacent polygons get disjoint
    cells (what aggregation over admin units needs); ``"overlap"`` keeps every cell that touches the polygon.
    ``fallback="point"`` gives each polygon too small to hold a cell centre the cell of its representative point,
    and adds a boolean column ``from_point`` that marks those rows. ``on_progress(fraction)`` is called as the
    polygons are filled, in about ``PROGRESS_STEPS`` steps of similar area (it may raise to cancel).
    """
    if isinstance(geometries, PreparedPolygons):
        prepared = geometries
    else:
        prepared = prepare_polygons(geometries)
    return prepared_to_cells(
        prepared, resolution, containment=containment, fallback=fallback, cell_ids=cell_ids, on_progress=on_progress
    )


def tessellate(
    geometries,
    resolution: int,
    *,
    containment: Containment = "center",
    on_progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """Each cell covering the geometries once (``h3_cell``), with the first polygon it came from (``polygon``)."""
    pairs = polygons_to_cells(geometries, resolution, containment=containment, on_progress=on_progress)
    return pairs.drop_duplicates(REGION_INDEX, ignore_index=True)[[REGION_INDEX, "polygon"]]


def prepared_to_cells(
    prepared: PreparedPolygons,
    resolution: int,
    *,
    containment: Containment = "center",
    fallback: Fallback = "none",
    cell_ids: Literal["uint64", "str"] = "uint64",
    on_progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """``polygons_to_cells`` for geometries already split (reuse one split at several resolutions)."""
    res = validate_resolution(resolution)
    if containment not in set(ContainmentOption):
        raise InvalidInputError(f"containment must be one of {choices(ContainmentOption)}, got {containment!r}")
    if fallback not in ("none", "point"):
        raise InvalidInputError(f"fallback must be 'none' or 'point', got {fallback!r}")
    parts = prepared.parts
    fill = _center_cells if containment == "center" else _overlap_cells
    polygon, cells = _fill_in_steps(fill, parts, prepared.owner, res, on_progress)
    df = pd.DataFrame({"polygon": polygon, REGION_INDEX: cells})
    if len(parts) != len(set(prepared.owner.tolist())) or containment == "overlap":
        df = df.drop_duplicates(ignore_index=True)  # parts of one polygon may share a cell
    if fallback == "point":
        covered = np.zeros(prepared.size, dtype=bool)
        covered[df["polygon"].to_numpy()] = True
        lon, lat = prepared.representative_points(np.flatnonzero(~covered))
        todo = np.flatnonzero(~covered & np.isfinite(lon))
        extra = pd.DataFrame({"polygon": todo, REGION_INDEX: points_to_cells(lon[todo], lat[todo], res)})
        df["from_point"] = False
        df = pd.concat([df, extra.assign(from_point=True)], ignore_index=True)
    if cell_ids == "str":
        df[REGION_INDEX] = cells_to_strings(df[REGION_INDEX].to_numpy())
    return df


PROGRESS_STEPS = 50  # progress reports while polygons are filled (chunks of similar bounding-box area)


def _fill_in_steps(
    fill, parts: list[Polygon], owner: np.ndarray, res: int, on_progress
) -> tuple[np.ndarray, np.ndarray]:
    """``fill(parts, owner, res)`` in chunks of about equal bounding-box area, calling ``on_progress`` after each (the
    same cells in the same order as one call: each part is filled on its own)."""
    if on_progress is None or len(parts) < 2:
        out = fill(parts, owner, res)
        if on_progress is not None:
            on_progress(1.0)
        return out
    outer = [p[0] for p in parts]
    area = np.array([np.ptp(r[:, 0]) * np.ptp(r[:, 1]) for r in outer]) + 1e-12
    done = np.cumsum(area) / area.sum()
    done[-1] = 1.0  # not 0.99999...
    stops = np.unique(np.r_[np.searchsorted(done, np.arange(1, PROGRESS_STEPS) / PROGRESS_STEPS) + 1, len(parts)])
    polygon, cells = [], []
    start = 0
    for stop in stops[stops > 0]:
        p, c = fill(parts[start:stop], owner[start:stop], res)
        polygon.append(p)
        cells.append(c)
        start = stop
        on_progress(float(done[stop - 1]))
    return np.concatenate(polygon), np.concatenate(cells)


def _center_cells(parts: list[Polygon], owner: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    plh3 = _backend.polars_h3()
    if plh3 is not None:
        import polars as pl

        frame = pl.DataFrame({"polygon": owner, "wkb": [polygon_wkb([p]) for p in parts]})
        out = frame.select("polygon", plh3.polygon_to_cells("wkb", res).alias("cell")).explode("cell")
        out = out.drop_nulls("cell")
        return out["polygon"].to_numpy().astype(np.int64), out["cell"].to_numpy().astype(np.uint64)
    import h3.api.numpy_int as h3n

    found = [h3n.h3shape_to_cells(_h3shape(p), res) for p in parts]
    return _stack(found, owner)


def _overlap_cells(parts: list[Polygon], owner: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    import h3.api.numpy_int as h3n

    found = [h3n.h3shape_to_cells_experimental(_h3shape(p), res, contain="overlap") for p in parts]
    return _stack(found, owner)


def _h3shape(rings: Polygon):
    import h3

    return h3.LatLngPoly(*[r[:-1, ::-1].tolist() for r in rings])


def _stack(found: list[np.ndarray], owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    cells = np.concatenate(found).astype(np.uint64) if found else np.zeros(0, dtype=np.uint64)
    return np.repeat(owner, sizes), cells
