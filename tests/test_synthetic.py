"""The synthetic scale generator plants communities that the graph and LINE recover."""

from __future__ import annotations

import numpy as np

from mobclip_core.modalities import build_copresence_graph
from mobclip_core.models.line import train_line
from mobclip_core.synthetic import synthetic_od, synthetic_places, synthetic_records


def test_records_stream_in_chunks_and_plant_communities():
    places = synthetic_places(3000, resolution=7, n_communities=4, seed=1)
    chunks = list(synthetic_records(120_000, places, chunk_rows=50_000, seed=1))
    assert [len(c) for c in chunks] == [50_000, 50_000, 20_000]
    again = list(synthetic_records(120_000, places, chunk_rows=50_000, seed=1))
    assert all(a.equals(b) for a, b in zip(chunks, again))  # deterministic
    graph = build_copresence_graph(iter(chunks), 7, cell="cell")
    # a cell's community: the majority community of the places in it
    comm = places.groupby("cell")["community"].agg(lambda s: s.value_counts().index[0]).reindex(graph.cells).to_numpy()
    emb = train_line(graph.adjacency, dim=16, samples=400_000, seed=0).embedding
    sim = emb @ emb.T
    same = comm[:, None] == comm[None, :]
    np.fill_diagonal(same, False)
    assert sim[same].mean() > sim[~same & ~np.eye(len(comm), dtype=bool)].mean() + 0.2


def test_od_generator():
    od, community = synthetic_od(200, n_communities=5, seed=0)
    assert (od.origin != od.destination).all() and (od.flow >= 0).all()
    within = (community[od.origin] == community[od.destination]).mean()
    assert within > 0.7
