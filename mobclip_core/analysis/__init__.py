"""Asking the map questions with embeddings: similar places, functional zones, a look inside, change.

- ``similarity``: cosine similarity to the mean of reference places, top-N ranking, a precomputed index;
- ``zones``: k-means (chosen or suggested k) and HDBSCAN zones; ``describe``: what distinguishes each zone, labels;
- ``space``: the embedding space in 2-D (UMAP or PCA); the shared PCA RGB colour scale is
  ``rasterize.PcaColourScale``;
- ``change``: per-cell distance between two embeddings of the same cells after Procrustes alignment.

Everything here needs numpy, pandas, scikit-learn and scipy only (UMAP aside), so the QGIS algorithms call it in
QGIS's own process.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SimilarityIndex": ".similarity",
    "SimilarPlaces": ".similarity",
    "similar_places": ".similarity",
    "similar_cells": ".similarity",
    "top_rows": ".similarity",
    "Zones": ".zones",
    "functional_zones": ".zones",
    "suggest_k": ".zones",
    "describe_zones": ".describe",
    "table_zones": ".describe",
    "embedding_space": ".space",
    "EmbeddingChange": ".change",
    "embedding_change": ".change",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
