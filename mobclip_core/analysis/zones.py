"""Functional zones: clusters of places whose embeddings are alike (k-means or density-based), numbered by size.

k-means is scikit-learn's (float32, k-means++, one initialisation per k); ``k="auto"`` fits each k of a range on a
sample and keeps the one with the best silhouette (or BIC). The density-based option is scikit-learn's HDBSCAN
(>= 1.3) on the first principal components; places it leaves out are zone -1 ("no zone"). Rows are clustered as
unit vectors by default, the geometry the similarity search uses. What each zone means is
``describe.describe_zones``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..exceptions import InvalidInputError
from ..options import ZoneMethod, choices

CRITERIA = ("silhouette", "bic")
CRITERION_NAMES = {"silhouette": "silhouette", "bic": "BIC"}
NO_ZONE = -1


@dataclass
class Zones:
    """Zone of each row (1 = largest zone; -1 = no zone: a missing embedding, or HDBSCAN's noise)."""

    labels: np.ndarray  # int64 per row
    method: str
    k: int  # number of zones (not counting -1)
    scores: pd.DataFrame | None = None  # per candidate k: silhouette, bic (k="auto")
    centers: np.ndarray | None = None  # (k, d) in the clustered space, zone i at row i-1
    names: dict[int, str] = field(default_factory=dict)  # filled by describe_zones
    profiles: pd.DataFrame | None = None  # filled by describe_zones
    notes: list[str] = field(default_factory=list)  # what a user should know about the result (a suggested k at the
    # top of the range...)

    def sizes(self) -> pd.Series:
        return pd.Series(self.labels).value_counts().sort_index()

    def name_of(self, zone: int) -> str:
        if zone == NO_ZONE:
            return "No zone"
        return self.names.get(int(zone), f"Zone {int(zone)}")


def _prepare(values: np.ndarray, normalise: bool) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidInputError(f"zones need a non-empty (rows, dimensions) matrix, got shape {x.shape}")
    valid = np.isfinite(x).all(axis=1)
    x = x[valid]
    if normalise:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(x), valid


def _kmeans(x: np.ndarray, k: int, seed: int):
    cluster = import_optional("sklearn.cluster")
    return cluster.KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x)


def kmeans_bic(x: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    """BIC of a k-means partition under identical spherical Gaussians (X-means, Pelleg & Moore 2000); higher is
    better."""
    n, d = x.shape
    k = centers.shape[0]
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    sse = float(((x - centers[labels]) ** 2).sum())
    if n <= k or sse <= 0:
        return float("inf")
    variance = sse / (d * (n - k))
    used = sizes[sizes > 0]
    loglik = float((used * np.log(used)).sum() - n * np.log(n) - n * d / 2 * np.log(2 * np.pi * variance))
    loglik -= d * (n - k) / 2
    return loglik - k * (d + 1) / 2 * np.log(n)


def suggest_k(
    values: np.ndarray,
    *,
    k_range: tuple[int, int] = (2, 12),
    criterion: str = "silhouette",
    seed: int = 0,
    sample: int = 5000,
    normalise: bool = True,
) -> tuple[int, pd.DataFrame]:
    """The k of ``k_range`` (inclusive) with the best silhouette (or BIC) of k-means on a seeded sample of rows,
    and the table of both scores per k."""
    metrics = import_optional("sklearn.metrics")
    if criterion not in CRITERIA:
        raise InvalidInputError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    x, _ = _prepare(values, normalise)
    lo, hi = int(k_range[0]), int(k_range[1])
    hi = min(hi, x.shape[0] - 1)
    if lo < 2 or hi < lo:
        raise InvalidInputError(
            f"cannot suggest a number of zones in {tuple(k_range)} for {x.shape[0]} places: the range must start "
            "at 2 or more and stay below the number of places"
        )
    rng = np.random.default_rng(seed)
    if x.shape[0] > sample:
        x = x[np.sort(rng.choice(x.shape[0], sample, replace=False))]
    rows = []
    for k in range(lo, hi + 1):
        fit = _kmeans(x, k, seed)
        labels = fit.labels_
        sil = float(metrics.silhouette_score(x, labels)) if len(np.unique(labels)) > 1 else -1.0
        rows.append({"k": k, "silhouette": sil, "bic": kmeans_bic(x, labels, fit.cluster_centers_)})
    scores = pd.DataFrame(rows)
    best = int(scores.loc[scores[criterion].idxmax(), "k"])
    return best, scores


def _numbered_by_size(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters 1..k by decreasing size (ties by first appearance); negatives stay -1. Returns (new labels,
    old label of each new zone)."""
    out = np.full(labels.shape, NO_ZONE, dtype=np.int64)
    kept = labels >= 0
    if not kept.any():
        return out, np.empty(0, dtype=np.int64)
    old, first, counts = np.unique(labels[kept], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = np.empty(old.max() + 1, dtype=np.int64)
    mapping[old[order]] = np.arange(1, old.size + 1)
    out[kept] = mapping[labels[kept]]
    return out, old[order]


def functional_zones(
    values: np.ndarray,
    *,
    method: str = "kmeans",
    k: int | str = "auto",
    k_range: tuple[int, int] = (2, 12),
    criterion: str = "silhouette",
    min_cluster_size: int | None = None,
    normalise: bool = True,
    seed: int = 0,
    sample: int = 5000,
    max_density_rows: int = 50_000,
) -> Zones:
    """Cluster the rows of ``values`` into functional zones.

    ``method="kmeans"``: ``k`` zones, or ``k="auto"`` for the best k in ``k_range`` by ``criterion`` (see
    ``suggest_k``). ``method="hdbscan"``: as many zones as dense groups of at least ``min_cluster_size`` places
    (default: 2 % of the places, at least 10); beyond ``max_density_rows`` places HDBSCAN runs on a seeded sample
    and each other place takes the zone of its nearest sampled place. Rows with a missing value get zone -1.
    """
    if method not in set(ZoneMethod):
        raise InvalidInputError(f"zone method must be one of {choices(ZoneMethod)}, got {method!r}")
    x, valid = _prepare(values, normalise)
    n = x.shape[0]
    if n < 3:
        raise InvalidInputError(f"only {n} places have a complete embedding: zones need at least 3")
    labels = np.full(valid.size, NO_ZONE, dtype=np.int64)
    scores = None
    notes: list[str] = []
    if method == "kmeans":
        if isinstance(k, str):
            if k != "auto":
                raise InvalidInputError(f"k must be a number of zones or 'auto', got {k!r}")
            k, scores = suggest_k(x, k_range=k_range, criterion=criterion, seed=seed, sample=sample, normalise=False)
            notes.extend(_range_notes(scores, criterion, k))
        k = int(k)
        if not 1 <= k <= n:
            raise InvalidInputError(f"cannot make {k} zones from {n} places: choose k between 1 and {n}")
        fit = _kmeans(x, k, seed)
        raw, centers = fit.labels_.astype(np.int64), fit.cluster_centers_
    else:
        raw = _density_labels(x, min_cluster_size, seed, max_density_rows)
        centers = None
    numbered, old_of_new = _numbered_by_size(raw)
    labels[valid] = numbered
    if centers is not None:
        centers = centers[old_of_new]
    else:
        centers = np.array([x[numbered == z].mean(axis=0) for z in range(1, old_of_new.size + 1)]).reshape(
            -1, x.shape[1]
        )
    return Zones(labels, method, int(old_of_new.size), scores, centers, notes=notes)


def _range_notes(scores: pd.DataFrame, criterion: str, best: int) -> list[str]:
    """A warning when the suggested k is the largest tried: the criterion still improves there, so the range, not
    the data, chose it (BIC under k-means' spherical model keeps rising on most embeddings)."""
    top = int(scores["k"].max())
    if best != top or len(scores) < 2:
        return []
    if criterion == "bic":
        hint = "choose the number of zones yourself, or let the silhouette pick it"
    else:
        hint = "raise the largest number of zones to try, or choose the number yourself"
    name = CRITERION_NAMES[criterion]
    return [
        f"the {name} is best at k = {top}, the largest number of zones tried: the range set this number, not the "
        f"data; {hint}"
    ]


def _density_labels(x: np.ndarray, min_cluster_size: int | None, seed: int, max_rows: int) -> np.ndarray:
    cluster = import_optional("sklearn.cluster")
    if not hasattr(cluster, "HDBSCAN"):
        raise InvalidInputError("density-based zones need scikit-learn 1.3 or newer (HDBSCAN): upgrade scikit-learn")
    n = x.shape[0]
    m = int(min_cluster_size) if min_cluster_size else max(10, n // 50)
    if m < 2:
        raise InvalidInputError(f"the smallest zone must hold at least 2 places, got {m}")
    # distances concentrate in many dimensions: cluster on the leading principal components
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[: min(n, 20_000)], full_matrices=False)
    reduced = np.ascontiguousarray(centred @ vt[: min(16, vt.shape[0])].T)
    fit_rows = np.arange(n)
    if n > max_rows:
        fit_rows = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    labels = cluster.HDBSCAN(min_cluster_size=m, copy=True).fit(reduced[fit_rows]).labels_.astype(np.int64)
    if fit_rows.size == n:
        return labels
    neighbors = import_optional("sklearn.neighbors")
    nearest = neighbors.NearestNeighbors(n_neighbors=1).fit(reduced[fit_rows]).kneighbors(reduced)[1][:, 0]
    out = labels[nearest]
    out[fit_rows] = labels
    return out
