"""Speed of the analysis functions, measured side by side in one run (absolute times vary with machine load).

- similarity over 1,000,000 cells x 128 (float32): building the index (normalising once) and one query (the
  reference direction, the scores, the top 10), against a plain float64 cosine in numpy;
- k-means on 100,000 x 128: ``functional_zones(k=8)`` against scikit-learn's own ``KMeans(8, n_init=1)`` on the same
  float32 rows, and the suggested k (2..12, silhouette on a 5,000-row sample);
- the desktop map tool's update: the scores of 100,000 cells into the similarity raster's pixels (the numpy step
  only; the whole click in real QGIS, GDAL write and redraw included, is benchmarks/bench_map_tool.py).

Run: .venv/bin/python -m benchmarks.bench_analysis
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._util import best_of


def main() -> dict:
    from sklearn.cluster import KMeans

    from mobclip_core.analysis.similarity import SimilarityIndex, similar_places, top_rows
    from mobclip_core.analysis.zones import functional_zones

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 128)).astype(np.float32)
    big = centres[rng.integers(0, 8, 1_000_000)] + rng.normal(scale=0.8, size=(1_000_000, 128)).astype(np.float32)
    out = {}
    index = None

    def build():
        nonlocal index
        index = SimilarityIndex.from_values(big)

    out["index_1m_s"] = best_of(build, 2)

    def query():
        d = index.direction(rows=[0, 1, 2])
        top_rows(index.similarity(d), 10)

    out["query_1m_s"] = best_of(query, 5)
    out["similar_places_1m_s"] = best_of(lambda: similar_places(big, reference_rows=[0, 1, 2], top_n=10), 2)

    def naive():
        x = big.astype(np.float64)
        ref = x[[0, 1, 2]].mean(axis=0)
        s = x @ ref / (np.linalg.norm(x, axis=1) * np.linalg.norm(ref))
        np.argsort(-s)[:10]

    out["naive_float64_1m_s"] = best_of(naive, 1)
    big = index = None  # free the 1M x 128 table before the k-means part

    x = centres[rng.integers(0, 8, 100_000)] + rng.normal(scale=0.8, size=(100_000, 128)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    t0 = time.perf_counter()
    KMeans(n_clusters=8, n_init=1, random_state=0).fit(unit)
    out["sklearn_kmeans_100k_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    functional_zones(x, k=8)
    out["zones_kmeans_100k_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    z = functional_zones(x, k="auto")
    out["zones_auto_k_100k_s"] = time.perf_counter() - t0
    out["auto_k_found"] = z.k

    small = SimilarityIndex.from_values(x)
    pixels = rng.integers(-1, 100_000, 1_600_000)  # pixel -> cell position, -1 outside (about 16 px per cell)

    def tool_update():
        scores = small.similarity(small.direction(rows=[5]))
        np.where(pixels >= 0, scores[pixels], np.nan).astype(np.float32)

    out["tool_update_100k_s"] = best_of(tool_update, 5)
    return out


if __name__ == "__main__":
    r = main()
    print("similarity, 1,000,000 cells x 128 (float32)")
    print(f"  build the index (normalise once)    {r['index_1m_s']:.3f} s")
    print(f"  one query (direction, scores, top10) {r['query_1m_s']:.3f} s")
    print(f"  similar_places end to end           {r['similar_places_1m_s']:.3f} s")
    print(
        f"  plain float64 numpy cosine + sort   {r['naive_float64_1m_s']:.3f} s "
        f"({r['naive_float64_1m_s'] / r['similar_places_1m_s']:.1f}x similar_places)"
    )
    print("k-means, 100,000 x 128, k = 8")
    print(f"  scikit-learn KMeans(n_init=1)       {r['sklearn_kmeans_100k_s']:.3f} s")
    print(
        f"  functional_zones(k=8)               {r['zones_kmeans_100k_s']:.3f} s "
        f"({r['zones_kmeans_100k_s'] / r['sklearn_kmeans_100k_s']:.2f}x scikit-learn)"
    )
    print(f"  functional_zones(k='auto', 2..12)   {r['zones_auto_k_100k_s']:.3f} s (found k = {r['auto_k_found']})")
    print("desktop map tool, 100,000 cells")
    print(f"  scores -> raster pixels per click   {r['tool_update_100k_s'] * 1000:.0f} ms")
