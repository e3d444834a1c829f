"""Demographics modality: age/sex rasters (e.g. WorldPop) or zone tables -> normalised histogram per cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import REGION_INDEX
from ..exceptions import InvalidInputError
from ..grid import cells_to_strings, raster_to_cells
from .cache import cached, fingerprint


def _normalise(counts: pd.DataFrame) -> pd.DataFrame:
    total = counts.sum(axis=1)
    hist = counts[total > 0].div(total[total > 0], axis=0)
    hist.columns = [f"demo_{c}" for c in counts.columns]
    return hist.astype(np.float32)


def demographics_from_rasters(
    rasters: dict[str, str | Path] | str | Path, resolution: int, *, cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """Per-cell histogram over age/sex bins from counts rasters.

    ``rasters`` is one multi-band raster (one band per bin, band descriptions as bin names) or a mapping
    bin name -> single-band raster (the WorldPop layout, e.g. ``{"f_0": "xxx_f_0_2020.tif", ...}``). Pixels are
    summed into cells (totals preserved), then each cell's counts are divided by its total. Cells with no people
    are left out.
    """
    if isinstance(rasters, str | Path):
        path = Path(rasters)
        key = fingerprint("demo", resolution, path)
        return cached(
            cache_dir,
            "demographics",
            key,
            lambda: _normalise(raster_to_cells(path, resolution, statistic="sum").drop(columns="pixel_count")),
        )
    if not rasters:
        raise InvalidInputError("no demographic rasters given")
    paths = {k: Path(v) for k, v in rasters.items()}
    key = fingerprint("demo", resolution, sorted(paths), *paths.values())

    def compute() -> pd.DataFrame:
        cols = [raster_to_cells(p, resolution, statistic="sum", band_names=[name])[[name]] for name, p in paths.items()]
        return _normalise(pd.concat(cols, axis=1).fillna(0.0))

    return cached(cache_dir, "demographics", key, compute)


def demographics_from_table(
    table: pd.DataFrame, *, zone_cells: pd.DataFrame | None = None, zone: str = "zone"
) -> pd.DataFrame:
    """Per-cell histogram from a table of counts per bin, keyed by ``h3_cell`` or by zone.

    With ``zone_cells`` (from ``zones_to_cells``) a zone's histogram is given to each of its cells.
    """
    counts = table.select_dtypes("number")
    if counts.empty:
        raise InvalidInputError("the demographics table has no numeric bin columns")
    if zone_cells is None:
        if table.index.name != REGION_INDEX:
            raise InvalidInputError(f"index the table by '{REGION_INDEX}' or pass zone_cells to spread zones to cells")
        return _normalise(counts)
    hist = _normalise(counts.set_axis(table[zone] if zone in table.columns else table.index))
    joined = zone_cells.join(hist, on="zone", how="inner")
    joined[REGION_INDEX] = cells_to_strings(joined[REGION_INDEX].to_numpy(np.uint64))
    return joined.drop(columns=["zone", "weight"]).groupby(REGION_INDEX).mean()
