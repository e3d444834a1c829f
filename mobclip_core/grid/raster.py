"""Rasters to per-cell statistics (sums for counts such as population, means for intensities).

``pixels_to_cells`` is the one aggregation, fed with blocks of pixel values and pixel-centre coordinates by any
reader: ``raster_to_cells`` reads files with rasterio (library side); the QGIS algorithm reads with QGIS's own GDAL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..constants import REGION_INDEX
from ..exceptions import CRSError, InvalidInputError
from .cells import cells_to_strings, points_to_cells, validate_resolution

Statistic = Literal["sum", "mean"]

PixelBlock = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(values[bands, n] float64 with NaN for nodata, lon[n], lat[n] of the pixel centres in EPSG:4326)."""


def pixels_to_cells(
    blocks: Iterable[PixelBlock],
    resolution: int,
    band_names: list[str],
    *,
    statistic: Statistic = "sum",
    source: str = "the raster",
) -> pd.DataFrame:
    """Aggregate blocks of pixels into H3 cells by pixel centre.

    Every valid pixel (finite in every band, finite coordinates) goes to the one cell that contains its centre, so
    ``"sum"`` preserves the raster total exactly. Memory is bounded by a block plus the number of cells. Returns
    one row per cell (index ``h3_cell``), one column per band plus ``pixel_count``.
    """
    res = validate_resolution(resolution)
    if statistic not in ("sum", "mean"):
        raise InvalidInputError(f"statistic must be 'sum' or 'mean', got {statistic!r}")
    parts_cells: list[np.ndarray] = []
    parts_sums: list[np.ndarray] = []
    parts_counts: list[np.ndarray] = []
    for values, lon, lat in blocks:
        valid = np.isfinite(values).all(axis=0) & np.isfinite(lon) & np.isfinite(lat)
        if not valid.any():
            continue
        cells = points_to_cells(lon[valid], lat[valid], res)
        uniq, inv = np.unique(cells, return_inverse=True)
        parts_cells.append(uniq)
        parts_sums.append(np.stack([np.bincount(inv, weights=v[valid], minlength=uniq.size) for v in values], 1))
        parts_counts.append(np.bincount(inv, minlength=uniq.size))
    if not parts_cells:
        raise InvalidInputError(f"{source} has no valid pixels (all nodata or NaN)")
    keys, inv = np.unique(np.concatenate(parts_cells), return_inverse=True)
    block_sums = np.concatenate(parts_sums)
    values = np.stack(
        [np.bincount(inv, weights=block_sums[:, b], minlength=keys.size) for b in range(block_sums.shape[1])], axis=1
    )
    n = np.bincount(inv, weights=np.concatenate(parts_counts), minlength=keys.size).astype(np.int64)
    if statistic == "mean":
        values = values / n[:, None]
    df = pd.DataFrame(values, columns=band_names, index=pd.Index(cells_to_strings(keys), name=REGION_INDEX))
    df["pixel_count"] = n
    return df


def raster_to_cells(
    path: str | Path,
    resolution: int,
    *,
    statistic: Statistic = "sum",
    bands: list[int] | None = None,
    band_names: list[str] | None = None,
    rows_per_block: int = 512,
    progress: Callable[[float], object] | None = None,
) -> pd.DataFrame:
    """``pixels_to_cells`` of a raster file read with rasterio in row blocks (any CRS; nodata pixels skipped)."""
    rasterio = import_optional("rasterio")
    from pyproj import Transformer

    validate_resolution(resolution)
    if statistic not in ("sum", "mean"):
        raise InvalidInputError(f"statistic must be 'sum' or 'mean', got {statistic!r}")
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"raster {path} does not exist")
    with rasterio.open(path) as src:
        if src.crs is None:
            raise CRSError(f"raster {path} has no CRS: assign one (gdal_edit.py -a_srs EPSG:XXXX) first")
        bands = bands or list(range(1, src.count + 1))
        names = band_names or [src.descriptions[b - 1] or f"band_{b}" for b in bands]
        if len(names) != len(bands):
            raise InvalidInputError("band_names must have one name per band")
        transformer = None
        if src.crs.to_epsg() != 4326:
            transformer = Transformer.from_crs(src.crs.to_wkt(), "EPSG:4326", always_xy=True)

        def blocks():
            cols = np.arange(src.width) + 0.5
            n_blocks = int(np.ceil(src.height / rows_per_block))
            for bi, row0 in enumerate(range(0, src.height, rows_per_block)):
                nrows = min(rows_per_block, src.height - row0)
                window = rasterio.windows.Window(0, row0, src.width, nrows)
                data = src.read(bands, window=window).astype(np.float64).reshape(len(bands), -1)
                if src.nodata is not None:
                    data[:, (data == src.nodata).any(axis=0)] = np.nan
                rr, cc = np.meshgrid(np.arange(row0, row0 + nrows) + 0.5, cols, indexing="ij")
                t = src.transform
                xs = t.a * cc.ravel() + t.b * rr.ravel() + t.c
                ys = t.d * cc.ravel() + t.e * rr.ravel() + t.f
                if transformer is not None:
                    xs, ys = transformer.transform(xs, ys)
                yield data, np.asarray(xs), np.asarray(ys)
                if progress is not None:
                    progress((bi + 1) / n_blocks)

        return pixels_to_cells(blocks(), resolution, names, statistic=statistic, source=f"raster {path}")
