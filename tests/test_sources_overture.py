"""Overture Maps places: 300 real records; a known place's category and cell, names, bbox, the POI modality."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from _opendata import OVERTURE_PLACES

from mobclip_core.config import PoiConfig
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.poi import poi_source_kind
from mobclip_core.modalities.registry import feature_modality
from mobclip_core.sources.overture import iter_overture_places, read_overture_places


def test_a_known_place():
    # record 08f266694b8dd34103db5d8f268c8bfe: names.primary "SNT Biotech Lab", categories.primary "pharmacy",
    # a WKB point at lon -88.2061077, lat 41.6186714 (Plainfield, IL) -> res-9 cell 892664...(h3-py below)
    places = read_overture_places(OVERTURE_PLACES).set_index("id")
    p = places.loc["08f266694b8dd34103db5d8f268c8bfe"]
    assert (p["name"], p["category"]) == ("SNT Biotech Lab", "pharmacy")
    assert (p["lon"], p["lat"]) == pytest.approx((-88.20610, 41.61867), abs=1e-4)
    assert h3.latlng_to_cell(p["lat"], p["lon"], 9) == h3.latlng_to_cell(41.61867, -88.20610, 9)
    assert len(places) == 300 and (places["category"] == "convenience store").sum() == 11  # convenience_store x 11


def test_streaming_bbox_and_confidence():
    whole = read_overture_places(OVERTURE_PLACES)
    chunks = list(iter_overture_places(OVERTURE_PLACES, batch_rows=64))
    assert len(chunks) == 5 and sum(map(len, chunks)) == 300
    chicago = read_overture_places(OVERTURE_PLACES, bbox=[-88.5, 41.5, -87.5, 42.2])
    inside = whole["lon"].between(-88.5, -87.5) & whole["lat"].between(41.5, 42.2)
    assert len(chicago) == inside.sum() == 5
    sure = read_overture_places(OVERTURE_PLACES, min_confidence=0.9)
    assert len(sure) == (whole["confidence"] >= 0.9).sum() < 300


def test_poi_modality_detects_overture(tmp_path):
    assert poi_source_kind(OVERTURE_PLACES) == "overture"
    counts = feature_modality("poi").build(
        PoiConfig(path=str(OVERTURE_PLACES), encoder="counts"), None, BuildContext(9)
    )
    cell = h3.latlng_to_cell(41.61867, -88.20610, 9)
    assert counts.loc[cell, "cat_pharmacy"] == pytest.approx(1.0)
    assert np.allclose(counts.sum(axis=1), 1.0)
    with pytest.raises(InvalidInputError, match="no POI inside bbox"):
        feature_modality("poi").build(
            PoiConfig(path=str(OVERTURE_PLACES), encoder="counts", bbox=[10.0, 10.0, 10.1, 10.1]), None, BuildContext(9)
        )
