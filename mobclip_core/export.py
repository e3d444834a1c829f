"""Embeddings out: GeoParquet / GeoPackage with cell polygons, multi-band GeoTIFF, PCA RGB rendering."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd

from ._optional import import_optional
from .constants import EMBEDDING_PREFIX, REGION_INDEX
from .exceptions import InvalidInputError
from .grid import cell_centroids, cells_to_polygons, points_to_cells, strings_to_cells
from .io import OutputTransaction, atomic_path, output_transaction, reading


def embedding_columns(df: pd.DataFrame, prefix: str = EMBEDDING_PREFIX) -> list[str]:
    cols = [c for c in df.columns if str(c).startswith(prefix) and str(c)[len(prefix) :].isdigit()]
    if not cols:
        raise InvalidInputError(f"no embedding columns named {prefix}0, {prefix}1, ... in {list(df.columns)[:8]}")
    return sorted(cols, key=lambda c: int(str(c)[len(prefix) :]))


def _table_cells(embeddings: pd.DataFrame) -> np.ndarray:
    """The table's cells as ``uint64`` after checking there are some, each once, at one resolution."""
    if len(embeddings) == 0:
        raise InvalidInputError("the embedding table has no rows: nothing to export (was the run empty?)")
    dup = embeddings.index.duplicated()
    if dup.any():
        raise InvalidInputError(
            f"the embedding table lists {int(dup.sum())} cells twice, e.g. {embeddings.index[dup][0]!r}: "
            "keep one row per h3_cell (e.g. df.groupby(level=0).mean())"
        )
    cells = strings_to_cells(embeddings.index.to_numpy())
    res = np.unique((cells >> np.uint64(52)) & np.uint64(0xF))
    if res.size > 1:
        raise InvalidInputError(
            f"the embedding table mixes H3 resolutions {res.tolist()}: export one resolution at a time"
        )
    return cells


def embeddings_geodataframe(embeddings: pd.DataFrame):
    """Embedding table (index hex ``h3_cell``) -> GeoDataFrame with cell polygons in EPSG:4326."""
    import geopandas as gpd

    cells = _table_cells(embeddings)
    lon, lat = cell_centroids(cells)
    frame = embeddings.copy()
    frame.index = frame.index.astype(str).rename(REGION_INDEX)
    frame.insert(0, "lon", lon)
    frame.insert(1, "lat", lat)
    return gpd.GeoDataFrame(frame, geometry=cells_to_polygons(cells), crs="EPSG:4326")


def write_embeddings(embeddings: pd.DataFrame, path: str | Path) -> Path:
    """Write to ``.parquet`` (GeoParquet) or ``.gpkg`` (GeoPackage layer 'embeddings'), atomically."""
    path = Path(path)
    gdf = embeddings_geodataframe(embeddings)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            gdf.to_parquet(tmp)
        elif suffix == ".gpkg":
            gdf.reset_index().to_file(tmp, driver="GPKG", layer="embeddings")
        else:
            raise InvalidInputError(f"unknown embedding file type {suffix!r}: use .parquet or .gpkg")
    return path


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """Read an embedding table written by ``write_embeddings`` (or any table with h3_cell + emb_* columns)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"embedding file {path} does not exist")
    with reading(path, "embedding table"):
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            import geopandas as gpd

            df = pd.DataFrame(gpd.read_file(path, ignore_geometry=True))
    if REGION_INDEX in df.columns:
        df = df.set_index(REGION_INDEX)
    if df.index.name != REGION_INDEX:
        raise InvalidInputError(f"{path} has no '{REGION_INDEX}' column: not an embedding table")
    df.index = df.index.astype(str)
    return df[embedding_columns(df)].astype(np.float32)


def pca_rgb(values: np.ndarray, *, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """First three principal components stretched to 1..255 (uint8); 0 is kept for nodata (rows with NaN)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values).all(axis=1)
    out = np.zeros((values.shape[0], 3), dtype=np.uint8)
    if finite.sum() < 2:
        return out
    out[finite] = _pca_rgb_finite(values[finite], lo, hi)
    return out


def _pca_rgb_finite(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = np.zeros((x.shape[0], 3))
    comps[:, : min(3, vt.shape[0])] = x @ vt[:3].T
    comps *= np.sign(comps.sum(axis=0) + 1e-12)  # deterministic sign
    a, b = np.percentile(comps, lo, axis=0), np.percentile(comps, hi, axis=0)
    scaled = np.clip((comps - a) / np.where(b > a, b - a, 1.0), 0, 1)
    return (1 + np.round(scaled * 254)).astype(np.uint8)


def _raster_grid(cells: np.ndarray, pixels_per_cell: float):
    import h3

    res = h3.get_resolution(format(int(cells[0]), "x"))
    bounds = np.array([g.bounds for g in cells_to_polygons(cells)])
    minx, miny = bounds[:, 0].min(), bounds[:, 1].min()
    maxx, maxy = bounds[:, 2].max(), bounds[:, 3].max()
    edge_deg = h3.average_hexagon_edge_length(res, unit="km") / 111.0
    px = edge_deg * 1.7 / pixels_per_cell
    width, height = int(np.ceil((maxx - minx) / px)), int(np.ceil((maxy - miny) / px))
    if width * height > 60_000_000:
        raise InvalidInputError(f"raster would be {width} x {height} pixels; lower pixels_per_cell")
    xs = minx + (np.arange(width) + 0.5) * px
    ys = maxy - (np.arange(height) + 0.5) * px
    gx, gy = np.meshgrid(xs, ys)
    pix_cells = points_to_cells(gx.ravel(), gy.ravel(), res)
    return res, (minx, maxy, px), width, height, pix_cells


def write_geotiff(
    embeddings: pd.DataFrame, path: str | Path, *, pixels_per_cell: float = 4.0, rgb: bool = False
) -> Path:
    """Rasterise an embedding table (EPSG:4326): one float32 band per dimension, or the PCA RGB rendering."""
    rasterio = import_optional("rasterio")
    from rasterio.transform import from_origin

    if not pixels_per_cell > 0:
        raise InvalidInputError(f"pixels_per_cell must be > 0, got {pixels_per_cell!r} (4 draws each cell clearly)")
    cols = embedding_columns(embeddings)
    cells = _table_cells(embeddings)
    _, (x0, y0, px), width, height, pix_cells = _raster_grid(cells, pixels_per_cell)
    pos = pd.Index(cells).get_indexer(pix_cells)
    inside = pos >= 0
    values = pca_rgb(embeddings[cols].to_numpy()) if rgb else embeddings[cols].to_numpy(np.float32)
    nodata = 0 if rgb else np.float32(np.nan)
    out = np.full((values.shape[1], width * height), nodata, dtype=values.dtype)
    out[:, inside] = values[pos[inside]].T
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=values.shape[1],
        dtype=values.dtype.name,
        crs="EPSG:4326",
        transform=from_origin(x0, y0, px, px),
        nodata=nodata,
        compress="deflate",
    )
    if rgb:
        profile["photometric"] = "RGB"
    path = Path(path)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(out.reshape(values.shape[1], height, width))
            names = ["pca_1", "pca_2", "pca_3"] if rgb else cols
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
    return path


EXPORT_FILES = {
    "geoparquet": "{stem}.parquet",
    "gpkg": "{stem}.gpkg",
    "geotiff": "{stem}.tif",
    "pca_rgb": "{stem}_pca_rgb.tif",
}


def export_all(
    embeddings: pd.DataFrame,
    out_dir: str | Path,
    stem: str = "embeddings",
    *,
    transaction: OutputTransaction | None = None,
) -> dict[str, Path]:
    """GeoParquet, GeoPackage, multi-band GeoTIFF and PCA RGB GeoTIFF of one table, all new or all old.

    The four files are staged and moved into ``out_dir`` together (see ``io.output_transaction``); pass the
    ``transaction`` of a larger output (a run folder) to make them part of it instead.
    """
    if not stem or Path(stem).name != stem or stem.startswith("."):
        raise InvalidInputError(f"export stem {stem!r} must be a plain file name such as 'embeddings'")
    embedding_columns(embeddings)  # refuse a table without embeddings before anything is staged
    names = {kind: pattern.format(stem=stem) for kind, pattern in EXPORT_FILES.items()}
    own = output_transaction(out_dir) if transaction is None else contextlib.nullcontext(transaction)
    with own as txn:
        write_embeddings(embeddings, txn.path(names["geoparquet"]))
        write_embeddings(embeddings, txn.path(names["gpkg"]))
        write_geotiff(embeddings, txn.path(names["geotiff"]))
        write_geotiff(embeddings, txn.path(names["pca_rgb"]), rgb=True)
    return {kind: txn.final(name) for kind, name in names.items()}
