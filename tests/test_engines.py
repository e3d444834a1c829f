"""Graph engines: DuckDB (out of core) and Spark (local mode) build the same graph as the in-memory builder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mobclip_core.modalities import build_copresence_graph
from mobclip_core.modalities.mobility.engines import build_copresence_graph_duckdb, build_copresence_graph_spark


@pytest.fixture(scope="module")
def records(small_city):
    recs = pd.read_parquet(small_city.records)
    return [recs.iloc[i : i + 20_000] for i in range(0, len(recs), 20_000)]


@pytest.fixture(scope="module")
def reference(records):
    return build_copresence_graph(iter(records), 9)


def _same(a, b):
    assert np.array_equal(a.cells, b.cells)
    assert abs(a.adjacency - b.adjacency).max() == 0


def test_duckdb_equals_in_memory(records, reference):
    # a tiny memory limit forces DuckDB to spill: the result must not change
    _same(build_copresence_graph_duckdb(iter(records), 9, memory_limit="64MB", threads=1), reference)


@pytest.mark.slow
def test_spark_local_equals_in_memory(records, reference):
    _same(build_copresence_graph_spark(iter(records), 9), reference)


def test_engines_accept_string_person_ids_and_cells(reference, records):
    from mobclip_core.grid import cells_to_strings, points_to_cells

    frames = []
    for r in records:
        frames.append(
            pd.DataFrame(
                {
                    "who": "p" + r.person_id.astype(str),
                    "timestamp": r.timestamp,
                    "cell": cells_to_strings(points_to_cells(r.lon.to_numpy(), r.lat.to_numpy(), 9)),
                }
            )
        )
    _same(build_copresence_graph_duckdb(iter(frames), 9, person="who", cell="cell"), reference)
