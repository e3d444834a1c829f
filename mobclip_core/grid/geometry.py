"""Input validation and geometry preparation for H3: CRS, coordinate ranges, antimeridian, poles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from ..constants import WGS84_CRS
from ..exceptions import CRSError, InvalidInputError

if TYPE_CHECKING:
    import geopandas as gpd

# Parts wider than this are split into strips before they reach H3, which reads any polygon wider than
# 180 degrees as one that crosses the antimeridian (and a full-longitude polar cap as empty).
_MAX_PART_WIDTH_DEG = 90.0


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
            "drop or fix them before tokenizing"
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
            f"{what} has no CRS. Set it (e.g. gdf.set_crs('EPSG:4326')) or assign one in QGIS before tokenizing"
        )
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


def _polygon_parts(geom) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _polygon_parts(g)]
    return []


_WORLD = box(-180.0, -90.0, 180.0, 90.0)


def split_for_h3(geom) -> list[Polygon]:
    """Split a WGS84 (multi)polygon into parts that H3 reads as they look on a plate-carree map.

    Coordinates are taken planar, as QGIS draws them. Parts reaching past +-180 (Pacific layers stored as
    170..190) are cut at the antimeridian and wrapped; longitudes beyond +-360 are an error. Parts wider than
    90 degrees (wide bands, polar caps) are cut into strips, since H3 reads any polygon wider than 180 degrees as
    antimeridian-crossing and returns nothing for a full polar cap. Long edges are densified to 1 degree so
    H3's great-circle edges follow the drawn (rhumb) edges.
    """
    if geom is None or geom.is_empty:
        return []
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    minx, _, maxx, _ = geom.bounds
    if minx < -360.0 or maxx > 360.0:
        raise InvalidInputError(
            f"polygon longitudes span {minx}..{maxx}: outside [-360, 360]. Reproject the layer to EPSG:4326"
        )
    pieces: list[Polygon] = []
    for shift in (-360.0, 0.0, 360.0):
        window = shapely.affinity.translate(_WORLD, xoff=shift)
        if not geom.intersects(window):
            continue
        part = geom.intersection(window)
        if shift:
            part = shapely.affinity.translate(part, xoff=-shift)
        pieces.extend(_polygon_parts(part))
    out: list[Polygon] = []
    for piece in pieces:
        minx, miny, maxx, maxy = piece.bounds
        if maxx - minx <= _MAX_PART_WIDTH_DEG:
            out.append(piece)
            continue
        n_strips = int(np.ceil((maxx - minx) / _MAX_PART_WIDTH_DEG))
        edges = np.linspace(minx, maxx, n_strips + 1)
        for x0, x1 in zip(edges[:-1], edges[1:]):
            out.extend(_polygon_parts(piece.intersection(box(x0, miny, x1, maxy))))
    out = [p for p in out if not p.is_empty and p.area > 0]
    return [shapely.segmentize(p, 1.0) for p in out]
