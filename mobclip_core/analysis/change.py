"""Change between two embeddings of the same cells (two years, two models): per-cell distance after alignment.

Two trainings never share axes: the same city embedded twice comes out rotated (and, between models, scaled).
Both tables are centred and scaled to unit RMS radius, the second is rotated onto the first by the orthogonal
Procrustes solution (``scipy.linalg.orthogonal_procrustes``), and each cell's distance is measured in units of
that radius: 0 is no change, about 1.4 is as far apart as two unrelated places. A model and its own rotation give
0; two seeds of one model give a small, even change; two different cities give a large one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError


@dataclass
class EmbeddingChange:
    distance: pd.Series  # per common cell (index h3_cell), NaN where either side has a missing value
    rotation: np.ndarray  # (d, d): aligned = standardised(after) @ rotation
    disparity: float  # mean squared distance (scipy.spatial.procrustes's disparity, without reflection limits)
    only_before: int  # cells only in the first table
    only_after: int  # cells only in the second

    def summary(self) -> dict:
        """Counts and statistics: ``cells`` compared, ``incomplete`` common cells left out (a missing value on either
        side), cells only in one table."""
        d = self.distance.dropna()
        return {
            "cells": int(d.size),
            "median": float(d.median()),
            "p90": float(d.quantile(0.9)),
            "mean": float(d.mean()),
            "disparity": self.disparity,
            "incomplete": int(self.distance.isna().sum()),
            "only_before": self.only_before,
            "only_after": self.only_after,
        }


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    radius = np.sqrt((x**2).sum(axis=1).mean())
    if radius == 0:
        raise InvalidInputError("an embedding table is constant over the common cells: nothing to compare")
    return x / radius


def embedding_change(before: pd.DataFrame, after: pd.DataFrame, *, min_cells: int = 10) -> EmbeddingChange:
    """Per-cell distance between two embedding tables (indexed by ``h3_cell``) after orthogonal alignment.

    Tables may differ in dimension (the smaller is padded with zeros) and in cells (only common cells are
    compared, and the counts of the others are reported).
    """
    from scipy.linalg import orthogonal_procrustes

    common = before.index.intersection(after.index)
    a = before.reindex(common).to_numpy(np.float64)
    b = after.reindex(common).to_numpy(np.float64)
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    if ok.sum() < min_cells:
        raise InvalidInputError(
            f"the two embedding tables share {int(ok.sum())} cells with complete embeddings (at least {min_cells} "
            f"are needed; {len(common)} common cell ids): compare tables of the same region and H3 resolution"
        )
    d = max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, 0), (0, d - a.shape[1])))
    b = np.pad(b, ((0, 0), (0, d - b.shape[1])))
    sa, sb = _standardise(a[ok]), _standardise(b[ok])
    rotation, _ = orthogonal_procrustes(sb, sa)
    dist = np.full(len(common), np.nan)
    dist[ok] = np.linalg.norm(sa - sb @ rotation, axis=1)
    return EmbeddingChange(
        pd.Series(dist, index=common.rename(REGION_INDEX), name="change"),
        rotation,
        float((dist[ok] ** 2).mean()),
        int(len(before.index.difference(after.index))),
        int(len(after.index.difference(before.index))),
    )
