"""The algorithms from the command line through qgis_process.bin with the plugin enabled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis

QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # not /usr/bin/qgis_process: Debian's wrapper exits 0 doing nothing


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory):
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


def qgis_process(env, *args, check=True):
    out = subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


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


def test_tessellate_and_aggregate_from_the_command_line(qgis_env, small_city, tmp_path):
    out = qgis_process(
        qgis_env,
        "--json",
        "run",
        "mobclip:tessellate",
        "--",
        f"INPUT={small_city.districts}",
        "RESOLUTION=8",
        f"OUTPUT={tmp_path / 'cells.gpkg'}",
    )
    result = json.loads(out.stdout)
    assert Path(result["results"]["OUTPUT"]).exists()
    from qgis_support import start_qgis

    start_qgis()
    import geopandas as gpd
    from qgis.core import QgsVectorLayer

    from mobclip_core.grid import polygons_to_cells

    ref = polygons_to_cells(gpd.read_file(small_city.districts).to_crs(4326).geometry.values, 8)
    assert QgsVectorLayer(str(tmp_path / "cells.gpkg")).featureCount() == ref["h3_cell"].nunique()


def test_errors_exit_nonzero_with_message(qgis_env, tmp_path):
    shutil.copy(Path(__file__), tmp_path / "not_a_layer.txt")
    out = qgis_process(
        qgis_env,
        "run",
        "mobclip:fit_lightgbm",
        "--",
        f"INPUT={tmp_path / 'missing.gpkg'}",
        "TARGET=x",
        f"OUTPUT={tmp_path / 'o.gpkg'}",
        check=False,
    )
    assert out.returncode != 0
