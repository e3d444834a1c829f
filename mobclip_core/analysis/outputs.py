"""Writing analysis results from the library and the CLI: cell layers (GeoPackage / GeoParquet with cell polygons)
and single-band cell rasters (GeoTIFF). QGIS writes its own outputs with QGIS's libraries instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError


def write_cell_layer(frame: pd.DataFrame, path: str | Path, *, layer: str = "cells") -> list[str]:
    """A per-cell table (index ``h3_cell``) with cell polygons in EPSG:4326, as ``.gpkg`` or ``.parquet``; returns
    the other layers an existing GeoPackage kept (``geofile.write_geofile``)."""
    from ..export import embeddings_geodataframe
    from ..geofile import write_geofile

    path = Path(path)
    gdf = embeddings_geodataframe(frame)
    suffix = path.suffix.lower()
    if suffix not in (".gpkg", ".parquet"):
        raise InvalidInputError(f"unknown layer type {suffix!r} for {path}: use .gpkg or .parquet")
    return write_geofile(gdf.reset_index() if suffix == ".gpkg" else gdf, path, layer=layer)


def write_cell_raster(values: pd.Series, path: str | Path, *, pixels_per_cell: float = 4.0) -> Path:
    """One band of per-cell values (index ``h3_cell``) as a GeoTIFF; float32 with NaN, or int16 with -1 for ints."""
    from ..export import write_image
    from ..grid import strings_to_cells
    from ..rasterize import cells_image

    integer = np.issubdtype(values.dtype, np.integer)
    data = values.to_numpy(np.int16 if integer else np.float32)
    image = cells_image(
        strings_to_cells(values.index.to_numpy()),
        data,
        band_names=[str(values.name or "value")],
        nodata=-1 if integer else np.float32(np.nan),
        pixels_per_cell=pixels_per_cell,
    )
    return write_image(image, path)
