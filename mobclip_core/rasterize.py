"""Embedding tables as images: the pixel grid over the cells, the bands, and the PCA RGB rendering.

``embedding_image`` computes what a GeoTIFF writer needs (array, geotransform, nodata, band names) with numpy and
h3-py only; the library writes it with rasterio (``export.write_geotiff``), the QGIS algorithm with QGIS's own GDAL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .embeddings import embedding_columns, table_resolution
from .exceptions import InvalidInputError
from .grid import cells_to_wkb, points_to_cells, strings_to_cells
from .grid.wkb import parse_wkb

MAX_PIXELS = 60_000_000
MAX_IMAGE_BYTES = 2 * 1024**3  # one image in memory (all bands): a 128-band float32 raster of 4.2 M pixels


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


@dataclass
class PcaColourScale:
    """The PCA RGB colouring of one table, kept so that other tables can be coloured on the same scale.

    Fitted on a reference table (mean, the first three principal axes with a deterministic sign, and the
    ``lo``..``hi`` percentile stretch of each component); ``transform`` colours any table of the same dimension, so
    two maps (two years, two regions, a model and its successor) are directly comparable. ``save``/``load`` keep it
    as JSON beside the maps.
    """

    mean: np.ndarray  # (d,)
    axes: np.ndarray  # (3, d): rows are principal axes (zero rows when the table has fewer than 3 dimensions)
    lo: np.ndarray  # (3,) component value drawn as 1
    hi: np.ndarray  # (3,) component value drawn as 255

    @classmethod
    def fit(cls, values: np.ndarray, *, lo: float = 2.0, hi: float = 98.0) -> PcaColourScale:
        values = np.asarray(values, dtype=np.float64)
        x = values[np.isfinite(values).all(axis=1)]
        if x.shape[0] < 2:
            raise InvalidInputError("a PCA colour scale needs at least 2 rows with complete embeddings")
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        axes = np.zeros((3, x.shape[1]))
        axes[: min(3, vt.shape[0])] = vt[:3]  # fewer than three dimensions: the rest stay flat
        comps = (x - mean) @ axes.T
        sign = np.sign(comps.sum(axis=0) + 1e-12)  # deterministic sign: the bulk of the cells on the positive side
        axes *= sign[:, None]
        comps *= sign
        return cls(mean, axes, np.percentile(comps, lo, axis=0), np.percentile(comps, hi, axis=0))

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Colours (uint8, 1..255) of each row; 0 (nodata) for rows with a NaN."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.dim:
            raise InvalidInputError(
                f"this colour scale was fitted on {self.dim}-dimensional embeddings; the table has "
                f"{values.shape[-1]}: colour tables of one model (same dimension) on one scale"
            )
        finite = np.isfinite(values).all(axis=1)
        out = np.zeros((values.shape[0], 3), dtype=np.uint8)
        comps = (values[finite] - self.mean) @ self.axes.T
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        out[finite] = (1 + np.round(np.clip((comps - self.lo) / span, 0, 1) * 254)).astype(np.uint8)
        return out

    def to_dict(self) -> dict:
        return {
            "kind": "mobclip-pca-colour-scale",
            "version": 1,
            **{k: getattr(self, k).tolist() for k in ("mean", "axes", "lo", "hi")},
        }

    @classmethod
    def from_dict(cls, raw: dict) -> PcaColourScale:
        if not isinstance(raw, dict) or raw.get("kind") != "mobclip-pca-colour-scale":
            raise InvalidInputError(
                "not a MobCLIP PCA colour scale: save one with 'Save the colour scale used' of QGIS's 'PCA RGB on a "
                "shared colour scale', with mobclip pca-rgb --save-scale, or with PcaColourScale.save"
            )
        try:
            parts = {k: np.asarray(raw[k], dtype=np.float64) for k in ("mean", "axes", "lo", "hi")}
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"the PCA colour scale is incomplete or damaged ({exc}): save it again") from exc
        d = parts["mean"].size
        if parts["axes"].shape != (3, d) or parts["lo"].shape != (3,) or parts["hi"].shape != (3,):
            raise InvalidInputError("the PCA colour scale's arrays do not fit together: save it again")
        return cls(**parts)

    def save(self, path: str | Path) -> Path:
        from .io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PcaColourScale:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"colour scale file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path} is not a readable colour scale ({exc}): save it again") from exc
        return cls.from_dict(raw)


def pca_rgb(values: np.ndarray, *, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """First three principal components stretched to 1..255 (uint8); 0 is kept for nodata (rows with NaN)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isfinite(values).all(axis=1).sum() < 2:
        return np.zeros((values.shape[0], 3), dtype=np.uint8)
    return PcaColourScale.fit(values, lo=lo, hi=hi).transform(values)


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def raster_grid(cells: np.ndarray, pixels_per_cell: float, *, bands: int = 0, itemsize: int = 4):
    """The pixel grid over the cells' boundaries: (resolution, (x0, y0, px), width, height, cell of each pixel).

    Refused before anything is allocated above ``MAX_PIXELS`` pixels, or above ``MAX_IMAGE_BYTES`` for an image of
    ``bands`` bands of ``itemsize`` bytes, with the largest pixels per cell that would do."""
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
    nbytes = width * height * bands * itemsize
    if nbytes > MAX_IMAGE_BYTES:
        fits = pixels_per_cell * (MAX_IMAGE_BYTES / nbytes) ** 0.5
        raise InvalidInputError(
            f"the raster would be {width:,} x {height:,} pixels x {bands} bands, "
            f"{_size(nbytes)} in memory (more than {_size(MAX_IMAGE_BYTES)}): set the pixels per cell to "
            f"{np.floor(fits * 10) / 10:g} or fewer, or export fewer bands (the PCA RGB image has 3)"
        )
    xs = minx + (np.arange(width) + 0.5) * px
    ys = maxy - (np.arange(height) + 0.5) * px
    gx, gy = np.meshgrid(xs, ys)
    pix_cells = points_to_cells(gx.ravel(), gy.ravel(), res)
    return res, (minx, maxy, px), width, height, pix_cells


def cells_image(
    cells: np.ndarray,
    values: np.ndarray,
    *,
    band_names: list[str],
    nodata: float,
    pixels_per_cell: float = 4.0,
) -> EmbeddingImage:
    """Rasterise per-cell values (``values[i]`` is cell ``cells[i]``'s row, one column per band) in EPSG:4326.

    Pixels take the value of the cell their centre falls in, ``nodata`` outside the cells; the dtype is ``values``'s.
    """
    if not pixels_per_cell > 0:
        raise InvalidInputError(f"pixels per cell must be positive, got {pixels_per_cell!r}")
    cells = np.asarray(cells, dtype=np.uint64)
    values = np.asarray(values)
    values = values[:, None] if values.ndim == 1 else values
    if cells.size == 0:
        raise InvalidInputError("no cells to rasterise")
    _, (x0, y0, px), width, height, pix_cells = raster_grid(
        cells, pixels_per_cell, bands=values.shape[1], itemsize=values.dtype.itemsize
    )
    pos = pd.Index(cells).get_indexer(pix_cells)
    inside = pos >= 0
    out = np.full((values.shape[1], width * height), nodata, dtype=values.dtype)
    rows = pos[inside]
    for band in range(values.shape[1]):  # band by band: no second image-sized copy at the peak
        out[band, inside] = values[rows, band]
    return EmbeddingImage(out.reshape(values.shape[1], height, width), x0, y0, px, float(nodata), list(band_names))


def embedding_image(
    table: pd.DataFrame,
    *,
    pixels_per_cell: float = 4.0,
    rgb: bool = False,
    colour_scale: PcaColourScale | None = None,
) -> EmbeddingImage:
    """Rasterise an embedding table: one float32 band per dimension (NaN outside the cells), or the PCA RGB
    rendering (uint8, 0 outside; on ``colour_scale`` when given, else on the table's own PCA). Cells with a NaN value
    are left empty in the RGB image."""
    if not pixels_per_cell > 0:
        raise InvalidInputError(f"pixels per cell must be positive, got {pixels_per_cell!r}")
    cols = embedding_columns(table.columns)
    if rgb:
        table = table[np.isfinite(table[cols].to_numpy()).all(axis=1)]
        if len(table) < (1 if colour_scale is not None else 3):
            raise InvalidInputError("the PCA RGB image needs at least 3 cells with complete embeddings")
    elif table.empty:
        raise InvalidInputError("the embedding table has no rows")
    table_resolution(table)
    cells = strings_to_cells(table.index.to_numpy())
    if rgb:
        scale = colour_scale if colour_scale is not None else PcaColourScale.fit(table[cols].to_numpy())
        return cells_image(
            cells,
            scale.transform(table[cols].to_numpy()),
            band_names=["pca_1", "pca_2", "pca_3"],
            nodata=0,
            pixels_per_cell=pixels_per_cell,
        )
    return cells_image(
        cells,
        table[cols].to_numpy(np.float32),
        band_names=[str(c) for c in cols],
        nodata=np.float32(np.nan),
        pixels_per_cell=pixels_per_cell,
    )
