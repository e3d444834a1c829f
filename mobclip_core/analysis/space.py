"""A look inside: the embedding space drawn in two dimensions, one point per place, linked back by its id.

UMAP (``umap-learn``) when it is installed and asked for, else PCA. UMAP compiles with numba (LLVM), so inside QGIS
it runs in the child process (``python -m mobclip_core.worker project``); PCA is numpy only.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .._optional import import_optional
from ..exceptions import InvalidInputError
from ..options import SpaceMethod, choices


def umap_available() -> bool:
    try:
        return importlib.util.find_spec("umap") is not None
    except (ImportError, ValueError):
        return False


# UMAP's neighbour graph and spectral start need some places (below 4 it fails inside scipy); under this many a
# two-component PCA shows all there is to see
UMAP_MIN_PLACES = 10


def resolve_method(method: str, places: int | None = None) -> str:
    """'auto' -> 'umap' when umap-learn is installed and there are ``UMAP_MIN_PLACES`` places or more, else 'pca';
    'umap' without the package, or for fewer places, is an error with the fix."""
    if method not in set(SpaceMethod):
        raise InvalidInputError(f"method must be one of {choices(SpaceMethod)}, got {method!r}")
    few = places is not None and places < UMAP_MIN_PLACES
    if method == "auto":
        return "umap" if umap_available() and not few else "pca"
    if method == "umap" and few:
        raise InvalidInputError(
            f"UMAP needs at least {UMAP_MIN_PLACES} places with complete embeddings, and {places} were given: "
            "choose PCA, or give more places"
        )
    if method == "umap" and not umap_available():
        raise InvalidInputError("UMAP needs the umap-learn package: pip install umap-learn, or choose PCA")
    return method


def embedding_space(
    values: np.ndarray, *, method: str = "auto", seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1
) -> tuple[np.ndarray, str]:
    """(coordinates (n, 2) float64 with NaN rows where a row has a missing value, the method used).

    PCA: the first two principal components of the unit-length rows. UMAP: cosine metric, seeded.
    """
    x = np.asarray(values, dtype=np.float32)
    if x.ndim != 2:
        raise InvalidInputError(f"expected a (rows, dimensions) matrix, got shape {x.shape}")
    valid = np.isfinite(x).all(axis=1)
    if valid.sum() < 3:
        raise InvalidInputError("a map of the embedding space needs at least 3 places with complete embeddings")
    method = resolve_method(method, int(valid.sum()))
    xv = x[valid]
    norms = np.linalg.norm(xv, axis=1, keepdims=True)
    xv = xv / np.where(norms > 0, norms, 1.0)
    if method == "umap":
        umap = import_optional("umap")
        k = max(2, min(int(n_neighbors), xv.shape[0] - 1))
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, metric="cosine", random_state=seed, n_jobs=1)
        xy = reducer.fit_transform(xv).astype(np.float64)
    else:
        centred = (xv - xv.mean(axis=0)).astype(np.float64)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        axes = np.zeros((2, centred.shape[1]))
        axes[: min(2, vt.shape[0])] = vt[:2]
        xy = centred @ axes.T
        xy *= np.sign(xy.sum(axis=0) + 1e-12)  # deterministic sign
    out = np.full((x.shape[0], 2), np.nan)
    out[valid] = xy
    return out, method
