"""Embeddings out: GeoParquet / GeoPackage with cell polygons, multi-band GeoTIFF, PCA RGB rendering."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ._optional import import_optional
from .constants import EMBEDDING_PREFIX, REGION_INDEX
from .embeddings import embedding_columns as _embedding_columns
from .embeddings import read_embedding_table
from .exceptions import InvalidInputError
from .geofile import write_geodataframe
from .grid import cell_centroids, cells_to_polygons, strings_to_cells
from .io import atomic_path
from .rasterize import embedding_image


def embedding_columns(df: pd.DataFrame, prefix: str = EMBEDDING_PREFIX) -> list[str]:
    return _embedding_columns(df.columns, prefix)


def embeddings_geodataframe(embeddings: pd.DataFrame):
    """Embedding table (index hex ``h3_cell``) -> GeoDataFrame with cell polygons in EPSG:4326."""
    import geopandas as gpd

    cells = strings_to_cells(embeddings.index.to_numpy())
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
    rasterio = import_optional("rasterio")
    from rasterio.transform import from_origin

    image = embedding_image(embeddings, pixels_per_cell=pixels_per_cell, rgb=rgb)
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


def export_all(embeddings: pd.DataFrame, out_dir: str | Path, stem: str = "embeddings") -> dict[str, Path]:
    """GeoParquet, GeoPackage, multi-band GeoTIFF and PCA RGB GeoTIFF of one table."""
    out = Path(out_dir)
    return {
        "geoparquet": write_embeddings(embeddings, out / f"{stem}.parquet"),
        "gpkg": write_embeddings(embeddings, out / f"{stem}.gpkg"),
        "geotiff": write_geotiff(embeddings, out / f"{stem}.tif"),
        "pca_rgb": write_geotiff(embeddings, out / f"{stem}_pca_rgb.tif", rgb=True),
    }
