"""Train/test splits for spatial data: whole blocks (H3 parents, admin units) held out together, or random rows.

One home for both protocols the project uses: a single 80/20 holdout (the evaluation harness, repeated over seeds)
and k-fold cross-validation (LightGBM/Ridge on a layer). Blocks come from ``mobclip_core.grid.blocks``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError


def holdout_split(n: int, groups: np.ndarray, blocked: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): about 20% of the rows in the test set, as whole groups when ``blocked``."""
    rng = np.random.default_rng(seed)
    if not blocked:
        test = rng.permutation(n)[: max(1, int(round(0.2 * n)))]
    else:
        uniq = rng.permutation(np.unique(groups))
        sizes = pd.Series(groups).value_counts().reindex(uniq).to_numpy()
        chosen = uniq[: int(np.searchsorted(np.cumsum(sizes), 0.2 * n)) + 1]
        test = np.flatnonzero(np.isin(groups, chosen))
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def kfold_splits(
    n: int, n_folds: int, groups: np.ndarray | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold (train, test) row indices; with ``groups`` each group is in exactly one test fold."""
    from sklearn.model_selection import GroupKFold, KFold

    if n < n_folds * 2:
        raise InvalidInputError(f"{n} rows are too few for {n_folds}-fold cross-validation")
    rows = np.zeros((n, 1))
    if groups is None:
        return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(rows))
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise InvalidInputError(f"only {n_groups} spatial blocks for {n_folds} folds: use finer blocks or fewer folds")
    return list(GroupKFold(n_splits=n_folds).split(rows, groups=groups))
