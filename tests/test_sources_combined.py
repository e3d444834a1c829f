"""Open data end to end: OSM POIs + a GTFS graph -> dataset -> training -> exported embeddings; sources by weight."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _opendata import DIVVY_TRIPS, HSL_GTFS, helsinki_pbf

from mobclip_core.cli import main
from mobclip_core.config import config_from_dict
from mobclip_core.exceptions import ConfigError
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.mobility import build_mobility_graph


def helsinki_config(tmp_path, resolution=10, stops_apart=2, encoder="counts", dim=16):
    config = tmp_path / "helsinki.toml"
    config.write_text(
        f"""
name = "helsinki-centre"
resolution = {resolution}
output = "out"
cache_dir = "cache"

[mobility]
ratio = 0.5

[[mobility.sources]]
kind = "gtfs"
path = "{HSL_GTFS.as_posix()}"
max_stops_apart = {stops_apart}

[poi]
path = "{helsinki_pbf().as_posix()}"
encoder = "{encoder}"

[line]
dim = {dim}
samples_per_edge = 20
batch_size = 128

[train]
embedding_dim = {dim}
epochs = 3
batch_size = 16
patience = 2
"""
    )
    return config


def test_osm_pois_and_gtfs_train_and_export(tmp_path, capsys):
    config = helsinki_config(tmp_path)
    assert main(["build", str(config)]) == 0
    out = capsys.readouterr().out
    assert (
        "GTFS hsl_helsinki_centre_2022.zip: 3737 stop events" in out and "1631 POIs read from Helsinki.osm.pbf" in out
    )
    assert main(["train", str(config), "--quiet"]) == 0
    emb = pd.read_parquet(tmp_path / "out" / "embeddings.parquet")
    cells = pd.read_parquet(tmp_path / "out" / "dataset" / "cells.parquet")
    assert len(emb) == len(cells) > 25 and np.isfinite(emb.filter(like="emb_").to_numpy()).all()
    assert (tmp_path / "out" / "embeddings.tif").exists() and (tmp_path / "out" / "embeddings.gpkg").exists()
    import json

    diagnostics = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert 1.0 <= diagnostics["effective_rank"] <= 16 and "recovery_r2_poi" in diagnostics


def test_a_region_of_sixteen_cells_trains_and_exports(tmp_path, capsys):
    """At resolution 9 the Helsinki sample is 16 cells: fewer rows than the diagnostics' 16 components (the export
    ended in a scikit-learn traceback after training)."""
    config = helsinki_config(tmp_path, resolution=9, stops_apart=1, encoder="text", dim=128)  # Write config's
    assert main(["train", str(config), "--quiet"]) == 0, capsys.readouterr().err
    assert len(pd.read_parquet(tmp_path / "out" / "embeddings.parquet")) == 16
    import json

    assert "recovery_r2_poi" in json.loads((tmp_path / "out" / "diagnostics.json").read_text())


def test_sources_combine_by_weight(tmp_path):
    """Each source becomes a share of the combined graph's flow: weights 2 and 1 -> two thirds and one third."""
    raw = {
        "resolution": 9,
        "mobility": {
            "sources": [
                {"kind": "gtfs", "path": str(HSL_GTFS), "weight": 2},
                {"kind": "trips", "path": str(DIVVY_TRIPS)},
            ]
        },
    }
    ctx = BuildContext(9)
    combined = build_mobility_graph(config_from_dict(raw).mobility, ctx)
    helsinki = combined.cells[np.isin(combined.cells, build_mobility_graph(config_from_dict(
        {"resolution": 9, "mobility": {"sources": [raw["mobility"]["sources"][0]]}}).mobility, ctx).cells)]  # fmt: skip
    rows = np.isin(combined.cells, helsinki)
    a = combined.adjacency
    assert a.sum() / 2 == pytest.approx(1.0)
    assert a[rows][:, rows].sum() / 2 == pytest.approx(2 / 3)
    assert a[~rows][:, ~rows].sum() / 2 == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"path": "x.zip"}, "needs kind = one of"),
        ({"kind": "bus", "path": "x.zip"}, "kind = 'bus' is unknown"),
        ({"kind": "gtfs"}, "needs path"),
        ({"kind": "gtfs", "path": "x.zip", "weight": 0}, "weight must be a number > 0"),
        ({"kind": "gtfs", "path": "x.zip", "colour": 1}, r"unknown option\(s\) \['colour'\]"),
        ({"kind": "lodes", "path": "od.csv.gz"}, "needs crosswalk"),
        ({"kind": "trips", "path": "t.csv", "origin_lon": "x"}, "name all four"),
    ],
)
def test_bad_mobility_sources(source, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"mobility": {"sources": [source]}})
