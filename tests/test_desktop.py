"""The real QGIS desktop app under Xvfb with the built plugin zip in a fresh profile, one start per scenario:

- stock: QGIS's own Python with none of the packages: no Python error, the hint in the message bar, every algorithm
  listed and blocked by canExecute() with the hint, the installer dialog;
- packages: QGIS started with the project's venv first on PATH (all packages): every algorithm dialog opens,
  train_embeddings on the demo config with a fresh cache succeeds from its dialog and adds its layers, a second run
  is cancelled from the dialog, and QGIS exits cleanly.

``MOBCLIP_UPDATE_SCREENSHOTS=1`` copies the screenshots into docs/ (see tests/desktop_harness.py to add checks).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from desktop_harness import build_zip, make_profile, publish_screenshots, require, run_qgis

pytestmark = [pytest.mark.qgis, pytest.mark.desktop]

ALGORITHMS = {"tessellate", "attach_embeddings", "aggregate_embeddings", "fit_lightgbm", "embedding_raster"}
ALGORITHMS |= {"train_embeddings", "write_training_config", "distil_encoder"}
ANALYSIS_ALGORITHMS = {"similar_places", "functional_zones", "embedding_space", "shared_pca_rgb", "embedding_change"}
ALGORITHMS |= ANALYSIS_ALGORITHMS
MAP_ALGORITHMS = {"tessellate", "attach_embeddings", "aggregate_embeddings", "fit_lightgbm"} | ANALYSIS_ALGORITHMS
PIP_CACHE = os.environ.get("MOBCLIP_TEST_PIP_CACHE", "/tmp/mobclip-test-pip-cache")  # outside the repository


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    require("xvfb-run", "xauth", "qgis")
    return build_zip(tmp_path_factory.mktemp("zip"))


# --- (a) stock QGIS Python --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stock_run(plugin_zip, tmp_path_factory):
    from desktop_harness import stock_python_or_skip

    stock_python_or_skip()
    work = tmp_path_factory.mktemp("desktop_stock")
    config = make_profile(work / "config", plugin_zip)
    return run_qgis(
        config,
        ["startup", "old_python", "toolbox", "blocked_algorithm", "installer_dialog", "install_from_dialog"],
        work / "run",
        extra_env={"MOBCLIP_DEPS_DIR": str(work / "deps"), "PIP_CACHE_DIR": PIP_CACHE},
        timeout=840,
    )


def test_stock_qgis_starts_without_python_errors_and_shows_the_hint(stock_run):
    assert "exit_blocked" not in stock_run.results, stock_run.results["exit_blocked"]
    assert stock_run.returncode == 0, stock_run.output[-3000:]
    assert stock_run.python_errors() == []
    start = stock_run.check("startup")
    assert start["loaded"] and start["dialogs"] == []  # no modal error dialog
    bar = [item for item in start["bar"] if item["title"] == "MobCLIP"]
    assert len(bar) == 1 and bar[0]["buttons"] == ["Install dependencies…"]
    assert "h3, pandas, pyarrow, lightgbm, scikit-learn" in bar[0]["text"]
    assert bar[0]["fits"], bar  # one line: QGIS hides a second line behind the bar's scroll arrows
    assert "&MobCLIP > Install dependencies…" in start["menu"]
    assert not [m for m in start["mobclip_log"] if m["level"] >= 2], start["mobclip_log"]  # nothing critical


def test_on_python_3_9_the_plugin_says_which_qgis_to_install_and_registers_nothing(stock_run):
    old = stock_run.check("old_python")
    assert old["plugin_class"] == "UnsupportedPythonPlugin" and old["providers_added"] == 0
    assert len(old["bar"]) == 1 and old["bar"][0]["level"] == 2, old["bar"]  # Qgis.Critical
    assert "needs Python 3.11+, this QGIS has 3.9" in old["bar"][0]["text"]
    assert "QGIS 3.40 LTR" in old["bar"][0]["text"] and old["bar"][0]["fits"], old["bar"]
    assert any("this QGIS runs Python 3.9.18" in line and "Debian 12" in line for line in old["log"]), old["log"]
    assert old["bar_after_unload"] == []


def test_stock_toolbox_lists_every_algorithm_and_blocks_each_with_the_hint(stock_run):
    box = stock_run.check("toolbox")
    assert set(box["algorithms"]) == ALGORITHMS
    assert box["shot_shows_every_row"]  # docs/toolbox.png shows every group and algorithm
    for name, verdict in box["can_execute"].items():
        assert not verdict["ok"], name
        assert "Plugins > MobCLIP > Install dependencies" in verdict["message"], name
    blocked = stock_run.check("blocked_algorithm")
    assert "cannot be run" in blocked["text"] and "Install dependencies" in blocked["text"]
    assert "“Maps and regression”" in blocked["text"]  # tessellate needs only the maps tier


def test_stock_installer_dialog_opens_from_the_message_bar(stock_run):
    dialog = stock_run.check("installer_dialog")
    assert dialog["opened_from"] == "message bar"
    assert dialog["tiers"]["maps"].startswith("not installed")
    assert dialog["buttons"]["Install"] and not dialog["buttons"]["Remove"] and not dialog["buttons"]["Cancel"]
    assert str(Path(dialog["folder"].removeprefix("Folder: ")).parent).endswith("deps")
    assert (
        "QGIS: 3." in dialog["diagnostics"]
        and f"Python: {sys.version_info[0]}.{sys.version_info[1]}" in (dialog["diagnostics"])
    )
    assert {"main_window_at_start", "toolbox", "blocked_algorithm", "installer_dialog"} <= set(stock_run.screenshots())
    publish_screenshots(stock_run, {"toolbox": "toolbox.png"})


@pytest.mark.network
def test_stock_install_from_the_dialog_makes_the_map_algorithms_ready_without_restart(stock_run):
    done = stock_run.check("install_from_dialog")
    assert done["cancel_enabled_while_running"]
    assert done["status"].startswith("Installed: Maps and regression.") and "use them now" in done["status"], done
    assert done["progress"][-1] == 100 and len(done["progress"]) >= 3, done["progress"]
    assert done["tiers"]["maps"] == "✔ ready (installed here)" and done["remove_enabled"]
    assert "Successfully installed" in done["log_tail"]
    assert {name for name, ok in done["can_execute"].items() if ok} == MAP_ALGORITHMS | {"embedding_raster"} or (
        {name for name, ok in done["can_execute"].items() if ok} == MAP_ALGORITHMS
    )
    assert not done["can_execute"]["train_embeddings"]
    assert not [item for item in done["bar"] if item["title"] == "MobCLIP" and item["level"] >= 1]
    publish_screenshots(stock_run, {"installer_dialog_installed": "installer_dialog.png"})


# --- (b) QGIS with every package (the project's venv first on PATH) ----------------------------------------
PACKAGES_CHECKS = ["startup", "algorithm_dialogs", "installer_dialog", "demo_data", "train", "dialog_with_layers"]
PACKAGES_CHECKS += ["train_cancel"]


@pytest.fixture(scope="module")
def packages_run(plugin_zip, tmp_path_factory):
    """The README's demo, as a user runs it: Create demo data (a small city), then Train embeddings from its config
    (fresh cache), then a second training run cancelled."""
    work = tmp_path_factory.mktemp("desktop_packages")
    config = make_profile(work / "config", plugin_zip)
    run = run_qgis(
        config,
        PACKAGES_CHECKS,
        work / "run",
        args={
            "demo_folder": str(work / "demo" / "data"),
            "rings": 8,
            "config_overrides": {"samples_per_edge": 20, "epochs": 30},  # same stages, fewer steps
        },
        path_first=str(Path(sys.executable).parent),
        extra_env={"MOBCLIP_DEPS_DIR": str(work / "deps")},
        timeout=840,  # under CI's per-test limit (900 s)
    )
    run.demo = work / "demo"
    return run


def test_with_packages_every_dialog_opens_ready_to_run(packages_run):
    assert packages_run.python_errors() == []
    start = packages_run.check("startup")
    assert not [item for item in start["bar"] if item["title"] == "MobCLIP" and item["level"] >= 1]
    dialogs = packages_run.check("algorithm_dialogs")["dialogs"]
    assert set(dialogs) == ALGORITHMS
    for name, dialog in dialogs.items():
        assert dialog["can_execute"] and dialog["run_enabled"], name
    installer = packages_run.check("installer_dialog")
    assert installer["opened_from"] == "menu"
    assert all(text.startswith("✔ ready") for text in installer["tiers"].values()), installer["tiers"]


def test_create_demo_data_from_the_plugin_menu(packages_run):
    demo = packages_run.check("demo_data")
    assert demo["menu_action"] and demo["config"] == str(packages_run.demo / "data" / "mobclip.toml")
    names = {lyr["name"] for lyr in demo["layers"] if lyr["valid"]}
    assert {"Demo districts", "Demo POIs", "Demo imagery"} <= names
    assert any("Train embeddings from a config file" in item["text"] for item in demo["bar"])


def test_train_embeddings_from_its_dialog_adds_layers(packages_run):
    train = packages_run.check("train")
    assert train["ok"], train["dialog_log"]
    output = packages_run.demo / "output"
    layers = [lyr for lyr in train["layers"] if lyr["valid"] and str(output) in lyr["source"]]
    assert {lyr["type"] for lyr in layers} >= {0, 1}, train["layers"]  # a vector and a raster layer
    names = {lyr["name"]: lyr["type"] for lyr in layers}
    assert names == {"MobCLIP embeddings (demo-city)": 0, "MobCLIP PCA RGB (demo-city)": 1}, names
    values = sorted({v for _, v in train["progress"]})
    assert len(values) >= 5 and values[-1] == 100, train["progress"]  # progress moves through the stages


def test_the_trained_layer_feeds_the_next_algorithm(packages_run):
    dialog = packages_run.check("dialog_with_layers")
    assert dialog["run_enabled"] and dialog["parameters"] == ["INPUT"]
    assert dialog["embeddings_preselected"]  # the trained layer on the map, without the user choosing it


def test_cancel_stops_training_within_seconds(packages_run):
    cancel = packages_run.check("train_cancel")
    assert cancel["cancelled"] and not cancel["ok"], cancel
    assert cancel["progress_at_cancel"] < 90, cancel  # cancelled mid-run, before the export
    assert cancel["stop_seconds"] < 20, cancel
    assert cancel["active_tasks"] == [], cancel
    leftovers = list((packages_run.demo / "output_cancel").glob("embeddings*"))
    assert leftovers == []  # nothing half-written


def test_qgis_exits_cleanly_after_training(packages_run):
    assert "exit_blocked" not in packages_run.results, packages_run.results["exit_blocked"]
    assert packages_run.returncode == 0, packages_run.output[-3000:]
    assert packages_run.results.get("finished"), "the checks did not finish"
    texts = [m["msg"] for m in packages_run.messages] + packages_run.output.splitlines()  # QGIS's log and its console
    noise = [text for text in texts if "user_version" in text or "rasterio" in text]
    assert noise == []  # the trained GeoPackage opens without a version warning; no rasterio noise in the log
    assert {"algorithm_dialog", "trained_map", "train_dialog"} <= set(packages_run.screenshots())
    publish_screenshots(packages_run, {"algorithm_dialog": "algorithm_dialog.png", "trained_map": "trained_map.png"})
