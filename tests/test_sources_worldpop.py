"""WorldPop age/sex rasters found in a folder by their published names.

The first tests use small GeoTIFFs with WorldPop's names and planted counts (edge cases: ordering, the total
population file, mixed sets). The last ones read real WorldPop age/sex pixels: a 40 x 40 window around the Huanan
market in Wuhan of the 26 rasters (ages 20-80+, both sexes) published with Worobey et al. 2022
(tests/data/worldpop_wuhan/LICENSE-NOTE.md), checked against sums computed here with rasterio and h3 directly.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _opendata import WORLDPOP_WUHAN

from mobclip_core.config import DemographicsConfig
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.grid import raster_to_cells
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.demographics import worldpop_rasters
from mobclip_core.modalities.registry import feature_modality


def _raster(path, value: float) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32", crs="EPSG:4326",
        transform=from_origin(24.94, 60.17, 0.0005, 0.0005), nodata=-99999,
    ) as dst:  # fmt: skip
        dst.write(np.full((1, 4, 4), value, dtype=np.float32))


def test_worldpop_folder(tmp_path):
    planted = {"f_0": 1.0, "f_5": 2.0, "f_10": 1.0, "m_0": 3.0, "m_5": 1.0, "m_10": 2.0}
    for name, value in planted.items():
        _raster(tmp_path / f"fin_{name}_2020_constrained.tif", value)
    (tmp_path / "fin_ppp_2020_constrained.tif").write_bytes(b"")  # the total-population file is not a bin
    found = worldpop_rasters(tmp_path)
    assert list(found) == ["f_0", "f_5", "f_10", "m_0", "m_5", "m_10"]  # by sex, then age (5 before 10)
    hist = feature_modality("demographics").build(
        DemographicsConfig(worldpop=str(tmp_path)), None, BuildContext(9, resolve=lambda p: tmp_path / p)
    )
    total = sum(planted.values())
    assert np.allclose(hist.to_numpy(), [v / total for v in planted.values()], atol=1e-6)
    assert list(hist.columns) == [f"demo_{k}" for k in planted]


def test_worldpop_folder_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="no WorldPop age/sex raster"):
        worldpop_rasters(tmp_path)
    _raster(tmp_path / "fin_f_0_2020.tif", 1)
    _raster(tmp_path / "fin_f_0_2020_constrained.tif", 1)
    with pytest.raises(InvalidInputError, match="mixes WorldPop sets"):
        worldpop_rasters(tmp_path)


# --- real WorldPop pixels (tests/data/worldpop_wuhan) ---

WUHAN_AGES = list(range(20, 81, 5))


def _wuhan_folder(tmp_path):
    """The real rasters under WorldPop's published pattern (the year is only a label: see the LICENSE-NOTE)."""
    for sex in "fm":
        for age in WUHAN_AGES:
            shutil.copy(WORLDPOP_WUHAN / f"pop_{age}_{sex}_wuhan.tif", tmp_path / f"chn_{sex}_{age}_2020.tif")
    return tmp_path


def _valid_pixels(path):
    """(lon, lat, people) of the raster's valid pixel centres, read with rasterio alone."""
    import rasterio

    with rasterio.open(path) as src:
        a = src.read(1).astype(np.float64)
        rows, cols = np.nonzero(a != src.nodata)
        lon, lat = rasterio.transform.xy(src.transform, rows, cols, offset="center")
        return np.asarray(lon), np.asarray(lat), a[rows, cols]


def test_worldpop_real_wuhan_bins_and_totals(tmp_path):
    folder = _wuhan_folder(tmp_path)
    found = worldpop_rasters(folder)
    assert list(found) == [f"{s}_{a}" for s in "fm" for a in WUHAN_AGES]  # 26 bins, 20 before 25 before 80
    assert found["m_80"].name == "chn_m_80_2020.tif"
    grand = 0.0
    for path in found.values():
        _, _, people = _valid_pixels(path)
        assert people.size == 40 * 40 - 45  # the same 45 water pixels are nodata in every file
        cells = raster_to_cells(path, 9, statistic="sum")
        assert cells["pixel_count"].sum() == people.size
        assert cells.iloc[:, 0].sum() == pytest.approx(people.sum(), rel=1e-9)  # totals preserved per bin
        grand += people.sum()
    assert grand == pytest.approx(236828.55, abs=0.01)  # the sum recorded in the LICENSE-NOTE
    # hand-checked value: women aged 20-24 in the window
    assert _valid_pixels(found["f_20"])[2].sum() == pytest.approx(8299.32, abs=0.01)


def test_worldpop_real_wuhan_histograms_match_h3(tmp_path):
    import h3
    import pandas as pd

    folder = _wuhan_folder(tmp_path)
    hist = feature_modality("demographics").build(
        DemographicsConfig(worldpop=str(folder)), None, BuildContext(9, resolve=lambda p: folder / p)
    )
    assert list(hist.columns) == [f"demo_{s}_{a}" for s in "fm" for a in WUHAN_AGES]
    # independent: each valid pixel centre to its cell with h3-py, sums per cell and bin, divided by the cell total
    counts = {}
    for name, path in worldpop_rasters(folder).items():
        lon, lat, people = _valid_pixels(path)
        cell = [h3.latlng_to_cell(y, x, 9) for x, y in zip(lon, lat, strict=True)]
        counts[f"demo_{name}"] = pd.Series(people).groupby(pd.Index(cell)).sum()
    expected = pd.DataFrame(counts).fillna(0.0)
    expected = expected[expected.sum(axis=1) > 0]
    expected = expected.div(expected.sum(axis=1), axis=0)
    assert sorted(hist.index) == sorted(expected.index)
    assert len(hist) > 100
    np.testing.assert_allclose(hist.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, atol=1e-5)
    market = h3.latlng_to_cell(30.6196, 114.2571, 9)
    assert hist.loc[market].idxmax() == expected.loc[market].idxmax()
