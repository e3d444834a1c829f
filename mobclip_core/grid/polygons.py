"""Polygons to H3 cells, in bulk."""

from __future__ import annotations

from typing import Literal

import h3
import numpy as np
import pandas as pd
import shapely

from ..constants import REGION_INDEX
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
        raise ValueError(f"containment must be 'center' or 'overlap', got {containment!r}")
    geoms = np.asarray(geometries, dtype=object)
    owner: list[int] = []
    parts: list[shapely.Geometry] = []
    for i, g in enumerate(geoms):
        for p in split_for_h3(g):
            owner.append(i)
            parts.append(p)
    if not parts:
        return pd.DataFrame({"polygon": np.zeros(0, dtype=np.int64), REGION_INDEX: np.zeros(0, dtype=np.uint64)})
    if containment == "center":
        polygon, cells = _center_cells_polars(parts, owner, res)
    else:
        polygon, cells = _overlap_cells_h3(parts, owner, res)
    df = pd.DataFrame({"polygon": polygon, REGION_INDEX: cells}).drop_duplicates(ignore_index=True)
    if cell_ids == "str":
        from .cells import cells_to_strings

        df[REGION_INDEX] = cells_to_strings(df[REGION_INDEX].to_numpy())
    return df


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
