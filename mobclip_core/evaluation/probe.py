"""Linear probe and k-NN accuracy of embeddings on a planted label (the demo city's zones)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._optional import import_optional


def probe_accuracy(embeddings: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """5-fold stratified linear-probe and 10-NN accuracy (rows L2-normalised)."""
    import_optional("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    linear = cross_val_score(LogisticRegression(max_iter=3000), x, labels, cv=cv).mean()
    knn = cross_val_score(KNeighborsClassifier(10), x, labels, cv=cv).mean()
    return {"linear_probe": float(linear), "knn10": float(knn)}


def zone_probe_table(embeddings: pd.DataFrame, city) -> pd.DataFrame:
    """Probe accuracy of the given embeddings, raw coordinates, and chance on the demo city's zones."""
    from ..grid import cell_centroids, strings_to_cells

    labels = city.zone_labels.reindex(embeddings.index.astype(str))
    keep = labels.notna().to_numpy()
    y = labels[keep].to_numpy()
    lon, lat = cell_centroids(strings_to_cells(embeddings.index.to_numpy()[keep]))
    rows = [{"embedding": "MobCLIP", **probe_accuracy(embeddings.to_numpy()[keep], y)}]
    coords = np.c_[lon - lon.mean(), lat - lat.mean()]
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    rows.append(
        {
            "embedding": "raw coordinates",
            "linear_probe": float(cross_val_score(LogisticRegression(max_iter=3000), coords * 100, y, cv=cv).mean()),
            "knn10": float(cross_val_score(KNeighborsClassifier(10), coords, y, cv=cv).mean()),
        }
    )
    share = pd.Series(y).value_counts(normalize=True).iloc[0]
    rows.append({"embedding": "chance (majority zone)", "linear_probe": float(share), "knn10": float(share)})
    return pd.DataFrame(rows).round(3)
