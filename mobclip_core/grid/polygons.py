"""Polygons to H3 cells, in bulk."""

from __future__ import annotations

from typing import Literal

import h3
import numpy as np
import pandas as pd
import shapely

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError
from .cells import validate_resolution
from .geometry import split_for_h3

Containment = Literal["center", "overlap"]


def polygons_to_cells(
    geometries, resolution: int, *, containment: Containment = "center", cell_ids: str = "uint64"
) -> pd.DataFrame:
    """Cells covering each WGS84 polygon.

    ``containment="center"`` keeps cells whose centre lies in the polygon, so adjacent polygons get disjoint
    cells (what aggregation over admin units needs). ``"overlap"`` keeps every cell that touches the polygon.
    Returns a DataFrame with columns ``polygon`` (position in ``geometries``) and ``h3_cell``.
    """
    res = validate_resolution(resolution)
    if containment not in ("center", "overlap"):
        raise InvalidInputError(f"containment must be 'center' or 'overlap', got {containment!r}")
    parts, owner = _prepare_parts(np.asarray(geometries, dtype=object))
    if parts.size == 0:
        return pd.DataFrame({"polygon": np.zeros(0, dtype=np.int64), REGION_INDEX: np.zeros(0, dtype=np.uint64)})
    if containment == "center":
        polygon, cells = _center_cells_polars(parts, owner, res)
        df = pd.DataFrame({"polygon": polygon, REGION_INDEX: cells})
    else:
        polygon, cells = _overlap_cells_h3(parts, owner, res)
        df = pd.DataFrame({"polygon": polygon, REGION_INDEX: cells}).drop_duplicates(ignore_index=True)
    if cell_ids == "str":
        from .cells import cells_to_strings

        df[REGION_INDEX] = cells_to_strings(df[REGION_INDEX].to_numpy())
    return df


def _prepare_parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygons ready for H3 and the index of the input each came from.

    The common case (valid, inside +-180, under 90 degrees wide) is handled in bulk; only wide, wrapped or
    invalid geometries go through ``split_for_h3`` one by one. Parts over a degree across are densified so
    H3's great-circle edges follow the drawn edges.
    """
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    bounds = np.full((geoms.size, 4), np.nan)
    if present.any():
        bounds[present] = shapely.bounds(geoms[present])
    width = bounds[:, 2] - bounds[:, 0]
    inside = (bounds[:, 0] >= -180) & (bounds[:, 2] <= 180) & (width <= 90)
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))  # Polygon, MultiPolygon
    simple = present & inside & polygonal
    simple[simple] = shapely.is_valid(geoms[simple])
    idx = np.flatnonzero(simple)
    parts_simple, part_owner = shapely.get_parts(geoms[idx], return_index=True)
    owner_simple = idx[part_owner]
    big = np.flatnonzero(
        shapely.bounds(parts_simple)[:, 2:].max(axis=1) - shapely.bounds(parts_simple)[:, :2].min(axis=1) > 1.0
    )
    if big.size:
        parts_simple[big] = shapely.segmentize(parts_simple[big], 1.0)
    other_parts, other_owner = [], []
    for i in np.flatnonzero(present & ~simple):
        for p in split_for_h3(geoms[i]):
            other_parts.append(p)
            other_owner.append(i)
    parts = np.concatenate([parts_simple, np.array(other_parts, dtype=object)])
    owner = np.concatenate([owner_simple, np.array(other_owner, dtype=np.int64)]).astype(np.int64)
    return parts, owner


def _center_cells_polars(parts, owner, res) -> tuple[np.ndarray, np.ndarray]:
    import polars as pl
    import polars_h3 as plh3

    # output_dimension=2: inside QGIS an older system GEOS may be the one loaded, and it rejects the default
    wkb = shapely.to_wkb(np.asarray(parts), output_dimension=2)
    frame = pl.DataFrame({"polygon": np.asarray(owner, dtype=np.int64), "wkb": wkb})
    out = frame.select("polygon", plh3.polygon_to_cells("wkb", res).alias("cell")).explode("cell").drop_nulls("cell")
    return out["polygon"].to_numpy(), out["cell"].to_numpy().astype(np.uint64)


def _overlap_cells_h3(parts, owner, res) -> tuple[np.ndarray, np.ndarray]:
    polys, cells = [], []
    for i, p in zip(owner, parts):
        shape = h3.geo_to_h3shape(p.__geo_interface__)
        found = h3.h3shape_to_cells_experimental(shape, res, contain="overlap")
        cells.extend(int(c, 16) for c in found)
        polys.extend([i] * len(found))
    return np.asarray(polys, dtype=np.int64), np.asarray(cells, dtype=np.uint64)
