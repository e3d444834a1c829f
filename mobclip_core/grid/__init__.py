"""H3 tokenization: points, polygons and rasters to cells; cells to geometry; neighbours."""

from .cells import (
    cell_area_km2,
    cell_centroids,
    cells_to_polygons,
    cells_to_strings,
    neighbours,
    points_to_cells,
    strings_to_cells,
    validate_cells,
    validate_resolution,
)
from .geometry import split_for_h3, to_wgs84, validate_lonlat
from .polygons import polygons_to_cells
from .raster import raster_to_cells

__all__ = [
    "cell_area_km2",
    "cell_centroids",
    "cells_to_polygons",
    "cells_to_strings",
    "neighbours",
    "points_to_cells",
    "polygons_to_cells",
    "raster_to_cells",
    "split_for_h3",
    "strings_to_cells",
    "to_wgs84",
    "validate_cells",
    "validate_lonlat",
    "validate_resolution",
]
