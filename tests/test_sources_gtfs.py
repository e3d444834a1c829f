"""GTFS: weekly trips between linked stops of a real HSL feed, checked by hand; the transit graph."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
from _opendata import HSL_GTFS

from mobclip_core.config import GtfsSource
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import cells_to_strings, points_to_cells
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.mobility.build import graph_from_source
from mobclip_core.sources.gtfs import stop_links


@pytest.fixture(scope="module")
def links():
    return stop_links(HSL_GTFS)


def test_a_stop_pair_weekly_trips_by_hand(links):
    """Lasipalatsi (1020443) -> Rautatieasema (1020453), worked out from the feed's text files.

    Only two trips call at 1020443 and then at 1020453 (stop_sequence 4 -> 5), both tram 5 with service
    1006H6_20220204_20220320_Ti, which runs on Tuesday 2022-02-22 only, once in the week of 2022-02-21:
      1005 4_20220207_Ti_2_1558  frequencies 08:56-09:23 every 540 s -> 3 departures (08:56, 09:05, 09:14)
                                             15:50-16:14 every 480 s -> 3 departures (15:50, 15:58, 16:06)
      1005 4_20220207_Ti_2_1901  frequencies 19:01-19:25 every 480 s -> 3 departures
    = 9 trips a week.
    """
    pair = links.links[(links.links["from_stop"] == "1020443") & (links.links["to_stop"] == "1020453")]
    assert pair["weekly_trips"].tolist() == [9.0]
    assert str(links.week_start) == "2022-02-21" and links.stop_events == 3737
    assert (links.links["from_stop"] != links.links["to_stop"]).all()


def test_week_choice_and_its_errors(links):
    same = stop_links(HSL_GTFS, week="2022-02-24")  # any day of that week
    assert same.links.equals(links.links)
    with pytest.raises(InvalidInputError, match="no service of GTFS feed .* runs in the week of 2022-03-07"):
        stop_links(HSL_GTFS, week="2022-03-10")


def test_stops_further_apart_add_links(links):
    two = stop_links(HSL_GTFS, max_stops_apart=2)
    merged = two.links.merge(links.links, on=["from_stop", "to_stop"], how="left", suffixes=("", "_1"))
    assert len(two.links) > len(links.links)
    assert (merged["weekly_trips"] >= merged["weekly_trips_1"].fillna(0)).all()


def test_transit_graph_from_one_or_two_feeds(links, tmp_path):
    """Edge weights are the weekly trips between the stops of two cells; a second feed adds its trips."""
    ctx = BuildContext(10, resolve=lambda p: tmp_path / p)
    shutil.copy(HSL_GTFS, tmp_path / "a.zip")
    graph = graph_from_source(GtfsSource(path="a.zip"), ctx)
    cells = dict(zip(links.stops.index, cells_to_strings(points_to_cells(links.stops.lon, links.stops.lat, 10))))
    a, b = links.links["from_stop"].map(cells), links.links["to_stop"].map(cells)
    across = links.links[a != b]
    assert graph.adjacency.sum() / 2 == pytest.approx(across["weekly_trips"].sum())
    i, j = np.searchsorted(graph.cells, points_to_cells([24.93798, 24.9413], [60.17023, 60.17036], 10))
    by_hand = across[
        ((a == cells["1020443"]) & (b == cells["1020453"])) | ((a == cells["1020453"]) & (b == cells["1020443"]))
    ]
    assert graph.adjacency[i, j] == pytest.approx(by_hand["weekly_trips"].sum())
    # a folder feed, given twice: the same graph with every weight doubled
    with zipfile.ZipFile(HSL_GTFS) as z:
        z.extractall(tmp_path / "b")
    double = graph_from_source(GtfsSource(path=["a.zip", "b"]), ctx)
    assert np.array_equal(double.cells, graph.cells)
    assert abs(double.adjacency - 2 * graph.adjacency).max() == 0


def test_broken_feeds_say_what_is_missing(tmp_path):
    with zipfile.ZipFile(HSL_GTFS) as src, zipfile.ZipFile(tmp_path / "f.zip", "w") as dst:
        for name in src.namelist():
            if name != "calendar.txt":
                dst.writestr(name, src.read(name))
    with pytest.raises(InvalidInputError, match="neither calendar.txt nor calendar_dates.txt"):
        stop_links(tmp_path / "f.zip")
    (tmp_path / "x.zip").write_text("no zip")
    with pytest.raises(InvalidInputError, match="neither a GTFS zip nor a folder"):
        stop_links(tmp_path / "x.zip")
