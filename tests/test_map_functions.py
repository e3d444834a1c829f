"""The library functions behind the QGIS algorithms, called without QGIS: reading tables, attaching, averaging over
polygons, regressing a field, rasterising, writing geo files, and the child-process worker."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import shapely

from mobclip_core.embeddings import (
    aggregate_over_polygons,
    attach_to_cell_ids,
    attach_to_geometries,
    read_embedding_table,
)
from mobclip_core.evaluation.layer_regression import regress_layer
from mobclip_core.exceptions import InvalidInputError, WorkerError
from mobclip_core.grid import cell_centroids, cells_to_strings, points_to_cells


@pytest.fixture(scope="module")
def table():
    lon, lat = np.meshgrid(np.linspace(9.0, 9.05, 12), np.linspace(45.0, 45.05, 12))
    cells = np.unique(points_to_cells(lon.ravel(), lat.ravel(), 9))
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        rng.normal(size=(cells.size, 4)).astype(np.float32),
        index=pd.Index(cells_to_strings(cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(4)],
    )


def test_tables_read_back_from_parquet_and_geopackage_without_gdal(table, tmp_path):
    from mobclip_core.export import write_embeddings

    for name in ("e.parquet", "e.gpkg"):
        write_embeddings(table, tmp_path / name)
        pd.testing.assert_frame_equal(read_embedding_table(tmp_path / name), table)
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(InvalidInputError, match=f"cut_{name}.*truncated or still being written"):
            read_embedding_table(tmp_path / f"cut_{name}")
    mixed = table.copy()
    mixed.index = [*table.index[:-1], cells_to_strings(points_to_cells([9.0], [45.0], 8))[0]]
    mixed.index.name = "h3_cell"
    mixed.reset_index().to_parquet(tmp_path / "mixed.parquet")
    with pytest.raises(InvalidInputError, match=r"mixes H3 resolutions \[8, 9\]"):
        read_embedding_table(tmp_path / "mixed.parquet")
    pd.DataFrame({"h3_cell": ["x"], "a": [1.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(InvalidInputError, match="no embedding columns named emb_0"):
        read_embedding_table(tmp_path / "other.parquet")


def test_attach_to_points_polygons_and_ids(table):
    cells = np.array([int(c, 16) for c in table.index[:3]], dtype=np.uint64)
    lon, lat = cell_centroids(cells)
    geoms = [
        shapely.Point(lon[0], lat[0]),
        shapely.box(lon[1] - 1e-4, lat[1] - 1e-4, lon[1] + 1e-4, lat[1] + 1e-4),
        None,
    ]
    got = attach_to_geometries(table, geoms)
    np.testing.assert_allclose(got[:2], table.to_numpy()[:2], rtol=1e-6)
    assert np.isnan(got[2]).all()
    by_id = attach_to_cell_ids(table, [table.index[2], None, "", "  "])
    np.testing.assert_allclose(by_id[0], table.to_numpy()[2], rtol=1e-6)
    assert np.isnan(by_id[1:]).all()
    finer = points_to_cells(lon[:1], lat[:1], 11)  # a finer cell takes its parent's row
    np.testing.assert_allclose(attach_to_cell_ids(table, cells_to_strings(finer))[0], table.to_numpy()[0], rtol=1e-6)
    with pytest.raises(InvalidInputError, match="not an H3 cell id"):
        attach_to_cell_ids(table, ["hello"])


def test_polygon_means_skip_missing_cells_and_fall_back_for_small_polygons(table):
    lon, lat = cell_centroids(np.array([int(c, 16) for c in table.index], dtype=np.uint64))
    big = shapely.box(lon.min() - 0.01, lat.min() - 0.01, lon.max() + 0.01, lat.max() + 0.01)
    tiny = shapely.box(lon[5] + 1e-4, lat[5] + 1e-4, lon[5] + 2e-4, lat[5] + 2e-4)  # holds no cell centre
    holes = table.copy()
    holes.iloc[::3] = np.nan
    means = aggregate_over_polygons(holes, [big, tiny, None])
    np.testing.assert_allclose(means.values[0], holes.dropna().to_numpy(np.float64).mean(axis=0), rtol=1e-9)
    assert means.cell_count[0] == len(holes.dropna())
    np.testing.assert_allclose(means.values[1], table.to_numpy()[5], rtol=1e-6)
    assert means.from_point.tolist() == [False, True, False] and np.isnan(means.values[2]).all()


def test_regress_layer_refuses_what_cannot_be_learned_and_names_the_model():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    y = 2 * x[:, 0] + rng.normal(scale=0.1, size=120)
    with pytest.raises(InvalidInputError, match="'t' is NULL for every feature"):
        regress_layer(x, np.full(120, np.nan), target_name="t")
    with pytest.raises(InvalidInputError, match=r"'t' has the same value \(7\) for every usable feature"):
        regress_layer(x, np.full(120, 7.0), target_name="t")
    sparse = y.copy()
    sparse[8:] = np.nan
    with pytest.raises(InvalidInputError, match="only 8 features have both a 't' value"):
        regress_layer(x, sparse, target_name="t")
    y_missing = y.copy()
    y_missing[:5] = np.nan
    fit = regress_layer(x, y_missing, target_name="t", model="auto")
    assert fit.model_name == "Ridge" and fit.r2 > 0.9 and not fit.used[:5].any()
    assert np.isnan(fit.oof[:5]).all() and np.isfinite(fit.prediction[5:]).all()
    blocks = np.repeat(np.arange(12), 10)
    fit = regress_layer(x, y, target_name="t", model="lightgbm", blocks=blocks, params={"n_estimators": 30})
    assert fit.model_name == "LightGBM" and np.isnan(fit.predict(np.full((1, 4), np.nan))).all()


def test_embedding_image_pixels_and_pca(table):
    from mobclip_core.rasterize import embedding_image, pca_rgb

    image = embedding_image(table, pixels_per_cell=4)
    lon, lat = cell_centroids(np.array([int(c, 16) for c in table.index], dtype=np.uint64))
    cols = ((lon - image.x0) / image.px).astype(int)
    rows = ((image.y0 - lat) / image.px).astype(int)
    np.testing.assert_allclose(image.data[:, rows, cols].T, table.to_numpy(), rtol=1e-6)
    rgb = embedding_image(table, rgb=True)
    assert rgb.data.dtype == np.uint8 and rgb.nodata == 0 and rgb.band_names == ["pca_1", "pca_2", "pca_3"]
    np.testing.assert_array_equal(rgb.data[:, rows, cols].T, pca_rgb(table.to_numpy()))


def test_an_embedding_raster_too_large_for_memory_is_refused_before_it_is_allocated(table, monkeypatch):
    """128 float32 bands at the dialog's 50 pixels per cell came to 17.5 GB for Chicago: refused with the size and
    the pixels per cell that would fit, before anything that size is allocated (here a 4-band table, 60 kB limit)."""
    import time

    import mobclip_core.rasterize as rasterize

    monkeypatch.setattr(rasterize, "MAX_IMAGE_BYTES", 60_000)
    small = rasterize.embedding_image(table, pixels_per_cell=2)
    assert small.data.nbytes <= 60_000
    start = time.perf_counter()
    with pytest.raises(
        InvalidInputError, match=r"x 4 bands, 0.4 MB in memory \(more than 0.1 MB\): set the pixels per cell to 3.2 "
    ) as exc:
        rasterize.embedding_image(table, pixels_per_cell=8)
    assert time.perf_counter() - start < 1.0
    fits = float(str(exc.value).split("pixels per cell to ")[1].split(" ")[0])
    assert rasterize.embedding_image(table, pixels_per_cell=fits).data.nbytes <= 60_000  # the advice holds
    assert rasterize.embedding_image(table, pixels_per_cell=7, rgb=True).data.dtype == np.uint8  # 3 bytes a pixel


def test_geo_files_are_2d_and_geopackage_1_3(tmp_path):
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    gdf = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[shapely.Polygon([(0, 0, 5), (1, 0, 5), (1, 1, 5)]), shapely.MultiPolygon([shapely.box(2, 2, 3, 3)])],
        crs="EPSG:32632",
    )
    write_geodataframe(gdf, tmp_path / "g.gpkg")
    write_geodataframe(gdf.set_index("name"), tmp_path / "g.parquet")
    with sqlite3.connect(tmp_path / "g.gpkg") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10300
    for path in ("g.gpkg", "g.parquet"):
        back = gpd.read_file(tmp_path / path) if path.endswith("gpkg") else gpd.read_parquet(tmp_path / path)
        assert back.crs.to_epsg() == 32632 and not back.geometry.has_z.any()
        assert back.geometry.iloc[1].equals(gdf.geometry.iloc[1])
    assert gpd.read_parquet(tmp_path / "g.parquet").index.tolist() == ["a", "b"]


def test_worker_failure_carries_the_child_message(tmp_path):
    from mobclip_core.worker import run_worker

    np.save(tmp_path / "c.npy", np.zeros((2, 2)))
    with pytest.raises(WorkerError, match="does not exist|not found|No such file"):
        run_worker(
            ["embed", str(tmp_path / "missing.pth"), str(tmp_path / "c.npy"), str(tmp_path / "o.npy")],
            python=sys.executable,
        )
    assert not (tmp_path / "o.npy").exists()


def test_stopping_the_worker_unwinds_atomic_writes(tmp_path):
    """A stop (SIGTERM) lets the child's atomic writes remove their temporary files: nothing half-written stays."""
    from mobclip_core.worker import _stop

    script = (
        "import time\n"
        "from mobclip_core.io import atomic_path\n"
        "from mobclip_core.worker import install_stop_handlers\n"
        "install_stop_handlers()  # what the worker does first\n"
        f"with atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "writing"
    t0 = time.monotonic()
    _stop(proc, grace_s=10.0)
    assert time.monotonic() - t0 < 5 and proc.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
