"""The modality interface: registry, one build signature, caches, and the fixes that came with it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from mobclip_core.config import DemographicsConfig, ImageConfig, RunConfig
from mobclip_core.constants import MODALITIES
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import cells_to_strings
from mobclip_core.modalities import BuildContext, FeatureModality, feature_modalities
from mobclip_core.modalities.registry import FEATURE_MODALITIES


def test_registry_names_every_modality_once():
    builders = feature_modalities()
    assert tuple(builders) == MODALITIES  # the names training aligns
    sections = {f.name for f in fields(RunConfig)}
    for name, builder in builders.items():
        assert isinstance(builder, FeatureModality) and builder.name == name
        assert name in sections  # each has its config section
    assert set(FEATURE_MODALITIES) == set(MODALITIES)


def test_build_features_follows_the_registry(small_config, small_city, monkeypatch):
    """Building asks the registry: a modality left out of it is not built, one added is."""
    from mobclip_core.modalities import build as build_module
    from mobclip_core.modalities.registry import feature_modality

    class Constant(FeatureModality):
        name = "image"  # stands in for the image builder

        def build(self, section, cells, ctx):
            return pd.DataFrame({"c": np.ones(len(cells), np.float32)}, index=pd.Index(cells, name="h3_cell"))

    monkeypatch.setattr(
        build_module, "feature_modalities", lambda: {"image": Constant(), "poi": feature_modality("poi")}
    )
    cells = cells_to_strings(small_city.cells[:20])
    ctx = BuildContext.from_config(small_config)
    feats = build_module.build_features(small_config, cells, ctx)
    assert list(feats) == ["image", "poi"]
    assert (feats["image"]["c"] == 1).all() and feats["poi"].shape[1] == 384


def _zone_layer(small_city, tmp_path) -> tuple[Path, pd.DataFrame]:
    """The city's districts with an integer GEOID, as census GeoPackages store it."""
    zones = gpd.read_file(small_city.districts)
    zones["GEOID"] = np.arange(len(zones), dtype=np.int64) + 6075000100  # a county code with a leading 0
    zones["young"] = np.arange(len(zones)) + 1
    zones["old"] = 10
    path = tmp_path / "tracts.gpkg"
    zones[["GEOID", "young", "old", "geometry"]].to_file(path)
    return path, zones


def test_demographics_zone_table_with_integer_geoid(small_city, tmp_path):
    path, zones = _zone_layer(small_city, tmp_path)
    builder = feature_modalities()["demographics"]
    ctx = BuildContext(9)
    # 1. the counts are the layer's own columns: the integer GEOID must not become a bin
    from_layer = builder.build(DemographicsConfig(table=str(path), zone_id="GEOID"), None, ctx)
    assert list(from_layer.columns) == ["demo_young", "demo_old"]
    # 2. a CSV whose GEOIDs are text with the leading zero, joined to the integer ids of the layer
    csv = tmp_path / "acs.csv"
    pd.DataFrame(
        {"GEOID": ["0" + str(g) for g in zones["GEOID"]], "young": zones["young"], "old": zones["old"]}
    ).to_csv(csv, index=False)
    from_csv = builder.build(DemographicsConfig(table=str(csv), zones=str(path), zone_id="GEOID"), None, ctx)
    pd.testing.assert_frame_equal(from_layer, from_csv)
    first = zones["young"].iloc[0] / (zones["young"].iloc[0] + 10)
    assert np.isclose(from_csv["demo_young"].to_numpy(), first).any()
    # 3. ids that match nothing say so
    pd.DataFrame({"GEOID": ["x1", "x2"], "young": [1, 2], "old": [1, 1]}).to_csv(csv, index=False)
    with pytest.raises(InvalidInputError, match="no zone id of the demographics table"):
        builder.build(DemographicsConfig(table=str(csv), zones=str(path), zone_id="GEOID"), None, BuildContext(9))


def test_normalised_zone_ids():
    from mobclip_core.sources.zones import normalise_zone_ids

    got = normalise_zone_ids(pd.Series([6075000100.0, np.nan]))
    assert got[0] == "6075000100" and got[1] == "nan"
    assert list(normalise_zone_ids([" 06075", 6075, "D01", "0"])) == ["6075", "6075", "D01", "0"]


def test_missing_image_path_is_a_clear_error(small_city, tmp_path):
    builder = feature_modalities()["image"]
    cells = cells_to_strings(small_city.cells[:3])
    with pytest.raises(InvalidInputError, match=r"does not exist: set \[image\] path"):
        builder.build(ImageConfig(path="no-such.tif"), cells, BuildContext(9, resolve=lambda p: tmp_path / p))


def test_image_stats_are_cached(small_city, tmp_path, monkeypatch):
    from mobclip_core.modalities import imagery

    cells = cells_to_strings(small_city.cells[:30])
    first = imagery.image_stats_features(small_city.imagery, cells, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("image_stats-*.parquet"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("chips were read again instead of the cache")

    monkeypatch.setattr(imagery, "read_chips", no_reading)
    pd.testing.assert_frame_equal(first, imagery.image_stats_features(small_city.imagery, cells, cache_dir=tmp_path))


def test_text_model_loads_without_touching_the_environment():
    """No HF_HUB_OFFLINE (or any other variable) is set, and no host name is looked up."""
    code = (
        "import os, socket\n"
        "looked_up = []\n"
        "real = socket.getaddrinfo\n"
        "socket.getaddrinfo = lambda *a, **k: looked_up.append(a[0]) or real(*a, **k)\n"
        "before = dict(os.environ)\n"
        "from mobclip_core.modalities.poi import load_text_model\n"
        "model = load_text_model()\n"
        "assert model.encode(['cafe']).shape == (1, 384)\n"
        "changed = {k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}\n"
        "print('CHANGED', sorted(changed), 'LOOKED_UP', looked_up)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CHANGED [] LOOKED_UP []" in out.stdout
