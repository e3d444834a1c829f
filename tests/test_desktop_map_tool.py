"""The "Find similar places" map tool in the real QGIS desktop app (Xvfb, built zip, fresh profile, the project's
venv first on PATH): a layer without embeddings is refused with a message naming the layer needed; on the demo
city's embeddings layer (planted, see tests/planted.py) a mouse click on a cell of a planted campus makes the
similarity raster, ranked like the library's ``similar_cells``, the clicked cell at 1 and its zone first; the action
gives the previous map tool back, and unloading the plugin removes it. ``MOBCLIP_UPDATE_SCREENSHOTS=1`` publishes
docs/similarity_tool.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from desktop_harness import build_zip, make_profile, publish_screenshots, require, run_qgis
from planted import deep_cell, planted_embeddings

pytestmark = [pytest.mark.qgis, pytest.mark.desktop]

LAYER = "MobCLIP embeddings (demo-city)"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from mobclip_core.demo import make_demo_city

    # the zones depend only on seed and rings: the same planted city as the session's small_city, built faster
    return make_demo_city(
        tmp_path_factory.mktemp("city"), seed=3, rings=8, n_agents=50, n_weeks=1, n_districts=4, imagery_pixel_m=200.0
    )


@pytest.fixture(scope="module")
def map_tool_run(city, tmp_path_factory):
    require("xvfb-run", "xauth", "qgis")
    from mobclip_core.export import write_embeddings

    work = tmp_path_factory.mktemp("desktop_map_tool")
    table = planted_embeddings(city, 3, 0)
    path = write_embeddings(table, work / "demo" / "embeddings.gpkg")
    plugin_zip = build_zip(work / "zip")
    run = run_qgis(
        make_profile(work / "config", plugin_zip),
        ["startup", "similarity_tool"],
        work / "run",
        args={"embeddings": str(path), "layer_name": LAYER, "click_cell": deep_cell(city, "campus")},
        path_first=str(Path(sys.executable).parent),
        extra_env={"MOBCLIP_DEPS_DIR": str(work / "deps")},
        timeout=400,
    )
    run.table = table
    return run


def test_find_similar_places_is_in_the_menu_and_the_toolbar(map_tool_run):
    tool = map_tool_run.check("similarity_tool")
    assert "Find similar places" in tool["menu"] and tool["in_toolbar"] and tool["checkable"], tool


def test_a_layer_without_embeddings_is_refused_with_a_message_naming_the_layer_needed(map_tool_run):
    refused = map_tool_run.check("similarity_tool")["refused"]
    assert not refused["checked"] and refused["tool"] == "QgsMapToolPan", refused
    warning = [text for text in refused["bar"] if text.startswith("MobCLIP: Find similar places")]
    assert len(warning) == 1, refused["bar"]
    assert warning[0].endswith("“Just points” has no numeric emb_* fields."), warning
    details = [d for d in refused["details"] if d["title"] == "MobCLIP: Find similar places"][0]
    assert details["fits"], details  # one line in the bar, the layer needed behind "Show more"
    assert "MobCLIP embeddings" in details["more"] and "h3_cell" in details["more"], details


def test_a_click_on_a_cell_ranks_every_cell_by_similarity_to_it(map_tool_run, city):
    from mobclip_core.analysis.similarity import similar_cells

    found = map_tool_run.check("similarity_tool")
    on, click = found["on"], found["click"]
    assert on["checked"] and on["tool"] == "SimilarityMapTool", on
    assert any("Click a place of “MobCLIP embeddings (demo-city)” to map how alike" in t for t in on["bar"]), on["bar"]
    assert all(d["fits"] for d in on["details"]), on["details"]  # one line: nothing hidden behind scroll arrows
    ref = deep_cell(city, "campus")
    assert click["cell"] == ref  # the cell under the mouse
    assert click["n_scores"] == len(map_tool_run.table)
    assert click["result_in_project"] and click["result_valid"] and click["renderer"] == "singlebandpseudocolor"
    assert click["result_layer"] == f"Similarity to the clicked place ({LAYER})"
    cells, values = zip(*click["ranked"])
    assert cells[0] == ref and values[0] == pytest.approx(1.0, abs=1e-5)  # the clicked cell first, at 1
    assert click["raster_at_click"] == pytest.approx(1.0, abs=1e-5)  # what the map shows there
    expected = similar_cells(map_tool_run.table, cells=[ref]).frame()["similarity"]
    np.testing.assert_allclose(values, expected.reindex(cells).to_numpy(), atol=1e-5)
    assert list(values) == sorted(values, reverse=True)
    assert list(cells[1:11]) == list(expected.drop(ref).nlargest(10).index)  # the library's top 10, same order
    share = (city.zone_labels.reindex(list(cells[1:16])) == "campus").mean()
    assert share >= 0.8, share  # the planted campus first (it is 4-22 % of the city)


def test_the_action_gives_the_previous_map_tool_back_and_unload_removes_it(map_tool_run):
    found = map_tool_run.check("similarity_tool")
    assert found["off"] == {"checked": False, "pan_back": True}
    assert found["active_after_click"].startswith("Similarity to the clicked place")  # on again from that layer
    assert found["again_same_tool"] and found["other_tool_unchecks"]
    assert found["tool_before_unload"] == "SimilarityMapTool"
    unload = found["unload"]
    assert unload["unloaded"] and unload["plugin_gone"], unload
    assert not any("Find similar places" in text for text in unload["menu"]) and not unload["in_toolbar"], unload
    assert unload["zoom_in_back"], unload  # the tool the user had before switching it on
    assert map_tool_run.python_errors() == []
    texts = [m["msg"] for m in map_tool_run.messages] + map_tool_run.output.splitlines()  # QGIS's log and its console
    noise = [text for text in texts if "user_version" in text or "rasterio" in text]
    assert noise == []  # the library's GeoPackage (GeoPackage 1.3) opens in QGIS's GDAL without a version warning
    assert map_tool_run.returncode == 0, map_tool_run.output[-3000:]
    assert "similarity_tool" in map_tool_run.screenshots()
    publish_screenshots(map_tool_run, {"similarity_tool": "similarity_tool.png"})
