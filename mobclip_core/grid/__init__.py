"""H3 tokenization and the spatial helpers the library, the evaluation and the QGIS algorithms share.

Points, polygons (antimeridian- and pole-safe) and rasters to cells; cells to boundaries; parent blocks; lookup of
per-cell tables. numpy, pandas and h3-py are enough to use it, which is what
the QGIS plugin runs with. Nothing here loads shapely, pyproj or GDAL unless a function that takes their objects
is called.
"""

from .blocks import cell_blocks, point_blocks
from .cells import (
    cell_area_km2,
    cell_centroids,
    cell_resolution,
    cells_to_polygons,
    cells_to_strings,
    cells_to_wkb,
    neighbours,
    parent_cells,
    points_to_cells,
    strings_to_cells,
    validate_cells,
    validate_resolution,
)
from .geometry import to_wgs84, validate_lonlat
from .lookup import lookup_rows
from .polygons import PreparedPolygons, polygons_to_cells, prepare_polygons, representative_points, tessellate
from .raster import pixels_to_cells, raster_to_cells

__all__ = [
    "PreparedPolygons",
    "cell_area_km2",
    "cell_blocks",
    "cell_centroids",
    "cell_resolution",
    "cells_to_polygons",
    "cells_to_strings",
    "cells_to_wkb",
    "lookup_rows",
    "neighbours",
    "parent_cells",
    "pixels_to_cells",
    "point_blocks",
    "points_to_cells",
    "polygons_to_cells",
    "prepare_polygons",
    "raster_to_cells",
    "representative_points",
    "strings_to_cells",
    "tessellate",
    "to_wgs84",
    "validate_cells",
    "validate_lonlat",
    "validate_resolution",
]
