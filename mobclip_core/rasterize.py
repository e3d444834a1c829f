"""Embedding tables as images: the pixel grid over the cells, the bands, and the PCA RGB rendering.

``embedding_image`` computes what a GeoTIFF writer needs (array, geotransform, nodata, band names) with numpy and
h3-py only; the library writes it with rasterio (``export.write_geotiff``), the QGIS algorithm with QGIS's own GDAL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .embeddings import embedding_columns, table_resolution
from .exceptions import InvalidInputError
from .grid import cells_to_wkb, points_to_cells, strings_to_cells
from .grid.wkb import parse_wkb

MAX_PIXELS = 60_000_000


@dataclass
class EmbeddingImage:
    """A north-up EPSG:4326 image: ``data[band, row, col]``, top-left corner ``(x0, y0)``, square pixels ``px``."""

    data: np.ndarray
    x0: float
    y0: float
    px: float
    nodata: float
    band_names: list[str]

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL's geotransform (x0, px, 0, y0, 0, -px)."""
        return (self.x0, self.px, 0.0, self.y0, 0.0, -self.px)


def pca_rgb(values: np.ndarray, *, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """First three principal components stretched to 1..255 (uint8); 0 is kept for nodata (rows with NaN)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values).all(axis=1)
    out = np.zeros((values.shape[0], 3), dtype=np.uint8)
    if finite.sum() < 2:
        return out
    x = values[finite] - values[finite].mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = np.zeros((x.shape[0], 3))
    comps[:, : min(3, vt.shape[0])] = x @ vt[:3].T  # fewer than three dimensions: the rest stay flat
    comps *= np.sign(comps.sum(axis=0) + 1e-12)  # deterministic sign
    a, b = np.percentile(comps, lo, axis=0), np.percentile(comps, hi, axis=0)
    scaled = np.clip((comps - a) / np.where(b > a, b - a, 1.0), 0, 1)
    out[finite] = (1 + np.round(scaled * 254)).astype(np.uint8)
    return out


def raster_grid(cells: np.ndarray, pixels_per_cell: float):
    """The pixel grid over the cells' boundaries: (resolution, (x0, y0, px), width, height, cell of each pixel)."""
    import h3

    res = h3.get_resolution(format(int(cells[0]), "x"))
    coords = np.concatenate([r for w in cells_to_wkb(cells) for p in parse_wkb(w).polygons for r in p])
    minx, miny = coords.min(axis=0)
    maxx, maxy = coords.max(axis=0)
    edge_deg = h3.average_hexagon_edge_length(res, unit="km") / 111.0
    px = edge_deg * 1.7 / pixels_per_cell
    width, height = int(np.ceil((maxx - minx) / px)), int(np.ceil((maxy - miny) / px))
    if width * height > MAX_PIXELS:
        raise InvalidInputError(
            f"raster would be {width} x {height} pixels (more than {MAX_PIXELS:,}): lower the pixels per cell"
        )
    xs = minx + (np.arange(width) + 0.5) * px
    ys = maxy - (np.arange(height) + 0.5) * px
    gx, gy = np.meshgrid(xs, ys)
    pix_cells = points_to_cells(gx.ravel(), gy.ravel(), res)
    return res, (minx, maxy, px), width, height, pix_cells


def embedding_image(table: pd.DataFrame, *, pixels_per_cell: float = 4.0, rgb: bool = False) -> EmbeddingImage:
    """Rasterise an embedding table: one float32 band per dimension (NaN outside the cells), or the PCA RGB
    rendering (uint8, 0 outside). Cells with a NaN value are left empty in the RGB image."""
    if not pixels_per_cell > 0:
        raise InvalidInputError(f"pixels per cell must be positive, got {pixels_per_cell!r}")
    cols = embedding_columns(table.columns)
    if rgb:
        table = table[np.isfinite(table[cols].to_numpy()).all(axis=1)]
        if len(table) < 3:
            raise InvalidInputError("the PCA RGB image needs at least 3 cells with complete embeddings")
    elif table.empty:
        raise InvalidInputError("the embedding table has no rows")
    table_resolution(table)
    cells = strings_to_cells(table.index.to_numpy())
    _, (x0, y0, px), width, height, pix_cells = raster_grid(cells, pixels_per_cell)
    pos = pd.Index(cells).get_indexer(pix_cells)
    inside = pos >= 0
    values = pca_rgb(table[cols].to_numpy()) if rgb else table[cols].to_numpy(np.float32)
    nodata = 0 if rgb else np.float32(np.nan)
    out = np.full((values.shape[1], width * height), nodata, dtype=values.dtype)
    out[:, inside] = values[pos[inside]].T
    names = ["pca_1", "pca_2", "pca_3"] if rgb else [str(c) for c in cols]
    return EmbeddingImage(out.reshape(values.shape[1], height, width), x0, y0, px, float(nodata), names)
