"""Where does information get lost? Diagnostics of an embedding against the inputs it was learned from.

- ``modality_recovery``: how well each input modality can be predicted back from the embedding (Ridge, spatially
  blocked folds); a low score means the embedding dropped that input.
- ``effective_rank``: how many directions the embedding really uses (exp of the entropy of its singular values).
- ``near_duplicates``: the share of cells whose nearest other cell has (almost) the same vector, e.g. every cell of
  a tract when OD flows are spread over the tract by area.
- ``training_curve``: what the loss log says (did validation improve, when did it stop).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy) of the normalised singular values of the centred matrix (1 = one direction, d = all equal)."""
    x = np.asarray(x, dtype=np.float64)
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum() if s.sum() > 0 else s
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def near_duplicates(
    x: np.ndarray, cosine: float = 0.999, *, sample: int = 5000, block: int = 2048, seed: int = 0
) -> float:
    """Share of rows whose most similar other row has cosine similarity >= ``cosine`` (zero rows excluded).

    Estimated on a seeded sample of ``sample`` rows (each compared with every row), so the cost stays
    ``sample x n x d`` on a national table.
    """
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1)
    ok = norm > 0
    u = x[ok] / norm[ok, None]
    n = u.shape[0]
    if n < 2:
        return 0.0
    rows = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    dup = 0
    for s in range(0, rows.size, block):
        chunk = rows[s : s + block]
        sim = u[chunk] @ u.T
        sim[np.arange(chunk.size), chunk] = -np.inf
        dup += int((sim.max(axis=1) >= cosine).sum())
    return dup / rows.size


def _blocks(cells: np.ndarray, resolution: int, folds: int) -> np.ndarray:
    """Spatial blocks for ``folds``-fold CV: parents at ``resolution``, or finer ones when a small area has fewer
    than ``folds`` of them (down to the cells themselves)."""
    from ..grid import cell_blocks, cell_resolution

    finest = int(cell_resolution(cells).min()) if cells.size else resolution
    for res in range(min(resolution, finest), finest + 1):
        groups = cell_blocks(cells, res)
        if len(np.unique(groups)) >= folds:
            break
    return groups


def modality_recovery(
    embeddings: pd.DataFrame,
    dataset,
    *,
    mobility: np.ndarray | None = None,
    block_resolution: int = 7,
    folds: int = 5,
    max_dim: int = 16,
) -> dict[str, float]:
    """Blocked-CV R^2 of predicting each modality's features (PCA to <= ``max_dim``) from the embedding.

    Only cells that have the modality count. Mobility is represented by ``mobility`` (e.g. the run's LINE
    embedding, rows in the dataset's order), or by a truncated SVD of the cell's flows.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .input_baselines import flow_svd
    from .regression import RIDGE_ALPHAS

    emb = embeddings.reindex(dataset.cell_ids).to_numpy(dtype=np.float64)
    groups = _blocks(dataset.cells, block_resolution, folds)
    flows = flow_svd(dataset.graph, max_dim) if mobility is None else np.asarray(mobility, dtype=np.float64)
    targets = {"mobility": (flows, dataset.graph.degree() > 0)}
    for m in sorted(dataset.features):
        targets[m] = dataset.feature_matrix(m)
    out = {}
    for name, (y, present) in targets.items():
        rows = present & np.isfinite(emb).all(axis=1)
        if rows.sum() < 2 * folds or len(np.unique(groups[rows])) < folds:
            continue
        y = np.asarray(y[rows], dtype=np.float64)
        if y.shape[1] > max_dim:  # at most one component per cell: a region of 16 cells has 16 rows
            y = PCA(min(max_dim, *y.shape), random_state=0).fit_transform(y)
        y = (y - y.mean(axis=0)) / np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
        pred = cross_val_predict(model, emb[rows], y, groups=groups[rows], cv=GroupKFold(folds))
        out[name] = float(1.0 - ((y - pred) ** 2).sum() / (y**2).sum())
    return out


def training_curve(history: pd.DataFrame) -> dict:
    """First, best and last validation loss, the best epoch and the number of epochs run."""
    if history is None or history.empty:
        return {}
    best = int(history.val_loss.idxmin())
    return {
        "epochs": int(len(history)),
        "val_loss_first": float(history.val_loss.iloc[0]),
        "val_loss_best": float(history.val_loss.iloc[best]),
        "val_loss_last": float(history.val_loss.iloc[-1]),
        "best_epoch": int(history.epoch.iloc[best]),
        "train_loss_last": float(history.train_loss.iloc[-1]),
    }


def diagnose(
    embeddings: pd.DataFrame, dataset, history: pd.DataFrame | None = None, *, mobility: np.ndarray | None = None
) -> dict:
    """All diagnostics of one embedding table of ``dataset``'s cells, as a flat dict."""
    x = embeddings.reindex(dataset.cell_ids).to_numpy(dtype=np.float64)
    report = {
        "effective_rank": effective_rank(x),
        "near_duplicate_share": near_duplicates(x),
        "cells_without_mobility_share": float((dataset.graph.degree() == 0).mean()),
    }
    recovery = modality_recovery(embeddings, dataset, mobility=mobility)
    report.update({f"recovery_r2_{k}": v for k, v in recovery.items()})
    report.update({f"curve_{k}": v for k, v in training_curve(history).items()})
    return report
