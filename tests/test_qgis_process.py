"""The algorithms from the command line through qgis_process.bin, as a user runs them: every algorithm must exit 0
(a crash after the output was written counts as a failure), errors exit 1 with a message and leave no file, and
nothing from a second GDAL (GeoPackage version warnings, rasterio noise) reaches the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis

QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # not /usr/bin/qgis_process: Debian's wrapper exits 0 doing nothing
NOISE = (
    "user_version",
    "rasterio",
    "site-packages",
    "Traceback",
    "free(): invalid",
)  # QGIS's own setapi() note is fine


def make_env(tmp_path_factory) -> dict:
    if not Path(QGIS_PROCESS).exists():
        if os.environ.get("MOBCLIP_REQUIRE_QGIS") == "1":
            pytest.fail(f"{QGIS_PROCESS} is missing: install QGIS (apt-get install qgis)")
        pytest.skip("QGIS is not installed")
    root = tmp_path_factory.mktemp("qgisproc")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "mobclip").symlink_to(Path(__file__).resolve().parents[1])
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_RUNTIME_DIR": str(runtime),
        "QGIS_CUSTOM_CONFIG_PATH": str(root / "profile"),
        "QGIS_PLUGINPATH": str(plugins),
        # the embedded Python takes its site-packages from the first python3 on PATH
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    out = subprocess.run(
        [QGIS_PROCESS, "plugins", "enable", "mobclip"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return env


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory):
    return make_env(tmp_path_factory)


def qgis_process(env, *args, check=True):
    out = subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        noise = [n for n in NOISE if n in out.stdout + out.stderr]
        assert not noise, f"{noise} in the log:\n{out.stderr[-2000:]}"
    return out


def run_alg(env, alg, **params):
    out = qgis_process(env, "--json", "run", f"mobclip:{alg}", "--", *(f"{k}={v}" for k, v in params.items()))
    return json.loads(out.stdout)["results"]


def fails(env, alg, **params) -> str:
    """Run an algorithm that must fail: exit status 1 (not a crash) and the message, from stderr and stdout."""
    out = qgis_process(env, "run", f"mobclip:{alg}", "--", *(f"{k}={v}" for k, v in params.items()), check=False)
    assert out.returncode == 1, f"exit {out.returncode}:\n{out.stderr[-2000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def demo_files(small_city, tmp_path_factory):
    """An embedding table written by the library (GeoPackage and GeoParquet), a cell layer with a target."""
    from planted import write_zone_embeddings

    root = tmp_path_factory.mktemp("qp")
    table = write_zone_embeddings(small_city, root)
    for name, keep in (("truncated.gpkg", 0.5), ("truncated.parquet", 0.5)):
        data = (root / name.replace("truncated", "emb")).read_bytes()
        (root / name).write_bytes(data[: int(len(data) * keep)])
    return root, table


def test_algorithms_listed(qgis_env):
    listing = qgis_process(qgis_env, "list").stdout
    for alg in (
        "tessellate",
        "attach_embeddings",
        "aggregate_embeddings",
        "fit_lightgbm",
        "embedding_raster",
        "train_embeddings",
    ):
        assert f"mobclip:{alg}" in listing


def test_tessellate_polygons_and_raster(qgis_env, small_city, tmp_path):
    import geopandas as gpd

    from mobclip_core.grid import polygons_to_cells

    res = run_alg(qgis_env, "tessellate", INPUT=small_city.districts, RESOLUTION=8, OUTPUT=tmp_path / "cells.gpkg")
    ref = polygons_to_cells(gpd.read_file(small_city.districts).to_crs(4326).geometry.values, 8)
    got = gpd.read_file(res["OUTPUT"])
    assert set(got.h3_cell) == set(ref["h3_cell"].map(lambda c: format(c, "x")))
    res = run_alg(qgis_env, "tessellate", INPUT=small_city.demographics, RESOLUTION=8, OUTPUT=tmp_path / "r.gpkg")
    import rasterio

    with rasterio.open(small_city.demographics) as src:
        total = src.read(1, masked=True).sum()
    assert gpd.read_file(res["OUTPUT"])["f_0"].sum() == pytest.approx(float(total))


def test_readme_example_aggregate_and_attach_exit_0(qgis_env, small_city, demo_files, tmp_path):
    """The README's own commands (they used to write their output, then die with SIGSEGV or SIGABRT at exit)."""
    import geopandas as gpd

    root, table = demo_files
    for emb in ("emb.gpkg", "emb.parquet"):
        res = run_alg(
            qgis_env,
            "aggregate_embeddings",
            INPUT=small_city.districts,
            EMBEDDINGS=root / emb,
            OUTPUT=tmp_path / "g.gpkg",
        )
        got = gpd.read_file(res["OUTPUT"])
        assert (got.cell_count > 0).all() and got["emb_0"].notna().all()
        res = run_alg(
            qgis_env, "attach_embeddings", INPUT=small_city.pois, EMBEDDINGS=root / emb, OUTPUT=tmp_path / "a.gpkg"
        )
        assert gpd.read_file(res["OUTPUT"])["emb_7"].notna().mean() > 0.9


def test_fit_and_raster_exit_0(qgis_env, demo_files, tmp_path):
    root, table = demo_files
    res = run_alg(
        qgis_env,
        "fit_lightgbm",
        INPUT=root / "cells.gpkg",
        TARGET="target",
        BLOCK_RESOLUTION=7,
        OUTPUT=tmp_path / "p.gpkg",
    )
    assert float(res["R2"]) > 0.5 and res["MODEL"] in ("LightGBM", "Ridge")
    res = run_alg(qgis_env, "embedding_raster", EMBEDDINGS=root / "emb.parquet", OUTPUT_RGB=tmp_path / "rgb.tif")
    assert Path(res["OUTPUT_RGB"]).stat().st_size > 0


def test_similar_places_needs_no_ranked_table_output(qgis_env, demo_files, tmp_path):
    """From the command line only OUTPUT is needed; the ranked table is written when asked for."""
    import geopandas as gpd

    root, table = demo_files
    ref = str(table.index[0])
    common = {"EMBEDDINGS": root / "emb.parquet", "REFERENCE_CELLS": ref}
    res = run_alg(qgis_env, "similar_places", **common, OUTPUT=tmp_path / "sim.gpkg")
    assert "OUTPUT_TOP" not in res and len(gpd.read_file(res["OUTPUT"])) == len(table)
    res = run_alg(qgis_env, "similar_places", **common, OUTPUT=tmp_path / "s2.gpkg", OUTPUT_TOP=tmp_path / "top.gpkg")
    assert len(gpd.read_file(res["OUTPUT_TOP"])) > 0


def test_errors_exit_1_with_their_message_and_no_output(qgis_env, demo_files, small_city, tmp_path):
    root, _ = demo_files
    message = fails(qgis_env, "fit_lightgbm", INPUT=tmp_path / "missing.gpkg", TARGET="x", OUTPUT=tmp_path / "o.gpkg")
    assert "Could not load source layer for INPUT" in message and "missing.gpkg" in message
    for bad in ("truncated.gpkg", "truncated.parquet"):
        out = tmp_path / f"from_{bad}.gpkg"
        message = fails(qgis_env, "attach_embeddings", INPUT=small_city.pois, EMBEDDINGS=root / bad, OUTPUT=out)
        assert "truncated or still being written" in message and bad in message
        assert not out.exists()
        message = fails(qgis_env, "embedding_raster", EMBEDDINGS=root / bad, OUTPUT_RGB=tmp_path / "x.tif")
        assert "truncated or still being written" in message and not (tmp_path / "x.tif").exists()
    message = fails(qgis_env, "tessellate", INPUT=small_city.districts, RESOLUTION=16, OUTPUT=tmp_path / "c.gpkg")
    assert "unknown H3 resolution 16: use an integer from 0 to 15" in message and not (tmp_path / "c.gpkg").exists()
