"""Weighted flows between places -> the undirected cell graph; several graphs -> one, with per-source weights.

Every mobility proxy ends here: a trip table gives one flow per trip (pick-up -> drop-off), a GTFS feed one flow per
pair of linked stops (weighted by weekly trips), LODES one flow per home-work block pair (weighted by jobs).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...exceptions import InvalidInputError
from ...grid import points_to_cells, validate_resolution
from .graph import MobilityGraph


class FlowGraphBuilder:
    """Accumulates flows chunk by chunk; memory grows with the distinct cell pairs, not with the flows.

    Flow between cells i and j adds to the undirected edge (i, j); flows within one cell are dropped (they say
    nothing about how cells connect).
    """

    def __init__(self, resolution: int) -> None:
        from ._kernels import CellIndex

        self.resolution = validate_resolution(resolution)
        self._index = CellIndex()
        self._upper: sp.csr_matrix | None = None
        self.flows_seen = 0
        self.weight_seen = 0.0

    def add_points(self, o_lon, o_lat, d_lon, d_lat, weight=None, *, what: str = "flows") -> None:
        """Add flows between WGS84 points (origin and destination coordinates)."""
        o = points_to_cells(o_lon, o_lat, self.resolution)
        d = points_to_cells(d_lon, d_lat, self.resolution)
        self.add_cells(o, d, weight, what=what)

    def add_cells(self, origin_cells, destination_cells, weight=None, *, what: str = "flows") -> None:
        """Add flows between H3 cells (``uint64``) of this builder's resolution."""
        o = np.asarray(origin_cells, dtype=np.uint64)
        d = np.asarray(destination_cells, dtype=np.uint64)
        w = np.ones(o.size) if weight is None else np.asarray(weight, dtype=np.float64)
        if not (o.size == d.size == w.size):
            raise InvalidInputError(f"{what}: origins, destinations and weights must have the same length")
        if w.size and (not np.isfinite(w).all() or (w < 0).any()):
            raise InvalidInputError(f"{what}: flow weights must be finite and non-negative")
        if o.size == 0:
            return
        self.flows_seen += o.size
        self.weight_seen += float(w.sum())
        i, j = self._index.ids(o), self._index.ids(d)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        keep = lo != hi
        n = len(self._index)
        chunk = sp.csr_matrix((w[keep], (lo[keep], hi[keep])), shape=(n, n))
        if self._upper is None:
            self._upper = chunk
        else:
            self._upper.resize((n, n))
            self._upper = self._upper + chunk

    def finish(self) -> MobilityGraph:
        """The graph of everything added; cells sorted by id."""
        n = len(self._index)
        if n == 0:
            raise InvalidInputError("no flows were added: the mobility graph would be empty")
        upper = self._upper if self._upper is not None else sp.csr_matrix((n, n))
        upper.resize((n, n))
        cells = self._index.cells
        order = np.argsort(cells)
        upper = upper[order][:, order]
        return MobilityGraph(cells[order], (upper + upper.T).tocsr())


def combine_graphs(parts: list[tuple[MobilityGraph, float]]) -> MobilityGraph:
    """One graph from several sources: each source's flow is scaled to a share of the whole by its weight.

    Sources count different things (trips, weekly departures, jobs), so each graph is first divided by its total
    edge weight; then it is multiplied by ``weight / sum(weights)``. The combined graph's edge weights sum to 1, and
    a source of weight 2 carries twice the flow of a source of weight 1, however many trips either counted.
    A single source is returned as it is.
    """
    if not parts:
        raise InvalidInputError("no mobility source to combine")
    for _, w in parts:
        if not (np.isfinite(w) and w > 0):
            raise InvalidInputError(f"mobility source weights must be positive, got {w}")
    if len(parts) == 1:
        return parts[0][0]
    cells = np.unique(np.concatenate([g.cells for g, _ in parts]))
    total_weight = sum(w for _, w in parts)
    combined = sp.csr_matrix((cells.size, cells.size))
    for graph, w in parts:
        flow = graph.adjacency.sum() / 2.0
        if flow <= 0:
            raise InvalidInputError("a mobility source gives a graph without edges; drop it or fix its input")
        combined = combined + graph.reindex(cells).adjacency * (w / total_weight / flow)
    return MobilityGraph(cells, combined)
