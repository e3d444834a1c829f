"""Polygons made ready for H3: longitudes unwrapped, cut at the antimeridian, polar caps closed, wide parts cut.

H3 reads a polygon the way GeoJSON (RFC 7946) means it: an edge joins its two vertices the short way round, so an
edge whose longitude jumps by more than 180 degrees crosses the antimeridian (Fiji drawn with vertices at 177 and
-178 is about 5 degrees wide, not 355). The two sides of the +-180 meridian are the same line: a step from -180 to
180 goes nowhere, unless taking it so leaves no area at all (``box(-180, 85, 180, 90)``, the usual way to write a
polar cap), in which case it is taken as drawn, along the whole parallel. A ring that winds once around the globe
(Antarctica, a circle of latitude) encloses the pole on its side and is closed over it.

H3 itself takes no longitude past 180 and reads any part wider than 180 degrees as antimeridian-crossing; so each
polygon is unwrapped into one continuous longitude range, cut into 360-degree windows shifted back into
[-180, 180], and parts wider than 90 degrees are cut into strips. Everything is numpy: this runs inside QGIS, where
shapely (a second GEOS) must not be loaded.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidInputError
from .wkb import Polygon, Ring

MAX_PART_WIDTH = 90.0
"""Parts wider than this (degrees of longitude) are cut into strips before they reach H3."""

_AREA_EPS = 1e-14


def split_polygon(rings: Polygon) -> list[Polygon]:
    """Parts of one polygon (exterior ring first) that H3 reads as intended: each inside [-180, 180] in longitude,
    at most ``MAX_PART_WIDTH`` wide, exterior counter-clockwise, holes clockwise. Empty for a degenerate polygon."""
    rings = [r for r in (_closed(r) for r in rings) if len(r) >= 4]
    if not rings:
        return []
    _check_ranges(rings)
    if _is_plain(rings):
        return [p for p in [_orient(rings)] if abs(_area(p[0])) > _AREA_EPS]
    outer = _unwrap(rings[0])
    holes = [_align(_unwrap(h), outer) for h in rings[1:]]
    poly = _orient([outer, *holes])
    lo, hi = outer[:, 0].min(), outer[:, 0].max()
    parts: list[Polygon] = []
    for k in range(int(np.floor((lo + 180.0) / 360.0)), int(np.floor((hi + 180.0) / 360.0)) + 1):
        shift = 360.0 * k
        for piece in clip_x(poly, shift - 180.0, shift + 180.0):
            parts.append([r - (shift, 0.0) for r in piece] if shift else piece)
    return [strip for part in parts for strip in _strips(part)]


def interior_point(parts: list[Polygon]) -> tuple[float, float] | None:
    """A point inside the polygon made of ``parts``: GEOS's ``PointOnSurface`` rule, in numpy.

    Each part is cut by a horizontal line between the vertex latitudes nearest its middle; the midpoint of the
    widest inside section over all parts wins (the first part's first vertex if no part has any width).
    """
    best, best_width = None, -1.0
    for rings in parts:
        scan_y = _scan_line_y(rings)
        crossings = np.sort(np.concatenate([_crossings(r, scan_y) for r in rings]))
        width, x = 0.0, rings[0][0, 0]
        for x1, x2 in zip(crossings[0::2], crossings[1::2]):
            if x2 - x1 > width:
                width, x = x2 - x1, (x1 + x2) / 2.0
        point = (float(x), float(scan_y)) if width > 0 else (float(rings[0][0, 0]), float(rings[0][0, 1]))
        if width > best_width:
            best, best_width = point, width
    return best


def clip_x(rings: Polygon, lo: float, hi: float) -> list[Polygon]:
    """The polygon (oriented as ``split_polygon`` returns) cut to ``lo <= x <= hi``: zero or more polygons."""
    out = []
    for piece in _clip_min(rings, lo):
        mirrored = _orient([r * (-1.0, 1.0) for r in piece])
        for clipped in _clip_min(mirrored, -hi):
            out.append(_orient([r * (-1.0, 1.0) for r in clipped]))
    return out


# --- unwrapping ---------------------------------------------------------------------------------------------------
def _closed(ring: Ring) -> Ring:
    ring = np.asarray(ring, dtype=np.float64)[:, :2]
    if len(ring) and not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    return ring


def _check_ranges(rings: Polygon) -> None:
    coords = np.concatenate(rings)
    if not np.isfinite(coords).all():
        raise InvalidInputError("a polygon has NaN or infinite coordinates: repair the geometry (Fix geometries)")
    lon, lat = coords[:, 0], coords[:, 1]
    if np.abs(lat).max() > 90.0 + 1e-9:
        raise InvalidInputError(
            f"polygon latitude {lat[np.argmax(np.abs(lat))]!r} is outside [-90, 90]: are longitude and latitude "
            "swapped, or the layer in a projected CRS labelled as EPSG:4326? Reproject it to EPSG:4326"
        )
    if np.abs(lon).max() > 360.0:
        raise InvalidInputError(
            f"polygon longitudes span {lon.min()!r}..{lon.max()!r}: outside [-360, 360]. Is the layer in a "
            "projected CRS labelled as EPSG:4326? Reproject it to EPSG:4326"
        )
    for r in rings:
        np.clip(r[:, 1], -90.0, 90.0, out=r[:, 1])


def _is_plain(rings: Polygon) -> bool:
    """Inside [-180, 180], no edge across the antimeridian, at most MAX_PART_WIDTH wide: nothing to do."""
    lon = rings[0][:, 0]
    if lon.min() < -180.0 or lon.max() > 180.0 or lon.max() - lon.min() > MAX_PART_WIDTH:
        return False
    return all(np.abs(np.diff(r[:, 0])).max(initial=0.0) <= 180.0 for r in rings)


def _unwrap(ring: Ring) -> Ring:
    """The ring with continuous longitudes (each step the short way round), closed over a pole it winds around."""
    lon, lat = ring[:, 0], ring[:, 1]
    step = np.diff(lon)
    seam = (np.abs(lon[:-1]) == 180.0) & (np.abs(lon[1:]) == 180.0) & (step != 0)
    short = step - 360.0 * np.round(step / 360.0)
    unwrapped = _cumulative(lon[0], np.where(seam, 0.0, short), lat)
    if seam.any() and abs(_area(unwrapped)) <= _AREA_EPS:
        unwrapped = _cumulative(lon[0], np.where(seam, step, short), lat)  # drawn along the parallel: a cap
    winding = unwrapped[-1, 0] - unwrapped[0, 0]
    if abs(winding) < 180.0:
        unwrapped[-1] = unwrapped[0]
        return unwrapped
    if abs(winding) > 540.0:
        raise InvalidInputError("a polygon ring winds around the globe more than once: repair the geometry")
    pole = 90.0 if lat.mean() > 0 else -90.0
    x0, x1 = unwrapped[0, 0], unwrapped[-1, 0]
    return np.vstack([unwrapped, [[x1, pole], [x0, pole], unwrapped[0]]])


def _cumulative(start: float, steps: np.ndarray, lat: np.ndarray) -> Ring:
    return np.column_stack([start + np.concatenate([[0.0], np.cumsum(steps)]), lat])


def _align(hole: Ring, outer: Ring) -> Ring:
    """Shift a hole by whole turns so it lies where its exterior was unwrapped to."""
    mid_outer = (outer[:, 0].min() + outer[:, 0].max()) / 2.0
    mid_hole = (hole[:, 0].min() + hole[:, 0].max()) / 2.0
    return hole + (360.0 * np.round((mid_outer - mid_hole) / 360.0), 0.0)


def _strips(part: Polygon) -> list[Polygon]:
    lo, hi = part[0][:, 0].min(), part[0][:, 0].max()
    if hi - lo <= MAX_PART_WIDTH:
        return [part]
    edges = np.linspace(lo, hi, int(np.ceil((hi - lo) / MAX_PART_WIDTH)) + 1)
    return [p for a, b in zip(edges[:-1], edges[1:]) for p in clip_x(part, a, b)]


# --- geometry in numpy --------------------------------------------------------------------------------------------
def _area(ring: Ring) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _orient(rings: Polygon) -> Polygon:
    """Exterior counter-clockwise, holes clockwise (the convention the clipping below relies on)."""
    out = []
    for i, r in enumerate(rings):
        area = _area(r)
        out.append(r[::-1].copy() if (area < 0) == (i == 0) and area != 0 else r)
    return out


def _point_in_ring(x: float, y: float, ring: Ring) -> bool:
    xs, ys, xe, ye = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    hit = (ys > y) != (ye > y)
    xi = xs[hit] + (y - ys[hit]) * (xe[hit] - xs[hit]) / (ye[hit] - ys[hit])
    return bool(np.count_nonzero(xi > x) % 2)


def _clip_min(rings: Polygon, a: float) -> list[Polygon]:
    """Keep ``x >= a`` of a polygon whose exterior is counter-clockwise and holes clockwise.

    Rings that cross the line are cut into chains that enter and leave through it; walking down the line from
    where a chain leaves (the kept side is then on the left), the next point met is where the next chain enters.
    """
    xs = np.concatenate([r[:, 0] for r in rings])
    if xs.min() >= a:
        return [rings]
    if xs.max() <= a:
        return []
    chains, whole = [], []
    for ring in rings:
        pts = ring[:-1]
        inside = pts[:, 0] >= a
        if inside.all():
            whole.append(ring)
            continue
        if not inside.any():
            continue
        start = int(np.argmin(inside))  # an outside vertex: chains then run entry -> exit within one pass
        pts, inside = np.roll(pts, -start, axis=0), np.roll(inside, -start)
        n = len(pts)
        edges = np.flatnonzero(inside != np.roll(inside, -1))
        for e, x in zip(edges[0::2], edges[1::2]):
            enter, leave = _cross(pts[e], pts[(e + 1) % n], a), _cross(pts[x], pts[(x + 1) % n], a)
            chains.append(np.vstack([enter, pts[e + 1 : x + 1], leave]))
    outers = [r for r in whole if _area(r) > 0]
    holes = [r for r in whole if _area(r) < 0]
    outers += _join_chains(chains)
    polygons = [[o] for o in outers if abs(_area(o)) > _AREA_EPS]
    for hole in holes:
        for poly in polygons:
            if _point_in_ring(hole[0, 0], hole[0, 1], poly[0]):
                poly.append(hole)
                break
    return polygons


def _cross(p: np.ndarray, q: np.ndarray, a: float) -> np.ndarray:
    t = (a - p[0]) / (q[0] - p[0])
    return np.array([[a, p[1] + t * (q[1] - p[1])]])


def _join_chains(chains: list[np.ndarray]) -> list[Ring]:
    if not chains:
        return []
    entries = np.array([c[0, 1] for c in chains])
    used = np.zeros(len(chains), dtype=bool)
    rings = []
    for first in range(len(chains)):
        if used[first]:
            continue
        pieces, current = [], first
        while True:
            used[current] = True
            pieces.append(chains[current])
            below = np.flatnonzero(entries <= chains[current][-1, 1])
            nxt = below[np.argmax(entries[below])] if below.size else int(np.argmax(entries))
            if nxt == first or used[nxt]:
                break
            current = nxt
        ring = np.vstack([*pieces, pieces[0][:1]])
        keep = np.r_[True, np.any(np.diff(ring, axis=0) != 0, axis=1)]
        rings.append(ring[keep])
    return [r for r in rings if len(r) >= 4]


def _scan_line_y(rings: Polygon) -> float:
    ys = np.concatenate([r[:, 1] for r in rings])
    lo, hi = rings[0][:, 1].min(), rings[0][:, 1].max()
    centre = (lo + hi) / 2.0
    below = ys[(ys <= centre) & (ys > lo)]
    above = ys[(ys > centre) & (ys < hi)]
    lo = below.max() if below.size else lo
    hi = above.min() if above.size else hi
    return (hi + lo) / 2.0


def _crossings(ring: Ring, y: float) -> np.ndarray:
    p0, p1 = ring[:-1], ring[1:]
    y0, y1 = p0[:, 1], p1[:, 1]
    hit = ~(((y0 > y) & (y1 > y)) | ((y0 < y) & (y1 < y)))
    hit &= y0 != y1
    hit &= ~((y0 == y) & (y1 < y)) & ~((y1 == y) & (y0 < y))
    x0, x1 = p0[hit, 0], p1[hit, 0]
    dx, dy = x1 - x0, y1[hit] - y0[hit]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(dx == 0, x0, x0 + (y - y0[hit]) / (dy / dx))
    return x
