"""Compiled co-presence kernels against a dense B^T B reference, on every path the builder can take."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import points_to_cells
from mobclip_core.modalities import CopresenceGraphBuilder, to_week
from mobclip_core.modalities.mobility._kernels import CellIndex, mirror_upper, unique_coordinates, upper_from_groups

RNG = np.random.default_rng(7)
N_PLACES = 400
PLACE_LON = RNG.uniform(13.30, 13.50, N_PLACES)
PLACE_LAT = RNG.uniform(52.45, 52.55, N_PLACES)
PLACE_CELLS = points_to_cells(PLACE_LON, PLACE_LAT, 8)


def _records(n: int, seed: int, person_ids=None):
    rng = np.random.default_rng(seed)
    person = rng.integers(0, 300, n) if person_ids is None else person_ids[rng.integers(0, len(person_ids), n)]
    ts = 1704067200 + rng.integers(0, 35 * 86400, n)
    place = rng.integers(0, N_PLACES, n)
    return person, ts, place


def _reference(person, ts, place) -> tuple[np.ndarray, np.ndarray]:
    """Dense B^T B without diagonal, B the binary (person-week x cell) matrix."""
    cells = PLACE_CELLS[place]
    uniq = np.unique(cells)
    col = np.searchsorted(uniq, cells)
    row, _ = pd.factorize(pd.MultiIndex.from_arrays([pd.Index(person), to_week(ts)]))
    b = sp.csr_matrix((np.ones(len(col)), (row, col)), shape=(row.max() + 1, uniq.size))
    b.data[:] = 1.0
    dense = (b.T @ b).toarray()
    np.fill_diagonal(dense, 0)
    return uniq, dense


@pytest.mark.parametrize(
    "person_ids",
    [
        None,  # small-range integers: person-weeks keyed directly
        np.arange(300, dtype=np.int64) * 10**12 - 5 * 10**14,  # sparse, negative integers: numbered first
        np.array([f"device-{i:04d}" for i in range(300)], dtype=object),  # strings: hashed
    ],
    ids=["dense-int", "sparse-int", "string"],
)
def test_builder_matches_dense_reference(person_ids):
    person, ts, place = _records(20_000, 1, person_ids)
    builder = CopresenceGraphBuilder(8)
    for s in np.array_split(np.arange(person.size), 3):  # three chunks
        builder.add_cells(person[s], ts[s], PLACE_CELLS[place[s]])
    g = builder.finish()
    cells, dense = _reference(person, ts, place)
    assert (g.cells == cells).all()
    assert np.array_equal(g.adjacency.toarray(), dense)
    assert g.adjacency.has_sorted_indices and g.n_edges > 1000


def test_points_with_repeats_and_spill_match_cells():
    person, ts, place = _records(30_000, 2)
    by_cells = CopresenceGraphBuilder(8)
    by_cells.add_cells(person, ts, PLACE_CELLS[place])
    expected = by_cells.finish().adjacency.toarray()
    by_points = CopresenceGraphBuilder(8, memory_budget_mb=0.1, n_partitions=3)
    for s in np.array_split(np.arange(person.size), 10):
        by_points.add_points(person[s], ts[s], PLACE_LON[place[s]], PLACE_LAT[place[s]])
    assert by_points._spill is not None and by_points._repeating_points
    assert np.array_equal(by_points.finish().adjacency.toarray(), expected)


def test_spilled_string_ids_match_in_memory():
    ids = np.array([f"device-{i:04d}" for i in range(300)], dtype=object)
    person, ts, place = _records(20_000, 6, ids)
    whole = CopresenceGraphBuilder(8)
    whole.add_cells(person, ts, PLACE_CELLS[place])
    spilled = CopresenceGraphBuilder(8, memory_budget_mb=0.05, n_partitions=4)
    for s in np.array_split(np.arange(person.size), 8):
        spilled.add_cells(person[s], ts[s], PLACE_CELLS[place[s]])
    assert spilled._spill is not None
    assert (spilled.finish().adjacency != whole.finish().adjacency).nnz == 0


def test_distinct_points_skip_the_coordinate_hash():
    person, ts, place = _records(5_000, 3)
    jitter = np.random.default_rng(0).uniform(-1e-7, 1e-7, (2, place.size))
    builder = CopresenceGraphBuilder(8)
    builder.add_points(person, ts, PLACE_LON[place] + jitter[0], PLACE_LAT[place] + jitter[1])
    assert not builder._repeating_points  # every pair distinct: the next chunks go straight to H3
    builder.add_points(person, ts, PLACE_LON[place] + jitter[1], PLACE_LAT[place] + jitter[0])
    assert builder.finish().n_edges > 0


def test_rounds_of_rows_give_the_same_triangle():
    person, ts, place = _records(5_000, 4)
    g = CopresenceGraphBuilder(8)
    g.add_cells(person, ts, PLACE_CELLS[place])
    full = g.finish().adjacency
    upper = sp.triu(full, k=1).tocsr()
    # groups = the rows of a binary matrix whose Gram matrix is ``full``: rebuild them from the records
    uniq = np.unique(PLACE_CELLS[place])
    col = np.searchsorted(uniq, PLACE_CELLS[place])
    row, _ = pd.factorize(pd.MultiIndex.from_arrays([person, to_week(ts)]))
    b = sp.csr_matrix((np.ones(col.size), (row, col)), shape=(row.max() + 1, uniq.size))
    b.sum_duplicates()
    b = b[np.diff(b.indptr) >= 2]
    b.sort_indices()
    for max_pairs in (1, 50, 10**9):  # one row per round, a few rows per round, all rows at once
        got = upper_from_groups(b.indptr.astype(np.int64), b.indices.astype(np.int32), uniq.size, max_pairs=max_pairs)
        assert (got.to_csr() != upper).nnz == 0
    assert (mirror_upper(upper) != full).nnz == 0


def test_cell_index_grows_and_keeps_first_seen_order():
    cells = np.array([int(c, 16) for c in h3.grid_disk(h3.latlng_to_cell(52.5, 13.4, 9), 40)], dtype=np.uint64)
    index = CellIndex(capacity=8)
    order = np.random.default_rng(0).permutation(cells.size)
    ids = np.concatenate([index.ids(cells[order[s]]) for s in np.array_split(np.arange(cells.size), 5)])
    assert (ids == np.arange(cells.size)).all() and len(index) == cells.size
    assert (index.cells == cells[order]).all()
    assert (index.ids(cells[order[::-1]]) == np.arange(cells.size)[::-1]).all()


def test_unique_coordinates_numbers_pairs_in_first_seen_order():
    lon = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 2.0])
    lat = np.array([5.0, 5.0, 5.0, 6.0, 5.0, 5.0])
    codes, first = unique_coordinates(lon, lat)
    assert codes.tolist() == [0, 1, 0, 2, 3, 1] and first.tolist() == [0, 1, 3, 4]


def test_cells_of_another_resolution_or_invalid_are_refused():
    with pytest.raises(InvalidInputError, match="resolution 9, but this graph is built at resolution 8"):
        CopresenceGraphBuilder(8).add_cells([1], [0], [int(h3.latlng_to_cell(52.5, 13.4, 9), 16)])
    with pytest.raises(InvalidInputError, match="not an H3 cell"):
        CopresenceGraphBuilder(8).add_cells([1], [0], np.array([0], dtype=np.uint64))
    with pytest.raises(InvalidInputError, match="invalid H3 cell"):
        CopresenceGraphBuilder(8).add_cells([1], [0], np.array([12345], dtype=np.uint64))


def test_builders_on_concurrent_threads_agree():
    """Host applications (QGIS runs algorithms on worker threads) may build two graphs at once."""
    from concurrent.futures import ThreadPoolExecutor

    person, ts, place = _records(40_000, 5)

    def build(_):
        b = CopresenceGraphBuilder(8)
        b.add_cells(person, ts, PLACE_CELLS[place])
        return b.finish().adjacency

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, range(4)))
    assert all((r != results[0]).nnz == 0 for r in results[1:])
