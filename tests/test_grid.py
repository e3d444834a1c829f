"""H3 tokenization: exact ids against h3-py, polygons, rasters, geometry, validation."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Polygon, box

from mobclip_core.exceptions import CRSError, InvalidInputError, ResolutionError
from mobclip_core.grid import (
    cell_centroids,
    cells_to_polygons,
    cells_to_strings,
    neighbours,
    points_to_cells,
    polygons_to_cells,
    raster_to_cells,
    strings_to_cells,
    to_wgs84,
)


@pytest.mark.parametrize("res", [0, 5, 9, 15])
def test_points_to_cells_match_h3py_exactly(res):
    rng = np.random.default_rng(res)
    lon, lat = rng.uniform(-180, 180, 2000), rng.uniform(-89.9, 89.9, 2000)
    ours = cells_to_strings(points_to_cells(lon, lat, res))
    ref = np.array([h3.latlng_to_cell(b, a, res) for a, b in zip(lon, lat)])
    assert (ours == ref).all()
    assert (strings_to_cells(ours) == points_to_cells(lon, lat, res)).all()


def test_known_cell_id():
    # San Francisco ferry building, h3-py documentation example at resolution 9
    assert cells_to_strings(points_to_cells([-122.3937], [37.7955], 9))[0] == h3.latlng_to_cell(37.7955, -122.3937, 9)


@pytest.mark.parametrize("bad", [-1, 16, 7.5, "x", None])
def test_bad_resolution(bad):
    with pytest.raises(ResolutionError, match="resolution"):
        points_to_cells([0.0], [0.0], bad)


def test_longitude_out_of_range_names_the_fix():
    with pytest.raises(InvalidInputError, match=r"longitude 181.0 at row 1 is outside \[-180, 180\].*Reproject"):
        points_to_cells([10.0, 181.0], [0.0, 0.0], 5)
    with pytest.raises(InvalidInputError, match="latitude"):
        points_to_cells([10.0], [95.0], 5)
    with pytest.raises(InvalidInputError, match="NaN"):
        points_to_cells([np.nan], [1.0], 5)


def test_invalid_cell_strings():
    with pytest.raises(InvalidInputError, match="not an H3 cell"):
        strings_to_cells(["zzzz"])
    with pytest.raises(InvalidInputError, match="invalid H3 cell"):
        strings_to_cells(np.array([12345], dtype=np.uint64))


def test_polygons_center_containment_matches_h3py_and_is_disjoint():
    left, right = box(13.30, 52.40, 13.40, 52.50), box(13.40, 52.40, 13.50, 52.50)
    df = polygons_to_cells([left, right], 9)
    for i, poly in enumerate([left, right]):
        ref = {int(c, 16) for c in h3.h3shape_to_cells(h3.geo_to_h3shape(poly.__geo_interface__), 9)}
        assert set(df.loc[df.polygon == i, "h3_cell"].astype(int)) == ref
    assert not df["h3_cell"].duplicated().any()  # adjacent polygons share no cell


def test_filling_polygons_reports_progress_and_can_be_stopped():
    """Progress comes in steps of similar area (a few big polygons among many small ones), ends at 1, and the cells
    are the same as without it; a callback that raises stops the work there."""
    polys = [box(13.0, 52.0, 13.3, 52.3)] + [box(13.4 + i * 0.01, 52.0, 13.405 + i * 0.01, 52.005) for i in range(200)]
    for containment in ("center", "overlap"):
        seen = []
        with_progress = polygons_to_cells(polys, 9, containment=containment, on_progress=seen.append)
        pd.testing.assert_frame_equal(with_progress, polygons_to_cells(polys, 9, containment=containment))
        assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 2
        assert seen[0] > 0.5  # the big polygon first: most of the area, reported as such

    def stop(fraction):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        polygons_to_cells(polys, 9, on_progress=stop)


def test_polygons_overlap_is_superset():
    poly = box(13.30, 52.40, 13.35, 52.45)
    center = set(polygons_to_cells([poly], 9)["h3_cell"])
    overlap = set(polygons_to_cells([poly], 9, containment="overlap")["h3_cell"])
    assert center < overlap


def test_polygon_with_hole():
    outer = box(0, 0, 0.2, 0.2)
    hole = box(0.05, 0.05, 0.15, 0.15)
    holed = Polygon(outer.exterior.coords, [hole.exterior.coords])
    n_outer = len(polygons_to_cells([outer], 9))
    n_hole = len(polygons_to_cells([hole], 9))
    assert len(polygons_to_cells([holed], 9)) == n_outer - n_hole


def test_cells_to_polygons_round_trip_and_antimeridian():
    lon, lat = np.array([13.4, -70.0]), np.array([52.5, -33.0])
    cells = points_to_cells(lon, lat, 8)
    polys = cells_to_polygons(cells)
    assert all(p.contains(shapely.Point(x, y)) for p, x, y in zip(polys, lon, lat))
    clon, clat = cell_centroids(cells)
    assert (points_to_cells(clon, clat, 8) == cells).all()
    fiji = points_to_cells([179.99], [-17.0], 4)  # a cell straddling +-180
    g = cells_to_polygons(fiji)[0]
    minx, _, maxx, _ = g.bounds
    assert g.geom_type == "MultiPolygon" and minx >= -180 and maxx <= 180
    assert g.area < 1.0  # not a 359-degree-wide sliver


def test_neighbours_ring_and_pentagon():
    c = points_to_cells([13.4], [52.5], 7)
    nb = neighbours(c, 1)
    assert len(nb) == 6
    pentagon = np.array([int(h3.get_pentagons(5)[0], 16)], dtype=np.uint64)
    assert len(neighbours(pentagon, 1)) == 5


def test_to_wgs84_errors_and_reprojection():
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(geometry=[box(500000, 5000000, 501000, 5001000)], crs="EPSG:32632")
    out = to_wgs84(gdf)
    assert out.crs.to_epsg() == 4326 and 8.9 < out.total_bounds[0] < 9.1
    with pytest.raises(CRSError, match="no CRS"):
        to_wgs84(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]))
    with pytest.raises(InvalidInputError, match="empty"):
        to_wgs84(gpd.GeoDataFrame(geometry=[], crs="EPSG:4326"))
    # projected metres mislabelled as degrees
    with pytest.raises(InvalidInputError, match="longitude"):
        to_wgs84(gpd.GeoDataFrame(geometry=[box(500000, 5000000, 501000, 5001000)], crs="EPSG:4326"))


def test_raster_sum_preserves_total_and_mean(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    data = rng.poisson(5, size=(2, 120, 150)).astype(np.float32)
    data[0, :3, :3] = -1  # nodata
    path = tmp_path / "pop.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=150,
        height=120,
        count=2,
        dtype="float32",
        crs="EPSG:32632",
        transform=from_origin(500000, 5000000, 100, 100),
        nodata=-1,
    ) as dst:
        dst.write(data)
    sums = raster_to_cells(path, 8, statistic="sum", rows_per_block=17)
    valid = (data != -1).all(axis=0)
    assert sums["band_1"].sum() == pytest.approx(data[0][valid].sum())
    assert sums["band_2"].sum() == pytest.approx(data[1][valid].sum())
    assert sums["pixel_count"].sum() == valid.sum()
    means = raster_to_cells(path, 8, statistic="mean")
    assert np.allclose(means["band_1"] * means["pixel_count"], sums["band_1"])
