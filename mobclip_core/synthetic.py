"""Synthetic inputs of any size with planted structure, for scale benchmarks and tests.

Places (H3 cells) belong to ``n_communities`` planted communities; each person lives in one community and spends a
``locality`` share of visits there (the rest anywhere). Records stream in chunks, so 1e8 records never sit in
memory at once. ``synthetic_od`` draws an OD table between zones with the same planted communities.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from .grid import points_to_cells


def synthetic_places(
    n_places: int = 50_000,
    *,
    resolution: int = 9,
    n_communities: int = 20,
    seed: int = 0,
    center=(9.0, 45.0),
    span_deg: float = 0.4,
) -> pd.DataFrame:
    """Places with lon/lat, their H3 cell and the planted community of that cell (index: place id 0..n-1)."""
    rng = np.random.default_rng(seed)
    lon = center[0] + rng.uniform(-span_deg / 2, span_deg / 2, n_places)
    lat = center[1] + rng.uniform(-span_deg / 2, span_deg / 2, n_places)
    cells = points_to_cells(lon, lat, resolution)
    _, inv = np.unique(cells, return_inverse=True)
    community = rng.integers(0, n_communities, inv.max() + 1)[inv]  # communities are planted per cell
    return pd.DataFrame(
        {"lon": lon, "lat": lat, "cell": cells, "community": community}, index=pd.RangeIndex(n_places, name="place")
    )


def synthetic_records(
    n_records: int,
    places: pd.DataFrame,
    *,
    records_per_person: int = 40,
    weeks: int = 8,
    locality: float = 0.9,
    chunk_rows: int = 1_000_000,
    seed: int = 0,
    start: str = "2024-01-01",
) -> Iterator[pd.DataFrame]:
    """Chunks of (person_id, timestamp, place, cell, lon, lat) with planted communities."""
    n_persons = max(1, n_records // records_per_person)
    community = places["community"].to_numpy()
    k = int(community.max()) + 1
    by_comm = np.argsort(community, kind="stable")
    bounds = np.searchsorted(community[by_comm], np.arange(k + 1))
    t0 = int(pd.Timestamp(start).timestamp())
    for i, row0 in enumerate(range(0, n_records, chunk_rows)):
        rng = np.random.default_rng([seed, i])
        n = min(chunk_rows, n_records - row0)
        person = rng.integers(0, n_persons, n)
        home = person % k  # each person's community
        local = rng.random(n) < locality
        lo, hi = bounds[home], bounds[home + 1]
        pick_local = by_comm[lo + (rng.random(n) * np.maximum(hi - lo, 1)).astype(np.int64)]
        place = np.where(local & (hi > lo), pick_local, rng.integers(0, len(places), n))
        ts = t0 + rng.integers(0, weeks * 7 * 86400, n)
        yield pd.DataFrame(
            {
                "person_id": person,
                "timestamp": ts,
                "place": place,
                "cell": places["cell"].to_numpy()[place],
                "lon": places["lon"].to_numpy()[place],
                "lat": places["lat"].to_numpy()[place],
            }
        )


def synthetic_od(
    n_zones: int = 500, *, n_communities: int = 10, pairs_per_zone: int = 40, locality: float = 0.8, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """An OD table (origin, destination, flow) between zone ids, and each zone's planted community."""
    rng = np.random.default_rng(seed)
    community = rng.integers(0, n_communities, n_zones)
    origin = np.repeat(np.arange(n_zones), pairs_per_zone)
    same = rng.random(origin.size) < locality
    members = [np.flatnonzero(community == c) for c in range(n_communities)]
    dest = np.array(
        [
            rng.choice(members[community[o]]) if s and members[community[o]].size else rng.integers(n_zones)
            for o, s in zip(origin, same)
        ]
    )
    flow = rng.lognormal(2.0, 1.0, origin.size).round()
    od = pd.DataFrame({"origin": origin, "destination": dest, "flow": flow})
    return od[od.origin != od.destination].reset_index(drop=True), community


def synthetic_region(
    n_cells: int,
    *,
    degree: int = 60,
    n_communities: int = 20,
    locality: float = 0.7,
    poi_dim: int = 384,
    seed: int = 0,
):
    """A ``RegionDataset`` of ``n_cells`` res-12 cells with a planted-community mobility graph (mean degree about
    ``degree``, a ``locality`` share of links inside the community) and POI-like (``poi_dim``, one centre per
    community plus noise) and demographic (16 shares) features; the cells' communities as a second value. For
    timing training at any size and for checks that a model finds the communities."""
    import scipy.sparse as sp

    from .dataset import RegionDataset
    from .grid import cells_to_strings
    from .modalities import MobilityGraph

    rng = np.random.default_rng(seed)
    # distinct res-12 cells around one point stand in for a region's cells
    cells = np.unique(points_to_cells(rng.uniform(9, 9.3, 3 * n_cells), rng.uniform(45, 45.3, 3 * n_cells), 12))
    cells = cells[:n_cells]
    n = cells.size
    comm = rng.integers(0, n_communities, n)
    m = n * degree // 2
    a = rng.integers(0, n, m)
    same = rng.random(m) < locality
    by_comm = np.argsort(comm, kind="stable")
    start = np.searchsorted(comm[by_comm], np.arange(n_communities))
    count = np.bincount(comm, minlength=n_communities)
    mate = by_comm[start[comm[a]] + (rng.random(m) * count[comm[a]]).astype(int)]  # same-community partner
    b = np.where(same, mate, rng.integers(0, n, m))
    adj = sp.coo_matrix((rng.integers(1, 20, m).astype(float), (a, b)), shape=(n, n)).tocsr()
    adj = adj + adj.T
    adj.setdiag(0)
    adj.eliminate_zeros()
    graph = MobilityGraph(cells, adj)
    centers = rng.normal(size=(n_communities, poi_dim))
    index = pd.Index(cells_to_strings(cells), name="h3_cell")
    poi = pd.DataFrame(centers[comm] + rng.normal(size=(n, poi_dim)), index=index).add_prefix("poi_")
    demo = pd.DataFrame(rng.dirichlet(np.ones(16), n), index=index).add_prefix("demo_")
    return RegionDataset.from_parts(graph, {"poi": poi, "demographics": demo}), comm
