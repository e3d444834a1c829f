"""Input validation for H3: coordinate ranges, and GeoDataFrames to WGS84 (library side)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..constants import WGS84_CRS
from ..exceptions import CRSError, InvalidInputError

if TYPE_CHECKING:
    import geopandas as gpd


def _as_degrees(values, name: str, what: str) -> np.ndarray:
    """``values`` as float64, or an error naming the first entry that is not a number (text such as 'n/a')."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        import pandas as pd

        flat = pd.Series(np.asarray(values, dtype=object).ravel())
        bad = pd.to_numeric(flat, errors="coerce").isna() & flat.notna()
        i = int(np.argmax(bad.to_numpy())) if bad.any() else 0
        raise InvalidInputError(
            f"{what}: {name} must be numbers; {int(bad.sum())} value(s) are not, e.g. {flat.iloc[i]!r} at row {i}. "
            "Fix or drop those rows (pandas: pd.to_numeric(column, errors='coerce') then dropna)"
        ) from None


def validate_lonlat(lon: np.ndarray, lat: np.ndarray, *, what: str = "points") -> tuple[np.ndarray, np.ndarray]:
    """Return float64 arrays after checking shapes, finiteness and WGS84 ranges."""
    lon = _as_degrees(lon, "longitude", what)
    lat = _as_degrees(lat, "latitude", what)
    if lon.shape != lat.shape or lon.ndim != 1:
        raise InvalidInputError(
            f"{what}: longitude and latitude must be 1-D arrays of equal length, got {lon.shape} and {lat.shape}"
        )
    if lon.size == 0:
        return lon, lat
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    if bad.any():
        raise InvalidInputError(
            f"{what}: {int(bad.sum())} coordinates are NaN or infinite (first at row {int(np.argmax(bad))}); "
            "drop or fix them first"
        )
    lon_bad = (lon < -180.0) | (lon > 180.0)
    if lon_bad.any():
        i = int(np.argmax(lon_bad))
        raise InvalidInputError(
            f"{what}: longitude {lon[i]!r} at row {i} is outside [-180, 180] ({int(lon_bad.sum())} such rows). "
            "Are the columns swapped, or the data in a projected CRS? Reproject to EPSG:4326 or wrap "
            "longitudes with ((lon + 180) % 360) - 180"
        )
    lat_bad = (lat < -90.0) | (lat > 90.0)
    if lat_bad.any():
        i = int(np.argmax(lat_bad))
        raise InvalidInputError(
            f"{what}: latitude {lat[i]!r} at row {i} is outside [-90, 90] ({int(lat_bad.sum())} such rows). "
            "Are longitude and latitude swapped, or the data in a projected CRS?"
        )
    return lon, lat


def to_wgs84(gdf: gpd.GeoDataFrame, *, what: str = "layer") -> gpd.GeoDataFrame:
    """Reproject a GeoDataFrame to WGS84, refusing a missing CRS and empty or invalid geometries."""
    if gdf.crs is None:
        raise CRSError(
            f"{what} has no CRS. Set it (e.g. gdf.set_crs('EPSG:4326')) or assign one in QGIS "
            "(Layer Properties > Source)"
        )
    import shapely

    if len(gdf) == 0:
        raise InvalidInputError(f"{what} is empty: it has no features to tokenize")
    if gdf.crs.to_string() != WGS84_CRS and not gdf.crs.equals(WGS84_CRS):
        try:
            gdf = gdf.to_crs(WGS84_CRS)
        except Exception as exc:  # pyproj raises several types
            raise CRSError(f"{what}: cannot transform CRS {gdf.crs} to EPSG:4326 ({exc})") from exc
    geoms = gdf.geometry.values
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if missing.all():
        raise InvalidInputError(f"{what}: every geometry is empty or missing")
    if missing.any():
        gdf = gdf[~missing]
    bounds = shapely.bounds(gdf.geometry.values)
    if not np.isfinite(bounds).all():
        raise InvalidInputError(f"{what}: some geometries have NaN or infinite coordinates")
    lon = np.concatenate([bounds[:, 0], bounds[:, 2]])
    lat = np.concatenate([bounds[:, 1], bounds[:, 3]])
    validate_lonlat(lon, lat, what=f"{what} geometry bounds")
    return gdf
