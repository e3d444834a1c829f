"""Cells from polygons on the whole sphere: the antimeridian, the poles, real country shapes, and the numpy-only
paths the QGIS plugin runs (h3-py alone, WKB in and out, GEOS's point-on-surface rule without GEOS)."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box
from world_shapes import fiji_across, inside_bounds, split_reference, unwrapped_hull, world_countries, wrapped

from mobclip_core.exceptions import InvalidInputError, MobClipError
from mobclip_core.grid import (
    cell_centroids,
    cells_to_strings,
    cells_to_wkb,
    parent_cells,
    points_to_cells,
    polygons_to_cells,
    representative_points,
    strings_to_cells,
)
from mobclip_core.grid._backend import h3py_only
from mobclip_core.grid.wkb import parse_wkb, polygon_wkb


@pytest.fixture(scope="module")
def countries():
    return world_countries()


def cells_of(geoms, res, **kw) -> set[int]:
    return set(polygons_to_cells(geoms, res, **kw)["h3_cell"].tolist())


def both_backends(geoms, res, **kw) -> set[int]:
    """The cells, after checking that h3-py alone (the QGIS plugin's tier) finds exactly the same ones."""
    fast = cells_of(geoms, res, **kw)
    with h3py_only():
        assert cells_of(geoms, res, **kw) == fast
    return fast


def test_fiji_across_the_antimeridian(countries):
    fiji = countries["Fiji"]
    islands = both_backends([fiji], 6)  # Natural Earth stores Fiji already split at +-180: the plain case
    lon, _ = cell_centroids(np.fromiter(islands, np.uint64))
    assert 350 < len(islands) < 700 and ((lon > 174) | (lon < -175)).all()
    hull, across = fiji_across(countries)  # one ring with vertices near 177 and -178 (jumps of ~355 degrees)
    assert np.abs(np.diff(np.asarray(across.exterior.coords)[:, 0])).max() > 300
    got = both_backends([across], 5)
    assert got == cells_of(split_reference(hull), 5)
    assert got == cells_of([hull], 5)  # the same ring written with longitudes past 180 is normalised
    assert 300 < len(got) < 2000  # before: 49,062 cells around the globe, none inside
    assert inside_bounds(got, hull)


def test_fiji_across_the_antimeridian_through_the_cli(countries, tmp_path, capsys):
    """`mobclip tessellate` on a GeoPackage holding that Fiji ring: Fiji's cells, none around the globe, with the
    Rust accelerators and with h3-py alone (both must follow the library's short-way rule for edges)."""
    import contextlib

    import geopandas as gpd

    from mobclip_core.cli import main

    hull, across = fiji_across(countries)
    gpd.GeoDataFrame({"name": ["Fiji"]}, geometry=[across], crs="EPSG:4326").to_file(tmp_path / "fiji.gpkg")
    expected = cells_of(split_reference(hull), 5)  # cut at 180 by shapely: the cells, not just their number
    for backend in (contextlib.nullcontext, h3py_only):
        out = tmp_path / f"cells_{backend.__name__}.gpkg"
        with backend():
            assert main(["tessellate", str(tmp_path / "fiji.gpkg"), "--resolution", "5", "--out", str(out)]) == 0
        got = set(strings_to_cells(gpd.read_file(out).h3_cell.to_numpy()).tolist())
        assert 300 < len(got) < 2000 and inside_bounds(got, hull), (backend, len(got))  # before: 49,062 cells
        assert got == expected
        assert capsys.readouterr().out.startswith(f"{len(got)} cells at resolution 5")


def test_bering_strait_chukotka_and_alaska(countries):
    russia = shapely.union_all(list(countries["Russia"].geoms))
    sides = [russia.intersection(box(165, 60, 180, 75)), russia.intersection(box(-180, 60, -165, 75))]
    far_east = unwrapped_hull(sides)  # Chukotka, 165..195 degrees across +-180, as one convex ring
    chukotka = both_backends([wrapped(far_east)], 4)
    assert chukotka == cells_of(split_reference(far_east), 4) == cells_of([far_east], 4)
    alaska = max(countries["United States of America"].geoms, key=lambda p: p.area * (p.bounds[3] > 55))
    alaska_cells = both_backends([alaska], 4)
    assert len(chukotka) > 100 and len(alaska_cells) > 500
    assert inside_bounds(chukotka, far_east)  # nothing spills around the globe or east of the strait
    assert not chukotka & alaska_cells  # no cell claimed by both sides of the strait


def all_cells(res: int) -> np.ndarray:
    return np.array([int(c, 16) for r0 in h3.get_res0_cells() for c in h3.cell_to_children(r0, res)], np.uint64)


def test_polar_caps(countries):
    every = all_cells(3)
    _, lat = cell_centroids(every)
    north = both_backends([box(-180, 85, 180, 90)], 3)
    assert north == set(every[lat >= 85].tolist()) and len(north) == 72  # h3 alone: 0
    # a circle of latitude, winding once around the pole with no vertex on the antimeridian
    ring = np.c_[np.arange(-170, 190, 20.0), np.full(18, 85.0)]
    assert both_backends([Polygon(ring)], 3) == north
    south = both_backends([countries["Antarctica"]], 2)
    every2 = all_cells(2)
    _, lat2 = cell_centroids(every2)
    assert set(every2[lat2 < -86].tolist()) <= south  # the ice sheet around the pole is in
    _, lat = cell_centroids(np.fromiter(south, np.uint64))
    assert lat.max() < -55


def test_wide_band_needs_its_vertices():
    # Edges join vertices the short way round (H3's and GeoJSON's rule): box(-170, 10, 170, 20) is the 20-degree
    # Pacific strip. A band around the world says so with vertices every < 180 degrees.
    strip = both_backends([box(-170, 10, 170, 20)], 2)
    lon, _ = cell_centroids(np.fromiter(strip, np.uint64))
    assert ((lon > 169) | (lon < -169)).all()
    band = both_backends([shapely.segmentize(box(-170, 10, 170, 20), 10.0)], 2)
    assert len(band) > 15 * len(strip)
    world = both_backends([box(-180, -90, 180, 90)], 1)
    assert len(world) == h3.get_num_cells(1)


def test_longitudes_past_180_normalised_and_beyond_360_refused():
    wrapped_box = both_backends([box(179, -18, 181, -16)], 5)
    assert wrapped_box == cells_of([box(179, -18, 180, -16), box(-180, -18, -179, -16)], 5)
    assert len(wrapped_box) > 150
    assert both_backends([box(200, 10, 201, 11)], 6) == cells_of([box(-160, 10, -159, 11)], 6)
    with pytest.raises(InvalidInputError, match=r"outside \[-360, 360\].*Reproject"):
        polygons_to_cells([box(500000, 50, 501000, 51)], 5)
    with pytest.raises(InvalidInputError, match="projected CRS.*Reproject"):
        polygons_to_cells([box(500000, 5000000, 501000, 5001000)], 5)
    with pytest.raises(InvalidInputError, match="latitude"):
        polygons_to_cells([box(10, 80, 11, 95)], 5)


def test_holes_across_the_antimeridian():
    outer = np.array([[170, -30], [-170, -30], [-170, -10], [170, -10], [170, -30]], float)
    hole = np.array([[178, -22], [-178, -22], [-178, -18], [178, -18], [178, -22]], float)
    holed = both_backends([Polygon(outer, [hole])], 4)
    assert holed == cells_of([Polygon(outer)], 4) - cells_of([Polygon(hole)], 4)
    assert len(cells_of([Polygon(hole)], 4)) > 20


def test_cells_straddling_180_are_split_not_359_degrees_wide():
    cells = points_to_cells([179.99, -179.99, 13.4], [-17.0, 65.0, 52.5], 3)
    for cell, wkb in zip(cells.tolist(), cells_to_wkb(cells)):
        parts = parse_wkb(wkb).polygons
        for rings in parts:
            assert np.ptp(rings[0][:, 0]) < 30  # each part is narrow
        ring = np.array(h3.cell_to_boundary(format(cell, "x")))[:, ::-1]
        ring[:, 0] = np.where(ring[:, 0] < 0, ring[:, 0] + 360, ring[:, 0]) if np.ptp(ring[:, 0]) > 180 else ring[:, 0]
        assert sum(shapely.area(Polygon(p[0])) for p in parts) == pytest.approx(Polygon(ring).area, rel=1e-9)
    with h3py_only():
        assert [len(parse_wkb(w).polygons) for w in cells_to_wkb(cells)] == [2, 2, 1]


def test_representative_points_follow_geos(countries):
    geoms = list(countries.values[:120])
    lon, lat = representative_points(geoms)
    ref = shapely.point_on_surface(geoms)
    plain = [i for i, g in enumerate(geoms) if g.bounds[2] - g.bounds[0] < 90]
    np.testing.assert_allclose(lon[plain], shapely.get_x(ref)[plain], rtol=0, atol=1e-9)
    np.testing.assert_allclose(lat[plain], shapely.get_y(ref)[plain], rtol=0, atol=1e-9)
    assert all(shapely.contains_xy(g, x, y) for g, x, y in zip(geoms, lon, lat))
    lon, lat = representative_points([shapely.Point(3, 4), None, Polygon()])
    assert lon[0] == 3 and lat[0] == 4 and np.isnan(lon[1:]).all()


def test_small_polygons_fall_back_to_their_point():
    tiny = box(13.4, 52.5, 13.4001, 52.5001)  # far smaller than a res-7 cell
    big = box(13.0, 52.0, 13.3, 52.3)
    df = polygons_to_cells([tiny, big, None], 7, fallback="point")
    row = df[df.polygon == 0]
    assert len(row) == 1 and row.from_point.all() and not df[df.polygon == 1].from_point.any()
    assert row.h3_cell.iloc[0] == points_to_cells([13.40005], [52.50005], 7)[0]
    assert 2 not in set(df.polygon)
    assert 0 not in set(polygons_to_cells([tiny, big], 7)["polygon"])


def test_points_and_ids_without_accelerators():
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 3000), rng.uniform(-89, 89, 3000)
    fast = points_to_cells(lon, lat, 8)
    with h3py_only():
        assert (points_to_cells(lon, lat, 8) == fast).all()
        assert (strings_to_cells(cells_to_strings(fast)) == fast).all()
        slow_centres = cell_centroids(fast)
        with pytest.raises(InvalidInputError, match="invalid H3 cell"):
            strings_to_cells(np.array([12345], dtype=np.uint64))
    np.testing.assert_allclose(np.c_[slow_centres], np.c_[cell_centroids(fast)], atol=1e-9)


@pytest.mark.parametrize("res", [0, 3, 8])
def test_parent_cells_match_h3py(res):
    cells = points_to_cells(np.linspace(-179, 179, 500), np.linspace(-85, 85, 500), 10)
    ref = [int(h3.cell_to_parent(format(c, "x"), res), 16) for c in cells.tolist()]
    assert parent_cells(cells, res).tolist() == ref
    with pytest.raises(MobClipError, match="coarser"):
        parent_cells(parent_cells(cells, res), res + 1)


def test_wkb_reader_handles_dimensions_and_nesting():
    poly = Polygon([(0, 0), (1, 0), (1, 1), (0, 0)])
    for g in (
        shapely.force_3d(poly),
        shapely.MultiPolygon([poly, shapely.affinity.translate(poly, 5)]),
        shapely.GeometryCollection([poly, shapely.Point(9, 9)]),
    ):
        for dim in (2, 3):
            parsed = parse_wkb(shapely.to_wkb(g, output_dimension=dim, flavor="iso"))
            assert parsed.polygons[0][0].shape == (4, 2)
    assert parse_wkb(shapely.to_wkb(shapely.Point(1, 2), include_srid=True)).points == [(1.0, 2.0)]
    ring = np.asarray(poly.exterior.coords)
    assert shapely.from_wkb(polygon_wkb([[ring]])).equals(poly)
    with pytest.raises(InvalidInputError, match="not supported"):
        parse_wkb(bytes.fromhex("01") + (10).to_bytes(4, "little") + bytes(4))  # CurvePolygon
    with pytest.raises(InvalidInputError, match="not valid WKB"):
        parse_wkb(shapely.to_wkb(poly)[:-5])
