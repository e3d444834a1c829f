"""Mobility graphs from origin-destination tables keyed by H3 cells or by zones (census tracts, districts)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...constants import REGION_INDEX
from ...exceptions import InvalidInputError
from ...grid import cell_area_km2, polygons_to_cells, strings_to_cells, to_wgs84
from ...sources.zones import normalise_zone_ids
from .graph import MobilityGraph


def zones_to_cells(zones, resolution: int, *, zone_id: str, cell_weights: pd.Series | None = None) -> pd.DataFrame:
    """Spread zones (polygons) onto H3 cells: rows (zone, h3_cell, weight) with weights summing to 1 per zone.

    Cells are assigned by centre containment, so every cell belongs to one zone. Weights are proportional to
    cell area, or to ``cell_weights`` (e.g. population per cell from ``raster_to_cells``) where a zone has any.
    A zone too small to contain a cell centre gets the cell holding its representative point.
    """
    zones = to_wgs84(zones, what="zone layer")
    if zone_id not in zones.columns:
        raise InvalidInputError(f"zone layer has no column {zone_id!r}; it has {list(zones.columns)}")
    pairs = polygons_to_cells(zones.geometry.values, resolution, fallback="point")
    pairs["zone"] = zones[zone_id].to_numpy()[pairs["polygon"].to_numpy()]
    pairs["weight"] = cell_area_km2(pairs[REGION_INDEX].to_numpy())
    if cell_weights is not None:
        cw = cell_weights.copy()
        cw.index = strings_to_cells(cw.index.to_numpy())
        w = cw.reindex(pairs[REGION_INDEX].to_numpy()).fillna(0.0).to_numpy()
        zone_total = pd.Series(w).groupby(pairs["zone"].to_numpy()).transform("sum").to_numpy()
        pairs["weight"] = np.where(zone_total > 0, w, pairs["weight"])
    pairs["weight"] /= pairs.groupby("zone")["weight"].transform("sum")
    return pairs[["zone", REGION_INDEX, "weight"]]


def build_od_graph(
    od: pd.DataFrame,
    *,
    origin: str = "origin",
    destination: str = "destination",
    flow: str = "flow",
    zone_cells: pd.DataFrame | None = None,
    resolution: int | None = None,
    say: Callable[[str], None] | None = None,
) -> MobilityGraph:
    """Undirected cell graph from an origin-destination table.

    Origins and destinations are H3 cells, or zone ids spread to cells by ``zone_cells`` (from ``zones_to_cells``):
    flow between zones a and b goes to cell pairs (i, j) in proportion to w_ai * w_bj, i.e. C = W^T F W.
    Directions are summed (A = C + C^T) and flows within one cell are dropped. Cells finer than ``resolution`` are
    summed into their parents (coarser ones are refused); rows whose zone id the zone layer lacks are skipped and
    counted through ``say``.
    """
    missing = {origin, destination, flow} - set(od.columns)
    if missing:
        raise InvalidInputError(f"OD table lacks columns {sorted(missing)}; it has {list(od.columns)}")
    f = pd.to_numeric(od[flow], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(f).any() and od[flow].notna().all():
        bad = od[flow][np.isnan(f)].iloc[0]
        raise InvalidInputError(
            f"OD column {flow!r} must hold numbers; {int(np.isnan(f).sum())} rows do not (e.g. {bad!r}): "
            "fix or drop those rows, or name the right column with [mobility] flow"
        )
    if (f < 0).any() or not np.isfinite(f).all():
        raise InvalidInputError("OD flows must be finite and non-negative")
    if zone_cells is None:
        o, d = strings_to_cells(od[origin].to_numpy()), strings_to_cells(od[destination].to_numpy())
        if resolution is not None:
            o, d = _at_resolution(o, resolution), _at_resolution(d, resolution)
        cells, inv = np.unique(np.concatenate([o, d]), return_inverse=True)
        n = cells.size
        c = sp.csr_matrix((f, (inv[: o.size], inv[o.size :])), shape=(n, n))
    else:
        # ids compared as normalised text: 6075, 6075.0, "06075" are the same zone (an OD CSV read with types
        # detected against a zone layer's text GEOIDs, as census files hold them)
        zone_ids = pd.Series(normalise_zone_ids(zone_cells["zone"]))
        zones = pd.Index(pd.unique(zone_ids))
        cells, cell_inv = np.unique(zone_cells[REGION_INDEX].to_numpy(np.uint64), return_inverse=True)
        w = sp.csr_matrix(
            (zone_cells["weight"].to_numpy(), (zones.get_indexer(zone_ids), cell_inv)), shape=(len(zones), cells.size)
        )
        oi = zones.get_indexer(normalise_zone_ids(od[origin]))
        di = zones.get_indexer(normalise_zone_ids(od[destination]))
        known = (oi >= 0) & (di >= 0)
        if not known.any():
            raise InvalidInputError(
                f"no OD zone id matches the zone layer (OD ids like {list(od[origin].astype(str)[:3])}, zone ids "
                f"like {list(zones[:3])}): check the zone id column of both"
            )
        if not known.all() and say is not None:
            lost = ~known
            example = od[origin].astype(str)[oi < 0] if (oi < 0).any() else od[destination].astype(str)[di < 0]
            say(
                f"mobility: {int(lost.sum())} of {len(od)} OD rows ({f[lost].sum():.6g} of {f.sum():.6g} flow) name "
                f"a zone the zone layer lacks (e.g. {example.iloc[0]!r}), skipped"
            )
        fz = sp.csr_matrix((f[known], (oi[known], di[known])), shape=(len(zones), len(zones)))
        c = (w.T @ fz @ w).tocsr()
    a = (c + c.T).tocsr()
    a.setdiag(0.0)
    a.eliminate_zeros()
    if a.nnz == 0:
        raise InvalidInputError("the OD table gives an empty graph (all flows zero or within one cell)")
    return MobilityGraph(cells, a)


def _at_resolution(cells: np.ndarray, resolution: int) -> np.ndarray:
    """OD cells at the grid's resolution: finer ones summed into their parents, coarser ones refused."""
    from ...grid import cell_resolution, parent_cells

    have = np.unique(cell_resolution(cells))
    if (have < resolution).any():
        raise InvalidInputError(
            f"the OD table's cells are at H3 resolution {int(have.min())}, coarser than the grid's {resolution}: set "
            f"resolution = {int(have.min())} in the config, or give the flows with a zone layer"
        )
    return parent_cells(cells, resolution) if (have > resolution).any() else cells
