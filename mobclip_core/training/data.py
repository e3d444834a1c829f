"""What training needs from a region dataset: the graph it runs on, aligned modality features, a validation split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..config import TrainConfig
from ..exceptions import ConfigError, InvalidInputError, ModalityMissingError
from ..modalities.mobility.graph import MobilityGraph
from ..options import Sampling

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Tensors of one run (on ``device``); ``connected`` marks the cells with mobility links."""

    modalities: list[str]
    features: dict  # modality -> float tensor (n_cells, d), zeros where missing
    present: dict  # modality -> bool tensor (n_cells,)
    standardisation: dict  # modality -> (mean, sd) tensors over the cells that have it
    edge_index: object  # long tensor (2, n_edges) of the sampled (and blended) graph
    edge_weight: object  # float tensor (n_edges,)
    connected: object  # bool tensor (n_cells,)
    train_idx: object
    val_idx: object

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.features.items()}


def select_modalities(dataset, cfg: TrainConfig) -> list[str]:
    """Modalities to align: those requested that the dataset has; refuse all-missing ones."""
    chosen = [m for m in cfg.modalities if m in dataset.features]
    for m in chosen:
        dataset.feature_matrix(m)  # raises ModalityMissingError when no cell has it
    if cfg.anchor != "mobility" and cfg.anchor not in chosen:
        raise ConfigError(f"anchor {cfg.anchor!r} is not among the dataset's modalities {chosen}")
    if cfg.clip and not chosen:
        raise ModalityMissingError(
            f"no auxiliary modality to align: the dataset has {sorted(dataset.features)}, the config asks for "
            f"{cfg.modalities}. Add POI, image or demographics inputs, or set [train] clip = false"
        )
    return chosen


def spatial_graph(cells: np.ndarray, k: int = 1, *, include_self: bool = False) -> sp.csr_matrix:
    """Binary adjacency of cells within ``k`` H3 grid steps of each other (ring 1: grid neighbours), in ``cells``
    order; links to cells outside ``cells`` are dropped."""
    import pandas as pd

    from ..grid import neighbours

    cells = np.asarray(cells, dtype=np.uint64)
    pairs = neighbours(cells, k, include_self=include_self)
    index = pd.Index(cells)
    src = index.get_indexer(pairs["h3_cell"].to_numpy())
    dst = index.get_indexer(pairs["neighbour"].to_numpy())
    keep = (src >= 0) & (dst >= 0)
    a = sp.csr_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=(cells.size, cells.size))
    return a.maximum(a.T)


def ring_means(
    cells: np.ndarray, x: np.ndarray, k: int, *, weights: np.ndarray | None = None, block: int = 16_384
) -> np.ndarray:
    """Row ``i``: the mean of ``x`` over the cells within ``k`` grid steps of ``cells[i]`` that are in ``cells``
    (itself included), in float64; with ``weights``, each row of ``x`` counts that many times. Row blocks bound the
    memory (a block's neighbour pairs, not the whole graph); a block holds ``block`` x (3k(k+1) + 1) pairs."""
    import pandas as pd

    from ..grid import neighbours

    cells = np.asarray(cells, dtype=np.uint64)
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(cells.size) if weights is None else np.asarray(weights, dtype=np.float64)
    wx = x * w[:, None]
    index = pd.Index(cells)
    out = np.empty_like(x)
    for lo in range(0, cells.size, block):
        rows = cells[lo : lo + block]
        pairs = neighbours(rows, k, include_self=True)
        src = pd.Index(rows).get_indexer(pairs["h3_cell"].to_numpy())
        dst = index.get_indexer(pairs["neighbour"].to_numpy())
        keep = dst >= 0
        a = sp.csr_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(rows.size, cells.size))
        out[lo : lo + rows.size] = (a @ wx) / (a @ w)[:, None]
    return out


# Rings wider than this are taken on a coarser grid (a disk of 25 rings holds 1,951 cells; of 149, at resolution
# 12 for 2.8 km, 67,051: tens of GB of neighbour pairs for a city)
MAX_CONTEXT_RINGS = 25


def _step_m(resolution: int) -> float:
    """Mean distance between neighbouring cell centres at ``resolution``."""
    import h3

    return h3.average_hexagon_edge_length(resolution, unit="m") * 3**0.5


def context_means(cells: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """``ring_means`` for a neighbourhood of ``k`` grid steps, whatever its width: up to ``MAX_CONTEXT_RINGS`` exact;
    wider, at the finest coarser resolution where the same distance is at most that many steps, each cell taking the
    mean over the cells whose parents lie within it of its own parent (the neighbourhood's edge moves by under a
    parent cell; cost linear in cells)."""
    from ..grid import cell_resolution, parent_cells

    cells = np.asarray(cells, dtype=np.uint64)
    if k <= MAX_CONTEXT_RINGS or not cells.size:
        return ring_means(cells, x, k)
    resolutions = np.unique(cell_resolution(cells))
    if resolutions.size > 1:
        raise InvalidInputError(f"neighbourhood means need cells of one H3 resolution, got {resolutions.tolist()}")
    resolution = int(resolutions[0])
    distance = k * _step_m(resolution)
    # the finest coarser grid where the distance is at most MAX_CONTEXT_RINGS steps (resolution 0 at the widest)
    coarse = next((r for r in range(resolution - 1, 0, -1) if round(distance / _step_m(r)) <= MAX_CONTEXT_RINGS), 0)
    parents, inverse = np.unique(parent_cells(cells, coarse), return_inverse=True)
    count = np.bincount(inverse, minlength=parents.size).astype(np.float64)
    total = sp.csr_matrix((np.ones(cells.size), (inverse, np.arange(cells.size))), shape=(parents.size, cells.size))
    parent_mean = (total @ np.asarray(x, dtype=np.float64)) / count[:, None]
    return ring_means(parents, parent_mean, int(round(distance / _step_m(coarse))), weights=count)[inverse]


def context_rings(resolution: int, distances_m) -> tuple[int, ...]:
    """The H3 rings (grid steps) nearest to ``distances_m`` at ``resolution``; a distance under half a step is the
    cell itself and drops out, so a coarse grid gets no context."""
    step_m = _step_m(resolution)  # centre to centre
    return tuple(sorted({int(round(d / step_m)) for d in distances_m} - {0}))


def neighbourhood_context(cells: np.ndarray, x: np.ndarray, rings: tuple[int, ...], weight: float = 0.5) -> np.ndarray:
    """``(1 - weight) * x + weight * (the average of x's means over each of rings)`` (``context_means``), in ``x``'s
    dtype: a cell's vector that also carries the neighbourhood it sits in. No rings or weight 0: ``x`` itself."""
    if not rings or weight == 0:
        return x
    around = sum(context_means(cells, x, k) for k in rings) / len(rings)
    return ((1.0 - weight) * np.asarray(x, dtype=np.float64) + weight * around).astype(x.dtype)


def blend_spatial(graph: MobilityGraph, weight: float) -> MobilityGraph:
    """The graph plus H3-neighbour links of ``weight`` x its mean link weight.

    Links to grid neighbours give the cells the mobility data never reaches a place in the graph LightGCN
    propagates over, and smooth the rest the way neighbouring places are alike. ``weight = 0`` changes nothing.
    """
    if weight <= 0:
        return graph
    a = graph.adjacency
    scale = float(a.data.mean()) if a.nnz else 1.0
    return MobilityGraph(graph.cells, a + spatial_graph(graph.cells) * (weight * scale))


def coverage_report(graph: MobilityGraph, spatial_weight: float = 0.0) -> dict:
    """How many cells the mobility data reaches; a warning is logged when some have no link at all."""
    isolated = int((graph.degree() == 0).sum())
    share = isolated / max(graph.n_cells, 1)
    if isolated:
        neighbours = (
            "and from their grid neighbours (spatial links, [mobility] spatial_weight)"
            if spatial_weight > 0
            else "only ([mobility] spatial_weight = 0: set it > 0 to link them to their grid neighbours)"
        )
        log.warning(
            "%d of %d cells (%.1f%%) have no mobility link: their mobility tower is empty, so their embedding comes "
            "from their other modalities %s",
            isolated,
            graph.n_cells,
            100 * share,
            neighbours,
        )
    return {"cells": graph.n_cells, "cells_without_mobility": isolated, "share_without_mobility": share}


def _standardise(x: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x[present].mean(axis=0)
    sd = x[present].std(axis=0)
    sd[sd < 1e-8] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def prepare_training_data(
    dataset,
    cfg: TrainConfig,
    *,
    sampling: str = Sampling.TOP_K,
    ratio: float = 0.3,
    spatial_weight: float = 0.0,
    device: str = "cpu",
) -> TrainingData:
    """Sample the mobility graph and blend in spatial links, align features, split off validation cells."""
    import torch

    modalities = select_modalities(dataset, cfg)
    graph = dataset.graph
    connected = graph.degree() > 0
    sampled = graph.top_k(ratio) if Sampling(sampling) == Sampling.TOP_K else graph.random_sample(ratio, cfg.seed)
    coo = blend_spatial(sampled, spatial_weight).adjacency.tocoo()
    features, present, stats = {}, {}, {}
    for m in modalities:
        x, p = dataset.feature_matrix(m)
        mu, sd = _standardise(x, p)
        features[m] = torch.from_numpy(np.where(p[:, None], x, mu)).to(device)  # missing rows standardise to 0
        present[m] = torch.from_numpy(p.copy()).to(device)
        stats[m] = (torch.from_numpy(mu), torch.from_numpy(sd))
    n = dataset.cells.size
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    n_val = max(1, int(round(cfg.val_fraction * n))) if n >= 10 else 0
    return TrainingData(
        modalities=modalities,
        features=features,
        present=present,
        standardisation=stats,
        edge_index=torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
        edge_weight=torch.from_numpy(coo.data.astype(np.float32)),
        connected=torch.from_numpy(connected).to(device),
        train_idx=perm[n_val:].to(device),
        val_idx=perm[:n_val].to(device),
    )
