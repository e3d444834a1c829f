"""Well-known binary (WKB) in and out, with numpy only.

WKB is how geometries cross between the QGIS side (``QgsGeometry.asWkb``), shapely (``shapely.to_wkb``) and files
(GeoParquet, GeoPackage) without any of them loading the others' native libraries. Inside the library a polygon is
a list of rings, each an ``(n, 2)`` float64 array of (lon, lat) with the first vertex repeated at the end; the
first ring is the exterior. Z and M ordinates are read and dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from ..exceptions import InvalidInputError

Ring = np.ndarray
Polygon = list[Ring]

_POINT, _LINESTRING, _POLYGON, _MULTIPOINT, _MULTILINESTRING, _MULTIPOLYGON, _COLLECTION = range(1, 8)
_EWKB_Z, _EWKB_M, _EWKB_SRID = 0x80000000, 0x40000000, 0x20000000


class ParsedGeometry:
    """The polygons and points of one WKB geometry (lines are kept only as a count, for messages)."""

    __slots__ = ("polygons", "points", "n_lines")

    def __init__(self) -> None:
        self.polygons: list[Polygon] = []
        self.points: list[tuple[float, float]] = []
        self.n_lines = 0


def parse_wkb(wkb: bytes | bytearray | memoryview | None) -> ParsedGeometry:
    """Polygons and points of an ISO or extended WKB geometry (any nesting of multi-parts and collections)."""
    out = ParsedGeometry()
    if wkb is None or len(wkb) == 0:
        return out
    buf = memoryview(bytes(wkb))
    try:
        end = _read(buf, 0, out)
    except (struct.error, ValueError, IndexError) as exc:
        raise InvalidInputError(f"a geometry is not valid WKB ({exc}): is the layer's geometry readable?") from exc
    if end != len(buf):
        raise InvalidInputError(f"a geometry's WKB has {len(buf) - end} trailing bytes: the geometry is corrupt")
    return out


def _read(buf: memoryview, pos: int, out: ParsedGeometry) -> int:
    order = "<" if buf[pos] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", buf, pos + 1)
    pos += 5
    dims = 2 + bool(code & _EWKB_Z) + bool(code & _EWKB_M)
    if code & _EWKB_SRID:
        pos += 4
    code &= 0x0FFFFFFF
    base, iso = code % 1000, code // 1000
    dims += {0: 0, 1: 1, 2: 1, 3: 2}.get(iso, 0)
    if base == _POINT:
        x, y = struct.unpack_from(order + "2d", buf, pos)
        if x == x and y == y:  # POINT EMPTY is written as NaN coordinates
            out.points.append((x, y))
        return pos + 8 * dims
    if base == _LINESTRING:
        (n,) = struct.unpack_from(order + "I", buf, pos)
        out.n_lines += 1
        return pos + 4 + 8 * dims * n
    if base == _POLYGON:
        (n_rings,) = struct.unpack_from(order + "I", buf, pos)
        pos += 4
        rings = []
        for _ in range(n_rings):
            (n,) = struct.unpack_from(order + "I", buf, pos)
            coords = np.frombuffer(buf, dtype=order + "f8", count=n * dims, offset=pos + 4).reshape(n, dims)
            rings.append(np.array(coords[:, :2], dtype=np.float64))
            pos += 4 + 8 * dims * n
        if rings and len(rings[0]):
            out.polygons.append(rings)
        return pos
    if base in (_MULTIPOINT, _MULTILINESTRING, _MULTIPOLYGON, _COLLECTION):
        (n_parts,) = struct.unpack_from(order + "I", buf, pos)
        pos += 4
        for _ in range(n_parts):
            pos = _read(buf, pos, out)
        return pos
    raise InvalidInputError(
        f"WKB geometry type {code} (curved or other non-linear geometry) is not supported: convert the layer to "
        "plain polygons or points first (Processing 'Segmentize by maximum angle' for curves)"
    )


def polygon_wkb(polygons: Sequence[Polygon], *, multi: bool | None = None) -> bytes:
    """2D little-endian WKB of one polygon, or a MultiPolygon when there are several (or ``multi=True``)."""
    multi = len(polygons) != 1 if multi is None else multi
    parts = [_polygon_body(p) for p in polygons]
    if not multi:
        return parts[0]
    return struct.pack("<BII", 1, _MULTIPOLYGON, len(parts)) + b"".join(parts)


def _polygon_body(rings: Polygon) -> bytes:
    chunks = [struct.pack("<BII", 1, _POLYGON, len(rings))]
    for ring in rings:
        ring = np.ascontiguousarray(ring, dtype="<f8")
        chunks.append(struct.pack("<I", len(ring)))
        chunks.append(ring.tobytes())
    return b"".join(chunks)


def geometries_to_wkb(geometries) -> list[bytes | None]:
    """WKB of each geometry: bytes pass through, shapely geometries are written 2D (None for missing ones).

    ``output_dimension=2`` is not cosmetic: where an older GEOS is already loaded (inside QGIS) shapely's default
    dimension is refused ("WKB output dimension must be 2 or 3").
    """
    items = list(geometries)
    if not items or all(g is None or isinstance(g, bytes | bytearray | memoryview) for g in items):
        return [None if g is None else bytes(g) for g in items]
    import shapely

    arr = np.asarray(items, dtype=object)
    present = np.array([g is not None and not isinstance(g, float) for g in items], dtype=bool)
    out: list[bytes | None] = [None] * len(items)
    if present.any():
        wkb = shapely.to_wkb(arr[present], output_dimension=2)
        for i, w in zip(np.flatnonzero(present), wkb):
            out[i] = w
    return out
