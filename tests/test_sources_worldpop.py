"""WorldPop age/sex rasters found in a folder by their published names.

No small real WorldPop raster is in a public repository (a country's file is tens of MB), so the rasters here are
small GeoTIFFs with WorldPop's names and planted counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from mobclip_core.config import DemographicsConfig
from mobclip_core.exceptions import InvalidInputError
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
