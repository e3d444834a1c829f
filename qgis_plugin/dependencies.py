"""Transitional names for ``processing_algorithms`` until it imports ``mobclip_core.dependencies`` directly.

The table lives in :mod:`mobclip_core.dependencies` (one table for pyproject.toml, the library's install hints and
the plugin). The tuples below keep today's algorithms' needs; delete this module once nothing imports it.
"""

from mobclip_core.dependencies import MAPS, TRAINING, install_hint, missing_modules

CORE = ("numpy", "pandas", "pyarrow", "shapely", "h3", "h3ronpy", "polars", "polars_h3", "geopandas")
RASTER = (*CORE, "rasterio")
REGRESSION = (*CORE, "lightgbm", "sklearn")

__all__ = ["CORE", "MAPS", "RASTER", "REGRESSION", "TRAINING", "install_hint", "missing_modules"]
