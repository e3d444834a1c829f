"""Linear probe and k-NN accuracy of embeddings on a planted label (the demo city's zones)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..exceptions import InvalidInputError


def probe_accuracy(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    groups: np.ndarray | None = None,
    normalise: bool = True,
) -> dict[str, float]:
    """5-fold linear-probe and 10-NN accuracy: stratified random folds, or whole ``groups`` held out (blocked).

    Rows are L2-normalised (the geometry of embeddings) unless ``normalise`` is False, when columns are
    standardised instead (coordinates: their length is the position, not noise). Under random folds a place's map
    neighbours are in training, so raw coordinates alone recover contiguous zones; blocked folds ask whether a
    representation tells the zone of a place whose whole neighbourhood was held out.
    """
    import_optional("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x = np.asarray(embeddings, dtype=np.float64)
    if normalise:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    else:
        x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    if groups is None:
        cv, fold = StratifiedKFold(5, shuffle=True, random_state=seed), {}
    else:
        n_groups = len(np.unique(np.asarray(groups)))
        if n_groups < 5:
            raise InvalidInputError(
                f"a blocked probe holds out one of 5 folds of blocks, and there are {n_groups} blocks: use smaller "
                "blocks (a finer resolution) or random folds"
            )
        cv, fold = GroupKFold(5), {"groups": np.asarray(groups)}
    linear = cross_val_score(LogisticRegression(max_iter=3000), x, labels, cv=cv, **fold).mean()
    knn = cross_val_score(KNeighborsClassifier(10), x, labels, cv=cv, **fold).mean()
    return {"linear_probe": float(linear), "knn10": float(knn)}


def zone_probe_table(embeddings: pd.DataFrame, city) -> pd.DataFrame:
    """Probe accuracy of the given embeddings, raw coordinates, and chance on the demo city's zones, under random
    folds and with H3 resolution-7 blocks (about 5 km^2) held out whole."""
    from ..grid import cell_centroids, parent_cells, strings_to_cells

    labels = city.zone_labels.reindex(embeddings.index.astype(str))
    keep = labels.notna().to_numpy()
    y = labels[keep].to_numpy()
    cells = strings_to_cells(embeddings.index.to_numpy()[keep])
    lon, lat = cell_centroids(cells)
    blocks = parent_cells(cells, 7)
    coords = np.c_[lon * np.cos(np.radians(lat.mean())), lat]
    rows = []
    for name, x, normalise in (("MobCLIP", embeddings.to_numpy()[keep], True), ("raw coordinates", coords, False)):
        random = probe_accuracy(x, y, normalise=normalise)
        blocked = probe_accuracy(x, y, normalise=normalise, groups=blocks)
        rows.append({"embedding": name, **random, **{f"{k}_blocked": v for k, v in blocked.items()}})
    share = float(pd.Series(y).value_counts(normalize=True).iloc[0])
    rows.append({"embedding": "chance (majority zone)", **dict.fromkeys(rows[0].keys() - {"embedding"}, share)})
    return pd.DataFrame(rows).round(3)
