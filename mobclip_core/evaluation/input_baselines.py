"""Baselines every learned representation must beat: the model's own inputs, unlearned.

Each function returns a per-cell table (index ``h3_cell``, the dataset's cell order) that the evaluation harness
scores like an embedding:

- ``input_features``: the inputs concatenated: mobility (the LINE embedding, or a truncated SVD of the flows),
  each auxiliary modality (wide text/image features reduced by PCA) with a presence flag;
- ``reduced``: any table reduced by PCA to the embedding's width;
- ``propagated``: features spread over the mobility graph with no learning, the way LightGCN propagates
  (symmetric normalisation, sum of hops 0..K);
- ``with_coordinates``: any table plus the cell centres' coordinates, raw or as a location encoder's code;
- ``with_neighbourhood``: any table plus its means over the H3 rings around each cell (the surrounding 1-2 km at
  resolution 9), which no learning is needed for.

``input_baselines`` assembles the standard set side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..grid import cell_centroids


def _frame(x: np.ndarray, dataset, prefix: str) -> pd.DataFrame:
    x = np.asarray(x, dtype=np.float32)
    return pd.DataFrame(x, index=dataset.cell_ids, columns=[f"{prefix}{i}" for i in range(x.shape[1])])


def _pca(x: np.ndarray, k: int, rows: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """PCA of ``x`` fitted on ``rows`` (default all) to ``k`` components; other rows stay zero."""
    from sklearn.decomposition import PCA

    rows = np.ones(len(x), dtype=bool) if rows is None else rows
    k = int(min(k, x.shape[1], rows.sum()))
    out = np.zeros((len(x), k), dtype=np.float32)
    out[rows] = PCA(k, random_state=seed).fit_transform(x[rows])
    return out


def flow_svd(graph, k: int = 32, seed: int = 0) -> np.ndarray:
    """Rank-``k`` truncated SVD of the log-scaled flow matrix (rows scaled by the square root of the singular values).

    Not of the symmetrically normalised matrix: there every connected component, and every cluster of cells that
    trade flows mostly among themselves (the cells of one tract, when OD flows are spread over them), has a
    singular value near 1, so the leading components are each nonzero in one place only: they carry nothing about
    where flows go, and a linear model explodes where that place is held out. Unnormalised, the leading components
    are the flow patterns that carry the most trips.
    """
    from scipy.sparse.linalg import svds

    a = graph.adjacency.copy()
    a.data = np.log1p(a.data)
    k = int(max(min(k, min(a.shape) - 1), 0))
    if k == 0 or a.nnz == 0:
        return np.zeros((a.shape[0], k), dtype=np.float32)
    u, s, _ = svds(a, k=k, v0=np.random.default_rng(seed).random(a.shape[0]))
    order = np.argsort(-s)
    return (u[:, order] * np.sqrt(s[order])).astype(np.float32)


def symmetric_normalise(adjacency) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 (rows without links stay zero)."""
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = 1.0 / np.sqrt(deg[deg > 0])
    return sp.diags(inv) @ a @ sp.diags(inv)


def input_features(
    dataset,
    mobility: np.ndarray | None,
    *,
    modality_dim: int = 16,
    modalities: list[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The model's inputs per cell, concatenated: ``mobility`` (n_cells, d) then each auxiliary modality.

    Modalities wider than ``modality_dim`` (text, image) are reduced by PCA over the cells that have them; every
    modality gets a 0/1 presence column, and missing rows are zeros.
    """
    parts = [] if mobility is None else [np.asarray(mobility, dtype=np.float32)]
    for m in sorted(dataset.features) if modalities is None else modalities:
        x, present = dataset.feature_matrix(m)
        if x.shape[1] > modality_dim:
            x = _pca(x, modality_dim, present, seed)
        parts.append(np.c_[x * present[:, None], present.astype(np.float32)])
    return _frame(np.concatenate(parts, axis=1), dataset, "in_")


def reduced(table: pd.DataFrame, dim: int, seed: int = 0) -> pd.DataFrame:
    """``table`` standardised and reduced by PCA to ``dim`` columns (the embedding's width)."""
    x = table.to_numpy(dtype=np.float64)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    out = _pca(x, dim, seed=seed)
    return pd.DataFrame(out, index=table.index, columns=[f"pc_{i}" for i in range(out.shape[1])])


def propagated(table: pd.DataFrame, graph, hops: int = 2) -> pd.DataFrame:
    """Sum over hops 0..``hops`` of D^-1/2 A D^-1/2 applied to ``table`` (rows in the graph's cell order)."""
    a = symmetric_normalise(graph.adjacency)
    x = table.to_numpy(dtype=np.float64)
    out, cur = x.copy(), x
    for _ in range(hops):
        cur = a @ cur
        out += cur
    return pd.DataFrame(out.astype(np.float32), index=table.index, columns=[f"prop_{c}" for c in table.columns])


def with_coordinates(table: pd.DataFrame, encoder=None) -> pd.DataFrame:
    """``table`` plus each cell centre's longitude and latitude or, with ``encoder`` (a location encoder: ``(lon,
    lat) -> array``), its code of the centre: "MobCLIP + SH" against "SH" asks whether the embedding adds to that
    encoding of the coordinates, which "MobCLIP + raw coordinates" against "SH" cannot tell apart from how well the
    trees use a multi-scale code."""
    from ..grid import strings_to_cells

    lon, lat = cell_centroids(strings_to_cells(table.index.to_numpy()))
    if encoder is None:
        return table.assign(lon=lon.astype(np.float32), lat=lat.astype(np.float32))
    code = np.asarray(encoder(lon, lat), dtype=np.float32).reshape(len(table), -1)
    columns = [f"loc{i}" for i in range(code.shape[1])]
    return pd.concat([table, pd.DataFrame(code, index=table.index, columns=columns)], axis=1)


def with_neighbourhood(table: pd.DataFrame, rings: tuple[int, ...] = (2, 4)) -> pd.DataFrame:
    """``table`` plus, for each ``k`` in ``rings``, the mean of its rows over the cells within ``k`` grid steps
    (those in the table, the cell itself included). On Chicago the inputs with these means beat the learned
    embedding at tract level: the neighbourhood a place sits in is a strong, free feature."""
    from ..grid import strings_to_cells
    from ..training.data import ring_means

    cells = strings_to_cells(table.index.to_numpy())
    x = table.to_numpy(dtype=np.float64)
    parts = [table]
    for k in rings:
        columns = [f"ring{k}_{c}" for c in table.columns]
        parts.append(pd.DataFrame(ring_means(cells, x, k).astype(np.float32), index=table.index, columns=columns))
    return pd.concat(parts, axis=1)


def input_baselines(dataset, line_embedding: np.ndarray, *, width: int = 128, seed: int = 0) -> dict:
    """The standard unlearned baselines of a region dataset, by name (see the module docstring)."""
    raw_line = input_features(dataset, line_embedding, seed=seed)
    raw_svd = input_features(dataset, flow_svd(dataset.graph, seed=seed), seed=seed)
    return {
        "LINE alone": _frame(line_embedding, dataset, "line_"),
        "inputs (LINE + modalities)": raw_line,
        "inputs (flow SVD + modalities)": raw_svd,
        f"inputs reduced to {width}-d": reduced(raw_line, width, seed),
        "inputs propagated over the graph": propagated(raw_line, dataset.graph),
        "inputs + propagated": pd.concat([raw_line, propagated(raw_line, dataset.graph)], axis=1),
        "inputs + neighbourhood means": with_neighbourhood(raw_line),
    }
