"""The built plugin zip on a stock QGIS: ``qgis_process.bin`` with Debian's own python3.11 (no venv on PATH, no
PYTHONPATH, no pandas/h3/LightGBM). It loads and says what to install; then the installer's "maps and regression"
tier, run headless from PyQGIS with the same code the dialog uses, installs from the package index into a temporary
folder, and the map algorithms run end to end on the demo data in that same stock Python."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.qgis

QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # not /usr/bin/qgis_process: Debian's wrapper exits 0 doing nothing
STOCK_PYTHON = "/usr/bin/python3.11"
ALGORITHMS = ("tessellate", "attach_embeddings", "aggregate_embeddings", "fit_lightgbm", "embedding_raster")
ALGORITHMS += ("train_embeddings", "write_training_config", "distil_encoder")
ALGORITHMS += ("similar_places", "functional_zones", "embedding_space", "shared_pca_rgb", "embedding_change")
# pip's download cache outside the repository: re-runs are fast, CI downloads for real
PIP_CACHE = os.environ.get("MOBCLIP_TEST_PIP_CACHE", "/tmp/mobclip-test-pip-cache")


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """A fresh QGIS profile with the zip unpacked and enabled, and the environment of a user's terminal."""
    if not Path(QGIS_PROCESS).exists():
        if os.environ.get("MOBCLIP_REQUIRE_QGIS") == "1":
            pytest.fail(f"{QGIS_PROCESS} is missing: apt-get install qgis")
        pytest.skip("QGIS is not installed")
    from desktop_harness import build_zip, stock_python_or_skip

    stock_python_or_skip()

    root = tmp_path_factory.mktemp("stock")
    plugin_zip = build_zip(root)
    config = root / "config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    env = {
        "HOME": os.environ.get("HOME", str(root)),  # the user's pip settings (index, proxy) live there
        "PATH": "/usr/bin:/bin",  # qgis_process.bin embeds the first python3 on PATH: Debian's own
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_RUNTIME_DIR": str(runtime),
        "QGIS_CUSTOM_CONFIG_PATH": str(config),
        "MOBCLIP_DEPS_DIR": str(root / "deps"),
        "PIP_CACHE_DIR": PIP_CACHE,
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") and k != "PIP_CACHE_DIR"})
    out = run(env, "plugins", "enable", "mobclip")
    assert out.returncode == 0, out.stderr
    return {"env": env, "root": root, "plugins": plugins, "deps": root / "deps"}


def run(env, *args, timeout=600):
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_zip_loads_lists_every_algorithm_and_says_what_to_install(stock):
    out = run(stock["env"], "list")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.strip().startswith("mobclip:")]
    assert sorted(listed) == sorted(f"mobclip:{a}" for a in ALGORITHMS), out.stderr
    assert "Traceback" not in out.stderr and "could not be loaded" not in out.stderr
    hint = next(line for line in out.stderr.splitlines() if line.startswith("MobCLIP: "))
    assert "h3, pandas, pyarrow, lightgbm, scikit-learn" in hint
    assert "Plugins > MobCLIP > Install dependencies" in hint
    assert f'qgis_plugin/installer.py" maps --profile "{stock["env"]["QGIS_CUSTOM_CONFIG_PATH"]}' in hint
    assert hint.split("Without the QGIS window: ")[1].startswith('"/usr/bin/python3')  # QGIS's Python, by prefix


INSTALL_FROM_PYQGIS = """
import json, sys
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, {plugins!r})
import mobclip
plugin = mobclip.classFactory(None)           # what QGIS does at start-up (activates the packages folder)
from mobclip.qgis_plugin import installer    # the code the dialog's task runs
steps = []
result = installer.install(["maps"], plugin.folder, on_progress=lambda pct, status: steps.append([pct, status]))
activation = plugin.folder.activate()
import h3, pandas, lightgbm, sklearn, numpy
print(json.dumps({{
    "site": str(result.site), "packages": result.packages, "pruned": result.pruned, "steps": steps,
    "restart_needed": activation.restart_needed,
    "files": {{m.__name__: m.__file__ for m in (h3, pandas, lightgbm, sklearn, numpy)}},
    "executable": sys.executable,
}}))
app.exitQgis()
"""


@pytest.fixture(scope="module")
def maps_tier(stock):
    script = stock["root"] / "install_maps.py"
    script.write_text(INSTALL_FROM_PYQGIS.format(plugins=str(stock["plugins"])))
    out = subprocess.run([STOCK_PYTHON, str(script)], env=stock["env"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.network
@pytest.mark.slow
def test_maps_tier_installs_into_the_packages_folder_from_the_index(stock, maps_tier):
    site = Path(maps_tier["site"])
    assert site.parent.parent == stock["deps"] and site.is_dir()
    assert {"h3", "pandas", "pyarrow", "lightgbm", "scikit-learn"} <= set(maps_tier["packages"])
    assert not any(name.lower().startswith(("pyqt", "gdal")) for name in maps_tier["packages"])
    for module in ("h3", "pandas", "lightgbm", "sklearn"):
        assert maps_tier["files"][module].startswith(str(site)), module
    # QGIS's own numpy stays the only numpy: pip's copy was removed from the folder
    assert maps_tier["files"]["numpy"].startswith("/usr/lib/python3/dist-packages/")
    assert any(p.startswith("numpy==") for p in maps_tier["pruned"])
    assert not maps_tier["restart_needed"] and maps_tier["executable"].startswith("/usr/bin/python3")
    assert maps_tier["steps"][-1] == [100.0, "Installed"]


@pytest.fixture(scope="module")
def demo_inputs(small_city, tmp_path_factory):
    """The demo city's districts, survey points with income, and an embedding table of its cells (GeoParquet, as
    training writes it): zone one-hots + noise, so income is predictable from the embeddings."""
    import geopandas as gpd

    from mobclip_core.export import write_embeddings
    from mobclip_core.grid import cells_to_strings

    out = tmp_path_factory.mktemp("demo_inputs")
    rng = np.random.default_rng(0)
    values = np.c_[np.eye(5)[small_city.zone], rng.normal(size=(small_city.cells.size, 3))].astype(np.float32)
    table = pd.DataFrame(
        values,
        index=pd.Index(cells_to_strings(small_city.cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(values.shape[1])],
    )
    write_embeddings(table, out / "embeddings.parquet")
    targets = pd.read_parquet(small_city.targets)
    points = gpd.GeoDataFrame(
        targets[["income", "zone"]], geometry=gpd.points_from_xy(targets.lon, targets.lat), crs="EPSG:4326"
    )
    points.to_crs("EPSG:32632").to_file(out / "survey.gpkg", driver="GPKG")
    return {
        "districts": str(small_city.districts),
        "survey": str(out / "survey.gpkg"),
        "emb": str(out / "embeddings.parquet"),
    }


@pytest.mark.network
@pytest.mark.slow
def test_map_algorithms_end_to_end_in_stock_python(stock, maps_tier, demo_inputs, tmp_path):
    """tessellate -> attach_embeddings -> aggregate_embeddings -> fit_lightgbm, each a fresh qgis_process.bin that
    finds the packages through the plugin's folder at load."""

    def alg(name, **params):
        args = ["--json", "run", f"mobclip:{name}", "--"] + [f"{k}={v}" for k, v in params.items()]
        out = run(stock["env"], *args)
        assert out.returncode == 0, f"{name}: {out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        return json.loads(out.stdout)["results"]

    cells = alg("tessellate", INPUT=demo_inputs["districts"], RESOLUTION=9, OUTPUT=tmp_path / "cells.gpkg")
    attached = alg(
        "attach_embeddings", INPUT=cells["OUTPUT"], EMBEDDINGS=demo_inputs["emb"], OUTPUT=tmp_path / "ce.gpkg"
    )
    districts = alg(
        "aggregate_embeddings",
        INPUT=demo_inputs["districts"],
        EMBEDDINGS=demo_inputs["emb"],
        OUTPUT=tmp_path / "d.gpkg",
    )
    survey = alg(
        "attach_embeddings", INPUT=demo_inputs["survey"], EMBEDDINGS=demo_inputs["emb"], OUTPUT=tmp_path / "s.gpkg"
    )
    fit = alg(
        "fit_lightgbm",
        INPUT=survey["OUTPUT"],
        TARGET="income",
        PREFIX="emb_",
        BLOCK_RESOLUTION=7,
        FOLDS=5,
        OUTPUT=tmp_path / "pred.gpkg",
    )

    import geopandas as gpd

    from mobclip_core.export import read_embeddings

    table = read_embeddings(demo_inputs["emb"])
    cell_layer = gpd.read_file(attached["OUTPUT"]).set_index("h3_cell")
    assert len(cell_layer) > 100 and cell_layer.index.is_unique
    known = cell_layer.index.isin(table.index)  # the districts reach beyond the city's cells
    assert known.sum() > 100 and cell_layer.loc[~known, table.columns].isna().all(axis=None)
    np.testing.assert_allclose(
        cell_layer.loc[known, table.columns].to_numpy(), table.loc[cell_layer.index[known]].to_numpy(), rtol=1e-6
    )
    district_layer = gpd.read_file(districts["OUTPUT"])
    assert len(district_layer) == len(gpd.read_file(demo_inputs["districts"]))
    predictions = gpd.read_file(fit["OUTPUT"])
    assert len(predictions) == len(gpd.read_file(demo_inputs["survey"]))
    assert fit["R2"] > 0.3  # income is zone-driven and the embeddings carry the zone
