"""Shared fixtures: a small synthetic city and its region dataset, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def small_city(tmp_path_factory):
    from mobclip_core.demo import make_demo_city

    return make_demo_city(
        tmp_path_factory.mktemp("city"), seed=3, rings=8, n_agents=900, n_weeks=3, n_districts=8, imagery_pixel_m=25.0
    )


@pytest.fixture(scope="session")
def small_config(small_city):
    from mobclip_core.config import config_from_dict

    raw = {
        "name": "test-city",
        "resolution": 9,
        "output": "out",
        "cache_dir": "cache",
        "mobility": {"records": "records.parquet"},
        "poi": {"path": "pois.gpkg"},
        "image": {"path": "imagery.tif"},
        "demographics": {"raster": "demographics.tif"},
        "line": {"samples_per_edge": 30},
        "train": {"batch_size": 64, "epochs": 30, "patience": 5},
    }
    return config_from_dict(raw, base_dir=Path(small_city.directory))


@pytest.fixture(scope="session")
def small_dataset(small_config):
    from mobclip_core.modalities.build import build_region_dataset

    return build_region_dataset(small_config)
