"""Trip tables: 300 real Divvy trips (layout detected), a hand-counted station pair, named columns, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _opendata import DIVVY_TRIPS

from mobclip_core.config import TripsSource
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import points_to_cells
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.mobility.build import graph_from_source
from mobclip_core.sources.trips import detect_trip_columns, iter_trips


def _graph(path, **options):
    return graph_from_source(TripsSource(path=str(path), **options), BuildContext(9))


def test_divvy_trips_hand_counted_station_pair():
    """Columbus Dr & Randolph St (195) -> Wabash Ave & Grand Ave (199): 8 of the 300 trips (grep), none back.

    At resolution 9 station 195 shares its cell with Field Blvd & South Water St (7) and 199 is alone in its
    cell; no trip joins 7 and 199, so the edge between the two cells weighs exactly 8.
    """
    assert detect_trip_columns(pd.read_csv(DIVVY_TRIPS, nrows=1).columns) == (
        "start_lng",
        "start_lat",
        "end_lng",
        "end_lat",
    )
    graph = _graph(DIVVY_TRIPS)
    i, j = np.searchsorted(graph.cells, points_to_cells([-87.6195, -87.6268], [41.8847, 41.8915], 9))
    assert graph.adjacency[i, j] == 8 and graph.adjacency[j, i] == 8
    same_cell = sum(
        a == b for a, b in zip(*(points_to_cells(*pd.read_csv(DIVVY_TRIPS)[c].T.to_numpy(), 9) for c in
                                 (["start_lng", "start_lat"], ["end_lng", "end_lat"])))
    )  # fmt: skip
    assert graph.adjacency.sum() / 2 == 300 - same_cell  # every trip is one flow; within-cell trips dropped


def test_named_columns_and_missing_ends(tmp_path):
    trips = pd.read_csv(DIVVY_TRIPS).rename(
        columns={"start_lng": "o_x", "start_lat": "o_y", "end_lng": "d_x", "end_lat": "d_y"}
    )
    trips.loc[:9, "d_x"] = np.nan  # ten trips without a drop-off location
    trips.to_parquet(tmp_path / "t.parquet")
    chunks = list(iter_trips(tmp_path / "t.parquet", columns=("o_x", "o_y", "d_x", "d_y")))
    assert sum(c.o_lon.size for c in chunks) == 290 and sum(c.skipped for c in chunks) == 10
    named = _graph(
        tmp_path / "t.parquet", origin_lon="o_x", origin_lat="o_y", destination_lon="d_x", destination_lat="d_y"
    )
    assert named.adjacency.sum() < _graph(DIVVY_TRIPS).adjacency.sum()
    with pytest.raises(InvalidInputError, match="no known trip layout"):
        _graph(tmp_path / "t.parquet")
    with pytest.raises(InvalidInputError, match="lacks the 'nyc_taxi_legacy' columns"):
        _graph(DIVVY_TRIPS, layout="nyc_taxi_legacy")
