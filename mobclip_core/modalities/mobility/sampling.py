"""Edge sampling of the mobility graph before training: each cell keeps a share of its links (MobCLIP's top-k)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...exceptions import InvalidInputError
from .graph import MobilityGraph


def _keep(graph: MobilityGraph, mask: np.ndarray) -> MobilityGraph:
    """Keep the directed entries in ``mask``; an edge stays if either endpoint keeps it."""
    a = graph.adjacency
    kept = sp.csr_matrix((a.data * mask, a.indices.copy(), a.indptr.copy()), shape=a.shape)
    kept.eliminate_zeros()
    return MobilityGraph(graph.cells, kept.maximum(kept.T))


def _per_node_budget(graph: MobilityGraph, ratio: float) -> np.ndarray:
    if not 0.0 < ratio <= 1.0:
        raise InvalidInputError(f"sampling ratio must be in (0, 1], got {ratio}")
    deg = graph.degree()
    return np.where(deg > 0, np.maximum(1, np.ceil(ratio * deg)), 0).astype(np.int64)


def _rank_within_rows(a: sp.csr_matrix, order: np.ndarray) -> np.ndarray:
    """Position of each stored entry within its row under ``order`` (0 = first)."""
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - np.repeat(a.indptr[:-1], np.diff(a.indptr))
    return rank


def top_k(graph: MobilityGraph, ratio: float) -> MobilityGraph:
    """Keep each cell's strongest ``ratio`` share of links (at least one); ties broken by neighbour id."""
    a = graph.adjacency
    row = np.repeat(np.arange(graph.n_cells), np.diff(a.indptr))
    order = np.lexsort((a.indices, -a.data, row))  # by row, then weight descending, then column
    return _keep(graph, _rank_within_rows(a, order) < _per_node_budget(graph, ratio)[row])


def random_sample(graph: MobilityGraph, ratio: float, seed: int = 0) -> MobilityGraph:
    """Keep a random ``ratio`` share of each cell's links (same count as top_k, chosen uniformly)."""
    a = graph.adjacency
    row = np.repeat(np.arange(graph.n_cells), np.diff(a.indptr))
    keys = np.random.default_rng(seed).random(a.nnz)
    order = np.lexsort((keys, row))
    return _keep(graph, _rank_within_rows(a, order) < _per_node_budget(graph, ratio)[row])
