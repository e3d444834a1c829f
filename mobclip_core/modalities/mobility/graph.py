"""The mobility graph: a weighted, undirected graph between H3 cells in sparse storage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...exceptions import InvalidInputError
from ...grid import cells_to_strings
from ...io import atomic_path


@dataclass
class MobilityGraph:
    """Symmetric weighted adjacency between ``cells`` (``uint64``); zero diagonal."""

    cells: np.ndarray
    adjacency: sp.csr_matrix

    def __post_init__(self) -> None:
        self.cells = np.asarray(self.cells, dtype=np.uint64)
        a = self.adjacency
        a = a.astype(np.float64, copy=False) if sp.isspmatrix_csr(a) else sp.csr_matrix(a, dtype=np.float64)
        if a.shape != (self.cells.size, self.cells.size):
            raise InvalidInputError(f"adjacency shape {a.shape} does not match {self.cells.size} cells")
        a.sum_duplicates()
        a.eliminate_zeros()
        a.sort_indices()
        self.adjacency = a

    @property
    def n_cells(self) -> int:
        return int(self.cells.size)

    @property
    def n_edges(self) -> int:
        """Number of undirected edges."""
        return int(self.adjacency.nnz // 2)

    def degree(self) -> np.ndarray:
        return np.diff(self.adjacency.indptr)

    def strength(self) -> np.ndarray:
        """Sum of edge weights (flow) at each cell."""
        return np.asarray(self.adjacency.sum(axis=1)).ravel()

    def stats(self) -> dict:
        deg, flow = self.degree(), self.strength()
        w = self.adjacency.data
        return {
            "cells": self.n_cells,
            "edges": self.n_edges,
            "isolated_cells": int((deg == 0).sum()),
            "degree_mean": float(deg.mean()) if deg.size else 0.0,
            "degree_max": int(deg.max()) if deg.size else 0,
            "flow_total": float(w.sum() / 2),
            "flow_per_cell_median": float(np.median(flow)) if flow.size else 0.0,
            "edge_weight_max": float(w.max()) if w.size else 0.0,
        }

    def edges(self) -> pd.DataFrame:
        """Undirected edge list (each edge once, ``source < target`` by position), with hex cell ids."""
        upper = sp.triu(self.adjacency, k=1).tocoo()
        strs = cells_to_strings(self.cells)
        return pd.DataFrame({"source": strs[upper.row], "target": strs[upper.col], "weight": upper.data})

    def top_k(self, ratio: float) -> MobilityGraph:
        """Keep each cell's strongest ``ratio`` share of links (see ``sampling.top_k``)."""
        from .sampling import top_k

        return top_k(self, ratio)

    def random_sample(self, ratio: float, seed: int = 0) -> MobilityGraph:
        """Keep a random ``ratio`` share of each cell's links (see ``sampling.random_sample``)."""
        from .sampling import random_sample

        return random_sample(self, ratio, seed)

    def reindex(self, cells: np.ndarray) -> MobilityGraph:
        """The graph over ``cells`` (in that order); cells absent from the graph are isolated."""
        cells = np.asarray(cells, dtype=np.uint64)
        pos = pd.Index(self.cells).get_indexer(cells)
        have = pos >= 0
        p = sp.csr_matrix((np.ones(have.sum()), (np.flatnonzero(have), pos[have])), shape=(cells.size, self.n_cells))
        return MobilityGraph(cells, p @ self.adjacency @ p.T)

    def save(self, path: str | Path) -> None:
        """Write ``.npz`` with keys data,row,col,shape (the public MobCLIP layout) plus ``cells``."""
        coo = self.adjacency.tocoo()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh, data=coo.data, row=coo.row, col=coo.col, shape=np.array(coo.shape), cells=self.cells
                )

    @classmethod
    def load(cls, path: str | Path) -> MobilityGraph:
        with np.load(path) as z:
            shape = tuple(int(x) for x in z["shape"])
            adj = sp.coo_matrix((z["data"], (z["row"], z["col"])), shape=shape).tocsr()
            return cls(z["cells"], adj)

    def __repr__(self) -> str:
        return f"MobilityGraph({json.dumps(self.stats())})"
