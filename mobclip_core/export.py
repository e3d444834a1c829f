"""Embeddings out: GeoParquet / GeoPackage with cell polygons, multi-band GeoTIFF, PCA RGB rendering."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd

from ._optional import import_optional
from .constants import EMBEDDING_PREFIX, REGION_INDEX
from .embeddings import embedding_columns as _embedding_columns
from .embeddings import read_embedding_table
from .exceptions import InvalidInputError
from .geofile import write_geodataframe
from .grid import cell_centroids, cells_to_polygons, strings_to_cells
from .io import OutputTransaction, atomic_path, output_transaction
from .rasterize import EmbeddingImage, embedding_image


def embedding_columns(df: pd.DataFrame, prefix: str = EMBEDDING_PREFIX) -> list[str]:
    return _embedding_columns(df.columns, prefix)


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
            write_geodataframe(gdf, tmp)
        elif suffix == ".gpkg":
            write_geodataframe(gdf.reset_index(), tmp, layer="embeddings")
        else:
            raise InvalidInputError(f"unknown embedding file type {suffix!r}: use .parquet or .gpkg")
    return path


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """Read an embedding table written by ``write_embeddings`` (or any table with h3_cell + emb_* columns)."""
    return read_embedding_table(path)


def write_geotiff(
    embeddings: pd.DataFrame, path: str | Path, *, pixels_per_cell: float = 4.0, rgb: bool = False
) -> Path:
    """Rasterise an embedding table (EPSG:4326): one float32 band per dimension, or the PCA RGB rendering."""
    return write_image(embedding_image(embeddings, pixels_per_cell=pixels_per_cell, rgb=rgb), path, rgb=rgb)


def write_image(image: EmbeddingImage, path: str | Path, *, rgb: bool = False) -> Path:
    """Write an ``EmbeddingImage`` (any band count and dtype) as a GeoTIFF with rasterio, atomically."""
    rasterio = import_optional("rasterio")
    from rasterio.transform import from_origin

    profile = dict(
        driver="GTiff",
        width=image.data.shape[2],
        height=image.data.shape[1],
        count=image.data.shape[0],
        dtype=image.data.dtype.name,
        crs="EPSG:4326",
        transform=from_origin(image.x0, image.y0, image.px, image.px),
        nodata=image.nodata,
        compress="deflate",
    )
    if rgb:
        profile["photometric"] = "RGB"
    path = Path(path)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(image.data)
            for i, name in enumerate(image.band_names, start=1):
                dst.set_band_description(i, name)
    return path


EXPORT_FILES = {
    "geoparquet": "{stem}.parquet",
    "gpkg": "{stem}.gpkg",
    "geotiff": "{stem}.tif",
    "pca_rgb": "{stem}_pca_rgb.tif",
}


def export_paths(out_dir: str | Path, stem: str = "embeddings") -> list[Path]:
    """The files ``export_all`` writes into ``out_dir``."""
    return [Path(out_dir) / pattern.format(stem=stem) for pattern in EXPORT_FILES.values()]


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
