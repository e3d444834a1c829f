"""Mobility graph: hand-computed co-presence weights, streaming equality, top-k, sampling, OD spreading."""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from shapely.geometry import box

from mobclip_core.exceptions import InvalidInputError
from mobclip_core.modalities import (
    CopresenceGraphBuilder,
    MobilityGraph,
    build_copresence_graph,
    build_od_graph,
    to_week,
    zones_to_cells,
)

A, B, C, D = (h3.latlng_to_cell(52.5, 13.40 + 0.01 * i, 9) for i in range(4))


def _weights(graph: MobilityGraph) -> dict[frozenset, float]:
    e = graph.edges()
    return {frozenset((s, t)): w for s, t, w in zip(e.source, e.target, e.weight)}


@pytest.fixture()
def records():
    # 2024-01-01 is a Monday: week 0 = Jan 1-7, week 1 = Jan 8-14.
    rows = [
        ("ann", "2024-01-01T08:00", A),
        ("ann", "2024-01-02T09:00", B),
        ("ann", "2024-01-03T10:00", C),
        ("ann", "2024-01-07T23:59", A),  # repeat visit in the same week adds nothing
        ("bob", "2024-01-01T08:00", A),
        ("bob", "2024-01-05T12:00", B),
        ("bob", "2024-01-08T00:00", A),
        ("bob", "2024-01-09T00:00", B),  # week 1: A-B again
        ("ann", "2024-01-10T00:00", C),  # alone in week 1: no edge
        ("cat", "2024-01-02T00:00", D),  # one cell only: isolated... and not in the graph's edges
        ("cat", "2024-01-16T00:00", A),  # different week: no D-A edge
    ]
    return pd.DataFrame(rows, columns=["person_id", "timestamp", "cell"]).assign(
        timestamp=lambda d: pd.to_datetime(d.timestamp)
    )


def test_copresence_hand_computed(records):
    g = build_copresence_graph(records, 9, cell="cell")
    w = _weights(g)
    assert w == {frozenset((A, B)): 3.0, frozenset((A, C)): 1.0, frozenset((B, C)): 1.0}
    assert g.n_cells == 4 and g.stats()["isolated_cells"] == 1
    assert (g.adjacency != g.adjacency.T).nnz == 0 and g.adjacency.diagonal().sum() == 0


def test_week_boundaries():
    ts = pd.to_datetime(["2024-01-07T23:59:59", "2024-01-08T00:00:00"]).to_numpy()
    w = to_week(ts)
    assert w[1] == w[0] + 1
    assert (to_week(np.array([1704067200, 1704672000])) == w[0] + np.array([0, 1])).all()  # epoch seconds


def test_streaming_with_spill_equals_in_memory(small_city):
    recs = pd.read_parquet(small_city.records)
    whole = build_copresence_graph(recs, 9)
    chunks = [recs.iloc[i : i + 7000] for i in range(0, len(recs), 7000)]
    builder = CopresenceGraphBuilder(9, memory_budget_mb=0.05, n_partitions=5)  # forces many spills
    for c in chunks:
        builder.add_points(c.person_id.to_numpy(), c.timestamp.to_numpy(), c.lon.to_numpy(), c.lat.to_numpy())
    assert builder._spill is not None
    streamed = builder.finish()
    assert (whole.cells == streamed.cells).all()
    assert abs(whole.adjacency - streamed.adjacency).max() == 0


def test_places_and_string_person_ids(records):
    places = pd.DataFrame({"lon": [13.40, 13.41, 13.42, 13.43], "lat": [52.5] * 4}, index=["pa", "pb", "pc", "pd"])
    by_place = records.assign(place=records.cell.map(dict(zip([A, B, C, D], places.index))))
    g = build_copresence_graph(by_place, 9, place="place", places=places)
    assert _weights(g) == _weights(build_copresence_graph(records, 9, cell="cell"))
    with pytest.raises(InvalidInputError, match="not in the places table"):
        build_copresence_graph(by_place.assign(place="nowhere"), 9, place="place", places=places)


def test_missing_columns_and_empty():
    with pytest.raises(InvalidInputError, match="lack columns"):
        build_copresence_graph(pd.DataFrame({"x": [1]}), 9)
    with pytest.raises(InvalidInputError, match="empty"):
        CopresenceGraphBuilder(9).finish()


def _star_graph():
    # node 0 linked to 1..5 with weights 1..5; 1-2 weight 10
    rows = [0, 0, 0, 0, 0, 1]
    cols = [1, 2, 3, 4, 5, 2]
    w = [1.0, 2.0, 3.0, 4.0, 5.0, 10.0]
    a = sp.coo_matrix((w, (rows, cols)), shape=(6, 6)).tocsr()
    cells = np.array(sorted(int(c, 16) for c in h3.grid_disk(A, 1)))[:6].astype(np.uint64)
    return MobilityGraph(cells, a + a.T)


def test_top_k_keeps_exactly_the_strongest():
    g = _star_graph()
    kept = g.top_k(0.4)  # node 0 (degree 5) keeps ceil(2) = 2 strongest: 5 and 4; node 1 keeps 1-2 (10)
    a = kept.adjacency
    assert a[0, 5] == 5 and a[0, 4] == 4 and a[1, 2] == 10
    # node 3 (degree 1) keeps its only link 0-3: the union rule keeps an edge either end chose
    assert a[0, 3] == 3
    assert a[0, 2] == 0  # neither node 0 nor node 2 (its strongest is 1-2) kept it
    assert (a != a.T).nnz == 0


def _random_graph(n: int = 60, density: float = 0.3, seed: int = 0) -> MobilityGraph:
    rng = np.random.default_rng(seed)
    upper = sp.triu(sp.random(n, n, density=density, random_state=rng, data_rvs=lambda k: rng.uniform(1, 9, k)), 1)
    cells = np.array(sorted(int(c, 16) for c in h3.grid_disk(A, 5)))[:n].astype(np.uint64)
    return MobilityGraph(cells, (upper + upper.T).tocsr())


def test_random_sample_is_seeded_and_sized():
    g = _random_graph()
    s1, s2 = g.random_sample(0.2, seed=1), g.random_sample(0.2, seed=1)
    assert (s1.adjacency != s2.adjacency).nnz == 0  # same seed, same sample
    assert (s1.adjacency != g.random_sample(0.2, seed=2).adjacency).nnz > 0  # another seed, another sample
    a, kept = g.adjacency, s1.adjacency
    # a symmetric subset of the edges, with their weights
    assert (kept != kept.T).nnz == 0 and abs(kept - a.multiply(kept != 0)).max() == 0
    # each cell keeps at least ceil(0.2 * degree) of its links; the union of choices stays well below the whole
    budget = np.ceil(0.2 * g.degree())
    assert (s1.degree() >= budget).all()
    assert budget.sum() / 2 <= s1.n_edges <= budget.sum() < 0.5 * g.n_edges
    # uniform, not strongest-first: it is not the top-k sample of the same size
    assert (kept != g.top_k(0.2).adjacency).nnz > 0
    with pytest.raises(InvalidInputError, match="ratio"):
        g.top_k(0)


def test_graph_save_load_round_trip(tmp_path):
    g = _star_graph()
    g.save(tmp_path / "g.npz")
    h = MobilityGraph.load(tmp_path / "g.npz")
    assert (h.cells == g.cells).all() and abs(h.adjacency - g.adjacency).max() == 0
    with np.load(tmp_path / "g.npz") as z:
        assert {"data", "row", "col", "shape"} <= set(z.files)  # the public MobCLIP layout


def test_od_graph_from_cells_and_zones():
    od = pd.DataFrame({"origin": [A, B, A], "destination": [B, A, A], "flow": [3.0, 2.0, 7.0]})
    g = build_od_graph(od)
    assert _weights(g) == {frozenset((A, B)): 5.0}  # both directions summed, self-flow dropped

    zones = gpd.GeoDataFrame(
        {"zone": ["w", "e"]},
        geometry=[box(13.30, 52.40, 13.40, 52.50), box(13.40, 52.40, 13.50, 52.50)],
        crs="EPSG:4326",
    )
    zc = zones_to_cells(zones, 8, zone_id="zone")
    assert np.allclose(zc.groupby("zone").weight.sum(), 1.0)
    g = build_od_graph(pd.DataFrame({"origin": ["w"], "destination": ["e"], "flow": [100.0]}), zone_cells=zc)
    assert g.adjacency.sum() / 2 == pytest.approx(100.0)  # flow is conserved when spread to cells
    with pytest.raises(InvalidInputError, match="no OD zone id matches"):
        build_od_graph(pd.DataFrame({"origin": ["x"], "destination": ["y"], "flow": [1.0]}), zone_cells=zc)
    said = []  # rows naming a zone the layer lacks: skipped, and said with their share of the flow
    partial = pd.DataFrame({"origin": ["w", "x"], "destination": ["e", "e"], "flow": [100.0, 30.0]})
    g = build_od_graph(partial, zone_cells=zc, say=said.append)
    assert g.adjacency.sum() / 2 == pytest.approx(100.0)
    assert said == ["mobility: 1 of 2 OD rows (30 of 130 flow) name a zone the zone layer lacks (e.g. 'x'), skipped"]


def test_od_zone_ids_read_as_numbers_meet_the_zone_layers_text_codes():
    """Census codes with a leading zero ("06075...", California) are text in the zone layer; an OD CSV read with
    types detected (QGIS's default, pandas' too) holds them as integers or floats. They are the same zones."""
    zones = gpd.GeoDataFrame(
        {"GEOID": ["06075010100", "06075010200"]},
        geometry=[box(13.30, 52.40, 13.40, 52.50), box(13.40, 52.40, 13.50, 52.50)],
        crs="EPSG:4326",
    )
    zc = zones_to_cells(zones, 8, zone_id="GEOID")
    as_text = build_od_graph(
        pd.DataFrame({"origin": ["06075010100"], "destination": ["06075010200"], "flow": [100.0]}), zone_cells=zc
    )
    for origin, destination in ([6075010100, 6075010200], [6075010100.0, " 06075010200"]):
        od = pd.DataFrame({"origin": [origin], "destination": [destination], "flow": [100.0]})
        g = build_od_graph(od, zone_cells=zc)
        assert np.array_equal(g.cells, as_text.cells) and abs(g.adjacency - as_text.adjacency).max() == 0


def test_od_cells_finer_than_the_grid_are_summed_into_parents_and_coarser_ones_refused():
    import h3

    fine = [h3.cell_to_children(A, h3.get_resolution(A) + 1)[i] for i in (0, 1)]
    od = pd.DataFrame({"origin": [fine[0], fine[1]], "destination": [B, B], "flow": [3.0, 4.0]})
    g = build_od_graph(od, resolution=h3.get_resolution(A))
    assert _weights(g) == {frozenset((A, B)): 7.0}
    with pytest.raises(InvalidInputError, match="coarser than the grid's .*: set resolution = "):
        build_od_graph(
            pd.DataFrame({"origin": [A], "destination": [B], "flow": [1.0]}), resolution=h3.get_resolution(A) + 1
        )


def test_tiny_zone_gets_the_cell_of_its_point():
    zones = gpd.GeoDataFrame({"zone": ["tiny"]}, geometry=[box(13.4, 52.5, 13.4001, 52.5001)], crs="EPSG:4326")
    zc = zones_to_cells(zones, 7, zone_id="zone")
    assert len(zc) == 1 and zc.weight.iloc[0] == 1.0


def test_build_log_gives_the_extent_and_warns_when_coordinates_look_swapped():
    """Chicago's trips with longitude and latitude swapped land at 87.6 degrees south: the build says so."""
    import types

    import scipy.sparse as sp

    from mobclip_core.grid import strings_to_cells
    from mobclip_core.modalities.mobility.build import _say_extent

    def said_for(lat_lon):
        cells = strings_to_cells(np.array([h3.latlng_to_cell(la, lo, 9) for la, lo in lat_lon]))
        graph = MobilityGraph(cells, sp.csr_matrix(np.ones((len(cells), len(cells))) - np.eye(len(cells))))
        lines = []
        _say_extent(graph, types.SimpleNamespace(say=lines.append))
        return lines

    chicago = [(41.88, -87.63), (41.90, -87.65), (41.79, -87.60)]
    fine = said_for(chicago)
    assert len(fine) == 1 and fine[0].startswith("mobility: cells from lon -87.6") and "lat 41.7" in fine[0]
    swapped = said_for([(lo, la) for la, lo in chicago])
    assert len(swapped) == 2 and "are longitude and latitude swapped?" in swapped[1]
