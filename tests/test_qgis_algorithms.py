"""The plugin's algorithms in real QGIS 3.22 through processing.run, on the demo region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qgis_support import LogFeedback

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def qgis(small_city):
    from qgis_support import start_qgis

    return start_qgis()


@pytest.fixture(scope="module")
def embedding_file(small_city, tmp_path_factory):
    """A real (deterministic) embedding table of the city's cells: demographics histograms as 16 'dimensions'
    plus zone one-hots, so regressions have planted signal."""
    from mobclip_core.export import write_embeddings
    from mobclip_core.grid import cells_to_strings

    rng = np.random.default_rng(0)
    n = small_city.cells.size
    onehot = np.eye(5)[small_city.zone]
    values = np.c_[onehot, rng.normal(size=(n, 3))].astype(np.float32)
    table = pd.DataFrame(
        values,
        index=pd.Index(cells_to_strings(small_city.cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(values.shape[1])],
    )
    path = tmp_path_factory.mktemp("emb") / "embeddings.gpkg"
    write_embeddings(table, path)
    return path, table


def run(alg, params, feedback=None):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    return processing.run(
        f"mobclip:{alg}", params, context=QgsProcessingContext(), feedback=feedback or QgsProcessingFeedback()
    )


def layer_frame(path_or_layer):
    from qgis.core import QgsVectorLayer

    layer = path_or_layer if isinstance(path_or_layer, QgsVectorLayer) else QgsVectorLayer(str(path_or_layer))
    names = [f.name() for f in layer.fields()]
    rows = [[None if v == None else v for v in f.attributes()] for f in layer.getFeatures()]  # noqa: E711 - QGIS NULL
    return pd.DataFrame(rows, columns=names)


def test_provider_registers_all_algorithms(qgis):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("mobclip")
    assert provider is not None
    ids = {a.name() for a in provider.algorithms()}
    assert ids == {
        "tessellate",
        "attach_embeddings",
        "aggregate_embeddings",
        "fit_lightgbm",
        "embedding_raster",
        "train_embeddings",
        "write_training_config",
        "distil_encoder",
        "similar_places",
        "functional_zones",
        "embedding_space",
        "shared_pca_rgb",
        "embedding_change",
    }
    for alg in provider.algorithms():
        assert len(alg.shortHelpString()) > 80
        assert "`" not in alg.shortHelpString()  # the dialog shows help as plain text: no Markdown backticks
        assert alg.canExecute() == (True, "")


def test_missing_tier_keeps_the_algorithm_listed_and_names_the_install_action(qgis, monkeypatch, tmp_path):
    import mobclip.processing_algorithms.base as base
    import processing
    from qgis.core import QgsApplication, QgsProcessingException

    monkeypatch.setattr(base, "missing_modules", lambda modules: [m for m in modules if m == "torch"])
    registry = QgsApplication.processingRegistry()
    train = registry.algorithmById("mobclip:train_embeddings")
    ok, message = train.canExecute()
    assert not ok and "torch" in message and "Install dependencies" in message
    assert registry.algorithmById("mobclip:tessellate").canExecute() == (True, "")
    config = tmp_path / "any.toml"
    config.write_text('name = "x"\n')
    with pytest.raises(QgsProcessingException, match="Install dependencies"):
        processing.run("mobclip:train_embeddings", {"CONFIG": str(config)})


def test_plugin_imports_on_stock_python_without_third_party_packages(tmp_path):
    """QGIS's own Python with no pip packages: the plugin loads, lists every algorithm, and says what to install."""
    import subprocess
    from pathlib import Path

    stock = Path("/usr/bin/python3.11")
    if not stock.exists():
        pytest.skip("no Debian python3.11")
    (tmp_path / "mobclip").symlink_to(Path(__file__).resolve().parents[1])
    script = f"""
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, {str(tmp_path)!r})
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
import mobclip
plugin = mobclip.classFactory(None)
import mobclip.processing_algorithms as algs
for cls in algs.ALGORITHMS:
    alg = cls()
    alg.initAlgorithm()
    ok, message = alg.canExecute()
    print(alg.name(), ok, message)
heavy = {{"pandas", "h3", "pyarrow", "lightgbm", "sklearn", "shapely", "geopandas", "pyproj", "rasterio", "pyogrio",
         "torch", "numba", "polars", "h3ronpy", "matplotlib"}}
print("LOADED", sorted(heavy & {{m.split(".")[0] for m in sys.modules}}))
app.exitQgis()
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run([str(stock), "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines.pop("LOADED") == "[]"
    assert len(lines) == len(algs_names())
    for name, verdict in lines.items():
        assert verdict.startswith("False") and "Install dependencies" in verdict, (name, verdict)


def algs_names():
    import processing_algorithms

    return [cls.algorithm_name for cls in processing_algorithms.ALGORITHMS]


def test_tessellate_ids_equal_library(qgis, small_city, tmp_path):
    import geopandas as gpd

    from mobclip_core.grid import cells_to_strings, polygons_to_cells

    out = run(
        "tessellate",
        {"INPUT": str(small_city.districts), "RESOLUTION": 9, "CONTAINMENT": 0, "OUTPUT": str(tmp_path / "cells.gpkg")},
    )["OUTPUT"]
    got = layer_frame(out)
    districts = gpd.read_file(small_city.districts).to_crs(4326)
    ref = set(cells_to_strings(polygons_to_cells(districts.geometry.values, 9)["h3_cell"].to_numpy()))
    assert set(got.h3_cell) == ref and got.h3_cell.is_unique
    assert (got.resolution == 9).all()


def test_tessellate_the_selected_polygons_only(qgis, small_city, tmp_path):
    """The analyst selects a few districts on the map: 'Selected polygons only' tessellates those (and their extent
    with 'extent'); ticked with nothing selected, it says so instead of tessellating everything."""
    import geopandas as gpd
    import processing
    from qgis.core import (
        QgsProcessingContext,
        QgsProcessingException,
        QgsProcessingFeatureSourceDefinition,
        QgsProject,
        QgsVectorLayer,
    )

    from mobclip_core.grid import cells_to_strings, polygons_to_cells

    def run(alg, params):  # with the project, where the layer and its selection are
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        return processing.run(f"mobclip:{alg}", params, context=context, feedback=LogFeedback())

    layer = QgsVectorLayer(str(small_city.districts), "districts", "ogr")
    QgsProject.instance().addMapLayer(layer)
    try:
        params = {"INPUT": layer.id(), "RESOLUTION": 9, "SELECTED_ONLY": True, "OUTPUT": "memory:"}
        with pytest.raises(QgsProcessingException, match="no feature of 'districts' is selected"):
            run("tessellate", params)
        ids = sorted(f.id() for f in layer.getFeatures())[:2]
        layer.selectByIds(ids)
        got = set(layer_frame(run("tessellate", params)["OUTPUT"]).h3_cell)
        districts = gpd.read_file(small_city.districts).to_crs(4326)
        chosen = districts.iloc[[i - 1 for i in ids]]  # GeoPackage feature ids count from 1, in file order
        assert got == set(cells_to_strings(polygons_to_cells(chosen.geometry.values, 9)["h3_cell"].to_numpy()))
        everything = set(layer_frame(run("tessellate", {**params, "SELECTED_ONLY": False})["OUTPUT"]).h3_cell)
        assert got < everything
        box = set(layer_frame(run("tessellate", {**params, "EXTENT_ONLY": True})["OUTPUT"]).h3_cell)
        whole_box = set(
            layer_frame(run("tessellate", {**params, "EXTENT_ONLY": True, "SELECTED_ONLY": False})["OUTPUT"]).h3_cell
        )
        assert got <= box < whole_box
        # a Python chain or a model passes "selected features only" as a feature source, as the other algorithms
        # take it: the same cells (it was refused: "Incorrect parameter value for INPUT")
        source = {"INPUT": QgsProcessingFeatureSourceDefinition(layer.id(), True), "RESOLUTION": 9, "OUTPUT": "memory:"}
        assert set(layer_frame(run("tessellate", source)["OUTPUT"]).h3_cell) == got
        whole = {**source, "INPUT": QgsProcessingFeatureSourceDefinition(layer.id(), False)}
        assert set(layer_frame(run("tessellate", whole)["OUTPUT"]).h3_cell) == everything
        limited = {**source, "INPUT": QgsProcessingFeatureSourceDefinition(layer.id(), False, 1)}
        with pytest.raises(QgsProcessingException, match="not a feature limit, a filter or a layer given by"):
            run("tessellate", limited)
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def memory_layer(kind: str, wkts, crs: str = "EPSG:4326", **fields):
    """A memory layer of WKT geometries with attribute columns given as lists."""
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    layer = QgsVectorLayer(f"{kind}?crs={crs}", "test", "memory")
    types = {str: QVariant.String, float: QVariant.Double, int: QVariant.Int}
    layer.dataProvider().addAttributes(
        [QgsField(name, types[type(next(v for v in values if v is not None))]) for name, values in fields.items()]
    )
    layer.updateFields()
    features = []
    for i, wkt in enumerate(wkts):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        f.setAttributes([values[i] for values in fields.values()])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    return layer


def test_tessellate_longitudes_past_180_are_wrapped(qgis, tmp_path):
    from mobclip_core.grid import cells_to_strings, polygons_to_cells

    pacific = memory_layer("Polygon", ["POLYGON((179 -18, 181 -18, 181 -16, 179 -16, 179 -18))"])
    got = layer_frame(
        run("tessellate", {"INPUT": pacific, "RESOLUTION": 5, "OUTPUT": str(tmp_path / "p.gpkg")})["OUTPUT"]
    )
    from shapely.geometry import box

    split = polygons_to_cells([box(179, -18, 180, -16), box(-180, -18, -179, -16)], 5)["h3_cell"].to_numpy()
    assert set(got.h3_cell) == set(cells_to_strings(split)) and len(got) > 150
    # curved geometries (CurvePolygon) are linearised by QGIS before they reach the library
    curved = memory_layer("CurvePolygon", ["CURVEPOLYGON(CIRCULARSTRING(9 45, 9.1 45.1, 9 45.2, 8.9 45.1, 9 45))"])
    circle = layer_frame(run("tessellate", {"INPUT": curved, "RESOLUTION": 7, "OUTPUT": "memory:"})["OUTPUT"])
    assert 40 < len(circle) < 70  # an ellipse of ~270 km2 at ~5.2 km2 per cell
    # plain polygons stored as MultiSurface (how ArcGIS and FileGDB exports arrive): read as the polygons they are
    ring = "(9 45, 9.2 45, 9.2 45.2, 9 45.2, 9 45)"
    cells = {}
    for kind, wkt in (("Polygon", f"POLYGON({ring})"), ("MultiSurface", f"MULTISURFACE(({ring}))")):
        params = {"INPUT": memory_layer(kind, [wkt]), "RESOLUTION": 7, "OUTPUT": "memory:"}
        cells[kind] = set(layer_frame(run("tessellate", params)["OUTPUT"]).h3_cell)
    assert len(cells["Polygon"]) > 50 and cells["MultiSurface"] == cells["Polygon"]


def test_tessellate_fiji_across_the_antimeridian(qgis, tmp_path):
    """The Fiji ring of the library's test (vertices near 177 and -178) through mobclip:tessellate: Fiji's cells,
    not 49,062 cells around the globe; also with h3-py alone, as the plugin's "maps" tier runs it."""
    import contextlib

    from world_shapes import fiji_across, inside_bounds, split_reference, world_countries

    from mobclip_core.grid import polygons_to_cells, strings_to_cells
    from mobclip_core.grid._backend import h3py_only

    hull, across = fiji_across(world_countries())
    expected = set(polygons_to_cells(split_reference(hull), 5)["h3_cell"].tolist())  # cut at 180 by shapely
    fiji = memory_layer("Polygon", [across.wkt], name=["Fiji"])
    for backend in (contextlib.nullcontext, h3py_only):
        with backend():
            out = run(
                "tessellate", {"INPUT": fiji, "RESOLUTION": 5, "OUTPUT": str(tmp_path / f"{backend.__name__}.gpkg")}
            )
        got = set(strings_to_cells(layer_frame(out["OUTPUT"]).h3_cell.to_numpy()).tolist())
        assert 300 < len(got) < 2000 and inside_bounds(got, hull), (backend, len(got))
        assert got == expected


def test_tessellate_refuses_projected_coordinates_without_a_partial_file(qgis, tmp_path):
    from qgis.core import QgsProcessingException

    wrong = memory_layer("Polygon", ["POLYGON((500000 50, 501000 50, 501000 51, 500000 50))"])
    out = tmp_path / "never.gpkg"
    with pytest.raises(QgsProcessingException, match=r"outside \[-360, 360\].*Reproject"):
        run("tessellate", {"INPUT": wrong, "RESOLUTION": 9, "OUTPUT": str(out)})
    assert not out.exists()
    with pytest.raises(QgsProcessingException, match="unknown H3 resolution 16: use an integer from 0 to 15"):
        run("tessellate", {"INPUT": wrong, "RESOLUTION": 16, "OUTPUT": str(out)})


def test_tessellate_raster_sums(qgis, small_city, tmp_path):
    import rasterio

    out = run(
        "tessellate",
        {
            "INPUT": str(small_city.demographics),
            "RESOLUTION": 8,
            "STATISTIC": 0,
            "OUTPUT": str(tmp_path / "rcells.gpkg"),
        },
    )["OUTPUT"]
    got = layer_frame(out)
    with rasterio.open(small_city.demographics) as src:
        total = src.read(1, masked=True).sum()
    assert got["f_0"].sum() == pytest.approx(float(total))


@pytest.mark.parametrize("alg", ["aggregate_embeddings", "tessellate"])
def test_file_outputs_load_as_the_dialog_loads_them(qgis, small_city, embedding_file, tmp_path, alg):
    """The Processing dialog runs the algorithm in a task and adds the outputs to the map when the task reports
    back, while the task still holds the algorithm: the output file must be closed by then (it was still open, and
    QGIS said the GeoPackage was "not correctly generated")."""
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsVectorLayer
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    out = tmp_path / f"{alg}.gpkg"
    params = {"INPUT": str(small_city.districts), "OUTPUT": str(out)}
    params.update({"EMBEDDINGS": str(embedding_file[0])} if alg == "aggregate_embeddings" else {"RESOLUTION": 8})
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"mobclip:{alg}")
    context, feedback = QgsProcessingContext(), LogFeedback()
    task = QgsProcessingAlgRunnerTask(algorithm, params, context, feedback)
    seen, loop = {}, QEventLoop()

    def executed(ok: bool, results: dict) -> None:  # what the dialog's result handling does next: load the file
        layer = QgsVectorLayer(results.get("OUTPUT", ""), "loaded", "ogr")
        seen.update(ok=ok, valid=layer.isValid(), features=layer.featureCount() if layer.isValid() else 0)
        loop.quit()

    task.executed.connect(executed)
    QgsApplication.taskManager().addTask(task)
    QTimer.singleShot(120_000, loop.quit)
    loop.exec_()
    assert seen.get("ok"), feedback.lines + feedback.warnings
    assert seen["valid"] and seen["features"] > 0, seen


@pytest.mark.parametrize("alg", ["distil_encoder", "write_training_config"])
def test_an_output_folder_inside_a_file_is_refused_before_any_work(qgis, embedding_file, tmp_path, alg):
    from qgis.core import QgsProcessingException

    (tmp_path / "a_file.txt").write_text("not a folder")
    out = tmp_path / "a_file.txt" / "model"
    params = {"OUTPUT": str(out), "EMBEDDINGS": str(embedding_file[0])}
    with pytest.raises(QgsProcessingException, match=r"a_file.txt is a file, not a folder: choose a folder for"):
        run(alg, params if alg == "distil_encoder" else {"OUTPUT": str(out)})
    assert (tmp_path / "a_file.txt").read_text() == "not a folder"


def test_attach_embeddings_to_points(qgis, small_city, embedding_file, tmp_path):
    path, table = embedding_file
    out = run(
        "attach_embeddings",
        {
            "INPUT": str(small_city.pois),
            "EMBEDDINGS": str(path),
            "PREFIX": "emb_",
            "OUTPUT": str(tmp_path / "pois_emb.gpkg"),
        },
    )["OUTPUT"]
    got = layer_frame(out)
    import geopandas as gpd

    from mobclip_core.grid import cells_to_strings, points_to_cells

    pois = gpd.read_file(small_city.pois).to_crs(4326)
    cells = cells_to_strings(points_to_cells(pois.geometry.x.to_numpy(), pois.geometry.y.to_numpy(), 9))
    expected = table.reindex(cells)["emb_0"].to_numpy()
    np.testing.assert_allclose(got["emb_0"].astype(float).to_numpy(), expected, rtol=1e-6)


@pytest.fixture(scope="module")
def distilled(small_city, tmp_path_factory):
    """A small distilled model of the demo city's cells, saved as mobclip saves one (with its training extent)."""
    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
    from mobclip_core.grid import cell_centroids

    lon, lat = cell_centroids(small_city.cells)
    teacher = np.c_[np.eye(5)[small_city.zone], lon - lon.mean()]
    enc = DistilledEncoder(DistilConfig(degree=6, hidden=32, layers=2, epochs=20)).fit(lon, lat, teacher)
    folder = enc.save(tmp_path_factory.mktemp("model") / "distilled")
    return enc, folder / "model.pth"


def test_attach_from_distilled_checkpoint_and_wrong_shape(qgis, small_city, distilled, tmp_path):
    import torch
    from qgis.core import QgsProcessingException

    enc, model = distilled
    out = run(
        "attach_embeddings",
        {"INPUT": str(small_city.pois), "MODEL": str(model), "OUTPUT": str(tmp_path / "pois_distilled.gpkg")},
    )["OUTPUT"]
    got = layer_frame(out)
    import geopandas as gpd

    pois = gpd.read_file(small_city.pois).to_crs(4326)
    expected = enc.embed(pois.geometry.x.to_numpy(), pois.geometry.y.to_numpy())
    np.testing.assert_allclose(got[[f"emb_{i}" for i in range(6)]].astype(float).to_numpy(), expected, rtol=1e-5)
    # a checkpoint whose layers do not fit the published architecture
    state = {f"network.{2 * i}.weight": torch.zeros(8, 16 if i == 0 else 8, dtype=torch.float64) for i in range(9)}
    state.update({f"network.{2 * i}.bias": torch.zeros(8, dtype=torch.float64) for i in range(9)})
    state["network.6.weight"] = torch.zeros(8, 5, dtype=torch.float64)
    torch.save({"model_state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(QgsProcessingException, match="wrong shape"):
        run(
            "attach_embeddings",
            {"INPUT": str(small_city.pois), "MODEL": str(tmp_path / "bad.pth"), "OUTPUT": "memory:"},
        )


def test_attach_with_a_distilled_model_outside_its_area_warns_or_writes_null(qgis, small_city, distilled):
    """A point far from the model's training area: a warning naming the count reaches the log (it is computed in
    the child process), and with 'Write NULL' that feature's fields are NULL while the others keep their values."""
    from mobclip_core.grid import cell_centroids

    enc, model = distilled
    lon, lat = cell_centroids(small_city.cells[:3])
    wkts = [f"POINT({x} {y})" for x, y in zip(lon, lat)] + [f"POINT({lon[0] + 3.0} {lat[0]})"]
    points = memory_layer("Point", wkts, name=["a", "b", "c", "far"])
    cols = [f"emb_{i}" for i in range(6)]
    warned = LogFeedback()
    embedded = run("attach_embeddings", {"INPUT": points, "MODEL": str(model), "OUTPUT": "memory:"}, warned)
    assert [w for w in warned.warnings if w.startswith("1 of 4 locations lie outside the area")], warned.warnings
    assert layer_frame(embedded["OUTPUT"])[cols].notna().all().all()  # the default embeds them anyway
    nulls = LogFeedback()
    res = run("attach_embeddings", {"INPUT": points, "MODEL": str(model), "OUTSIDE": 1, "OUTPUT": "memory:"}, nulls)
    assert [w for w in nulls.warnings if w.startswith("1 of 4 locations") and "left empty (NULL)" in w], nulls.warnings
    features = {f["name"]: f for f in res["OUTPUT"].getFeatures()}
    assert all(features["far"][c] == None for c in cols)  # noqa: E711 - QGIS NULL (a NaN would not equal None)
    got = np.array([[features[n][c] for c in cols] for n in "abc"], dtype=float)
    np.testing.assert_allclose(got, enc.embed(lon, lat), rtol=1e-5)


def test_aggregate_means_equal_hand_computation(qgis, small_city, embedding_file, tmp_path):
    import geopandas as gpd

    from mobclip_core.grid import cell_centroids, strings_to_cells

    path, table = embedding_file
    out = run(
        "aggregate_embeddings",
        {"INPUT": str(small_city.districts), "EMBEDDINGS": str(path), "OUTPUT": str(tmp_path / "agg.gpkg")},
    )["OUTPUT"]
    got = layer_frame(out).set_index("district")
    districts = gpd.read_file(small_city.districts).to_crs(4326)
    lon, lat = cell_centroids(strings_to_cells(table.index.to_numpy()))
    centres = gpd.GeoDataFrame(table.reset_index(), geometry=gpd.points_from_xy(lon, lat), crs=4326)
    joined = gpd.sjoin(centres, districts[["district", "geometry"]], predicate="within")
    hand = joined.groupby("district")[["emb_0", "emb_5"]].mean()
    counts = joined.groupby("district").size()
    for d in hand.index:
        assert got.loc[d, "cell_count"] == counts[d]
        assert got.loc[d, "emb_0"] == pytest.approx(hand.loc[d, "emb_0"], rel=1e-6)
        assert got.loc[d, "emb_5"] == pytest.approx(hand.loc[d, "emb_5"], rel=1e-6)


@pytest.fixture(scope="module")
def cells_with_targets(qgis, small_city, embedding_file, tmp_path_factory):
    """An H3 cell layer with embeddings, a target planted on two embedding dimensions and a shuffled copy."""
    import geopandas as gpd

    from mobclip_core.export import embeddings_geodataframe
    from mobclip_core.geofile import write_geodataframe

    _, table = embedding_file
    gdf = embeddings_geodataframe(table).reset_index()
    noise = np.random.default_rng(2).normal(scale=0.1, size=len(gdf))
    gdf["night"] = 2.0 * gdf["emb_5"] + np.sign(gdf["emb_6"]) + noise
    gdf["shuffled"] = np.random.default_rng(1).permutation(gdf["night"].to_numpy())
    gdf["label"] = "x"
    path = tmp_path_factory.mktemp("cells") / "cells.gpkg"
    write_geodataframe(gpd.GeoDataFrame(gdf, crs=4326), path)
    return path


def test_lightgbm_planted_target_high_shuffled_near_zero(qgis, cells_with_targets, tmp_path):
    common = {
        "INPUT": str(cells_with_targets),
        "PREFIX": "emb_",
        "BLOCKS": 0,
        "BLOCK_RESOLUTION": 7,
        "FOLDS": 5,
        "MODEL": 1,
        "N_ESTIMATORS": 150,
        "MIN_CHILD_SAMPLES": 10,
    }
    good = run("fit_lightgbm", {**common, "TARGET": "night", "OUTPUT": str(tmp_path / "p.gpkg")})
    shuffled = run("fit_lightgbm", {**common, "TARGET": "shuffled", "OUTPUT": str(tmp_path / "s.gpkg")})
    assert good["R2"] > 0.8
    assert shuffled["R2"] < 0.1
    out = layer_frame(good["OUTPUT"])
    np.testing.assert_allclose(out["residual"], out["night"] - out["oof_prediction"], rtol=1e-9)


def test_bad_inputs_raise_clear_errors(qgis, small_city, cells_with_targets, embedding_file, tmp_path):
    from qgis.core import QgsProcessingException, QgsVectorLayer

    with pytest.raises(QgsProcessingException, match="not numeric"):
        run("fit_lightgbm", {"INPUT": str(cells_with_targets), "TARGET": "label", "OUTPUT": "memory:"})
    empty = QgsVectorLayer("Polygon?crs=EPSG:4326", "empty", "memory")
    with pytest.raises(QgsProcessingException, match="empty"):
        run("aggregate_embeddings", {"INPUT": empty, "EMBEDDINGS": str(embedding_file[0]), "OUTPUT": "memory:"})
    far = QgsVectorLayer("Point?crs=EPSG:4326", "far", "memory")
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY

    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(-70, -30)))
    far.dataProvider().addFeatures([f])
    with pytest.raises(QgsProcessingException, match="No feature falls in a cell"):
        run("attach_embeddings", {"INPUT": far, "EMBEDDINGS": str(embedding_file[0]), "OUTPUT": "memory:"})
    with pytest.raises(QgsProcessingException) as points:  # the dialog lists polygons only; qgis_process does not
        run("aggregate_embeddings", {"INPUT": far, "EMBEDDINGS": str(embedding_file[0]), "OUTPUT": "memory:"})
    assert str(points.value) == (
        "'far' is a point layer; 'Polygons' takes a polygon layer: for points, use 'Attach embeddings to features'"
    )
    # a generic GEOMETRY column (mixed polygons and multipolygons, as fiona writes them) is still taken
    from osgeo import ogr, osr

    generic = str(tmp_path / "generic.gpkg")
    source = ogr.Open(str(small_city.districts))
    srs = source.GetLayer(0).GetSpatialRef() or osr.SpatialReference()
    target = ogr.GetDriverByName("GPKG").CreateDataSource(generic)
    out_layer = target.CreateLayer("districts", srs, ogr.wkbUnknown)
    for i, feature in enumerate(source.GetLayer(0)):
        geometry = feature.GetGeometryRef().Clone()
        row = ogr.Feature(out_layer.GetLayerDefn())
        row.SetGeometry(ogr.ForceToMultiPolygon(geometry) if i % 2 else geometry)
        out_layer.CreateFeature(row)
    target = source = None
    mixed = run("aggregate_embeddings", {"INPUT": generic, "EMBEDDINGS": str(embedding_file[0]), "OUTPUT": "memory:"})
    assert mixed["OUTPUT"].featureCount() > 0
    # projected coordinates mislabelled as geographic: a clear CRS/range error, not a silent wrong map
    wrong = QgsVectorLayer("Polygon?crs=EPSG:4326", "wrong", "memory")
    g = QgsFeature()
    g.setGeometry(QgsGeometry.fromWkt("POLYGON((500000 5000000, 501000 5000000, 501000 5001000, 500000 5000000))"))
    wrong.dataProvider().addFeatures([g])
    with pytest.raises(QgsProcessingException, match="outside"):
        run("tessellate", {"INPUT": wrong, "RESOLUTION": 9, "OUTPUT": "memory:"})


def test_cancellation_stops_the_work(qgis, small_city, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 0 else None)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run(
            "tessellate",
            {"INPUT": str(small_city.districts), "RESOLUTION": 11, "OUTPUT": str(tmp_path / "never.gpkg")},
            feedback,
        )
    assert not (tmp_path / "never.gpkg").exists()


def test_cancel_is_heard_while_polygons_are_filled(qgis, small_city, embedding_file, tmp_path):
    """Filling the polygons with cells is the long part of aggregating (and of tessellating) a big or fine layer:
    it reports progress between reading (0-30 %) and writing (70-100 %), and a Cancel there stops it."""
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    for name, params in (
        ("aggregate_embeddings", {"EMBEDDINGS": str(embedding_file[0])}),
        ("tessellate", {"RESOLUTION": 11}),
    ):
        feedback = QgsProcessingFeedback()
        seen = []
        feedback.progressChanged.connect(lambda p, f=feedback, s=seen: s.append(p) or (f.cancel() if p > 30 else None))
        with pytest.raises(QgsProcessingException, match="Cancelled"):
            run(
                name, {"INPUT": str(small_city.districts), **params, "OUTPUT": str(tmp_path / f"{name}.gpkg")}, feedback
            )
        assert 30 < max(seen) < 70, (name, seen)
        assert not (tmp_path / f"{name}.gpkg").exists()


def test_embedding_raster_pixels_hold_the_cell_values(qgis, embedding_file, tmp_path):
    from osgeo import gdal

    from mobclip_core.grid import cell_centroids, strings_to_cells
    from mobclip_core.rasterize import pca_rgb

    path, table = embedding_file
    res = run(
        "embedding_raster",
        {"EMBEDDINGS": str(path), "OUTPUT": str(tmp_path / "b.tif"), "OUTPUT_RGB": str(tmp_path / "rgb.tif")},
    )
    lon, lat = cell_centroids(strings_to_cells(table.index.to_numpy()))
    rgb_expected = pca_rgb(table.to_numpy())
    for name, expected, dtype in (("OUTPUT", table.to_numpy(), np.float32), ("OUTPUT_RGB", rgb_expected, np.uint8)):
        ds = gdal.Open(res[name])
        x0, px, _, y0, _, py = ds.GetGeoTransform()
        data = ds.ReadAsArray()
        assert data.dtype == dtype and data.shape[0] == expected.shape[1] and "4326" in ds.GetProjection()
        cols, rows = ((lon - x0) / px).astype(int), ((lat - y0) / py).astype(int)
        np.testing.assert_allclose(data[:, rows, cols].T, expected, rtol=1e-6)  # the pixel at each cell centre
        assert ds.GetRasterBand(1).GetNoDataValue() is not None
        ds = None
    assert gdal.Open(res["OUTPUT_RGB"]).GetRasterBand(1).GetDescription() == "pca_1"


def test_embedding_table_from_a_project_layer(qgis, small_city, embedding_file, tmp_path):
    from qgis.core import QgsProcessingException, QgsVectorLayer

    path, _ = embedding_file
    layer = QgsVectorLayer(f"{path}|layername=embeddings", "embeddings on the map", "ogr")
    assert layer.isValid()
    from_file = layer_frame(
        run("aggregate_embeddings", {"INPUT": str(small_city.districts), "EMBEDDINGS": str(path), "OUTPUT": "memory:"})[
            "OUTPUT"
        ]
    )
    from_layer = layer_frame(
        run(
            "aggregate_embeddings", {"INPUT": str(small_city.districts), "EMBEDDINGS_LAYER": layer, "OUTPUT": "memory:"}
        )["OUTPUT"]
    )
    pd.testing.assert_frame_equal(from_file, from_layer)
    # a file beside a layer (the dialog preselects one): the file is used, and the log names the layer left out
    warned = LogFeedback()
    both = {"INPUT": str(small_city.districts), "EMBEDDINGS": str(path), "EMBEDDINGS_LAYER": layer, "OUTPUT": "memory:"}
    pd.testing.assert_frame_equal(layer_frame(run("aggregate_embeddings", both, warned)["OUTPUT"]), from_file)
    assert warned.warnings == [
        f"Using {path.name}; the project layer 'embeddings on the map' chosen beside it is left out"
    ]
    with pytest.raises(QgsProcessingException, match="No embedding table given"):
        run("embedding_raster", {"OUTPUT_RGB": str(tmp_path / "x.tif")})


def test_attach_table_and_model_exactly_one(qgis, small_city, embedding_file, tmp_path):
    from qgis.core import QgsProcessingException

    out = tmp_path / "never.gpkg"
    for extra in ({}, {"EMBEDDINGS": str(embedding_file[0]), "MODEL": str(embedding_file[0])}):
        with pytest.raises(QgsProcessingException, match="either an embedding table or a distilled model|table given"):
            run("attach_embeddings", {"INPUT": str(small_city.pois), "OUTPUT": str(out), **extra})
    assert not out.exists()


def test_an_empty_temporary_input_repeated_from_the_history_says_what_to_do(qgis, embedding_file, tmp_path):
    """The History repeats a run by its parameters, and a temporary input is only its memory URI: QGIS then hands
    over an empty layer with no name ("Input layer '' is empty")."""
    from qgis.core import QgsProcessingException

    uri = "memory://Point?crs=EPSG:4326&field=k:integer&uid={6f1c2a80-1d5e-4d3e-9a55-7c3b1c2f0e11}"
    with pytest.raises(QgsProcessingException) as exc:
        run("attach_embeddings", {"INPUT": uri, "EMBEDDINGS": str(embedding_file[0]), "OUTPUT": "memory:"})
    assert str(exc.value) == (
        "Points, polygons or H3 cells: the temporary layer this names is empty (temporary layers of earlier runs are "
        "not kept): "
        "choose the layer again"
    )


def test_attach_by_cell_field_writes_null_for_a_null_id(qgis, embedding_file, small_city):
    from mobclip_core.grid import cell_centroids, cells_to_strings

    path, table = embedding_file
    ids = list(table.index[:5]) + [None, ""]
    lon, lat = cell_centroids(small_city.cells[:7])
    wkts = [f"POINT({x} {y})" for x, y in zip(lon, lat)]
    layer = memory_layer("Point", wkts, h3_cell=ids)
    got = layer_frame(
        run(
            "attach_embeddings", {"INPUT": layer, "EMBEDDINGS": str(path), "CELL_FIELD": "h3_cell", "OUTPUT": "memory:"}
        )["OUTPUT"]
    )
    np.testing.assert_allclose(got.loc[:4, "emb_2"].astype(float), table["emb_2"].iloc[:5], rtol=1e-6)
    assert got.loc[5:, "emb_2"].isna().all()  # NULL and empty ids: NULL embeddings, not a failed run
    assert cells_to_strings(small_city.cells[:1])[0] == got.h3_cell[0]
    # a cell id field the layer does not have (qgis_process and scripts have no field picker): said, with the fix
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="The layer has no field 'nope' .*choose one of its text fields"):
        run("attach_embeddings", {"INPUT": layer, "EMBEDDINGS": str(path), "CELL_FIELD": "nope", "OUTPUT": "memory:"})


def test_aggregate_ignores_cells_with_missing_values(qgis, small_city, embedding_file, tmp_path):
    from mobclip_core.export import write_embeddings

    _, table = embedding_file
    holes = table.copy()
    holes.iloc[::7] = np.nan  # a few NaN rows, spread over every district
    write_embeddings(holes, tmp_path / "holes.gpkg")
    full = layer_frame(
        run(
            "aggregate_embeddings",
            {"INPUT": str(small_city.districts), "EMBEDDINGS": str(tmp_path / "holes.gpkg"), "OUTPUT": "memory:"},
        )["OUTPUT"]
    )
    assert full["emb_0"].notna().all() and (full.cell_count > 0).all()
    write_embeddings(holes.dropna(), tmp_path / "dropped.gpkg")
    dropped = layer_frame(
        run(
            "aggregate_embeddings",
            {"INPUT": str(small_city.districts), "EMBEDDINGS": str(tmp_path / "dropped.gpkg"), "OUTPUT": "memory:"},
        )["OUTPUT"]
    )
    pd.testing.assert_frame_equal(full, dropped)


def test_aggregate_equals_the_evaluation_protocol_on_small_polygons(qgis, small_city, embedding_file):
    """QGIS's aggregation and the evaluation harness's admin features: one helper, the same numbers, tiny polygons
    (smaller than a cell: they take their representative point's cell) included."""
    import geopandas as gpd
    import shapely

    from mobclip_core.evaluation.harness import EmbeddingSource, admin_features
    from mobclip_core.geofile import write_geodataframe
    from mobclip_core.grid import cell_centroids

    path, table = embedding_file
    districts = gpd.read_file(small_city.districts).to_crs(4326)
    lon, lat = cell_centroids(small_city.cells[::40])
    tiny = [shapely.box(x + 1e-4, y + 1e-4, x + 3e-4, y + 3e-4) for x, y in zip(lon, lat)]
    polys = gpd.GeoDataFrame(geometry=[*districts.geometry, *tiny], crs=4326).to_crs(32632)
    polys["name"] = [f"p{i}" for i in range(len(polys))]
    write_geodataframe(polys, small_city.directory / "with_tiny.gpkg")
    got = layer_frame(
        run(
            "aggregate_embeddings",
            {"INPUT": str(small_city.directory / "with_tiny.gpkg"), "EMBEDDINGS": str(path), "OUTPUT": "memory:"},
        )["OUTPUT"]
    )
    expected = admin_features(EmbeddingSource("table", table=table), polys, 9)
    np.testing.assert_allclose(
        got[[f"emb_{i}" for i in range(table.shape[1])]].astype(float).to_numpy(), expected, rtol=1e-9
    )
    small = got.iloc[len(districts) :]
    assert small.from_point.all() and (small.cell_count == 1).all()
    assert not got.iloc[: len(districts)].from_point.any()


def _noise_points():
    """469 points around Chicago (an H3 disk at res 8) with four embedding fields of pure noise; their latitudes and
    the generator that made the noise (for a target's own noise)."""
    import geopandas as gpd
    import h3
    from shapely.geometry import Point

    cells = sorted(h3.grid_disk(h3.latlng_to_cell(41.85, -87.65, 8), 12))
    lat, lon = np.array([h3.cell_to_latlng(c) for c in cells]).T
    rng = np.random.default_rng(0)
    gdf = gpd.GeoDataFrame(
        {f"emb_{i}": rng.normal(size=len(cells)) for i in range(4)},
        geometry=[Point(x, y) for x, y in zip(lon, lat)],
        crs=4326,
    )
    return gdf, lat, rng


def test_fit_location_features_learn_a_trend_the_embeddings_do_not_hold(qgis, tmp_path):
    """A target that follows position (a north-south trend) on embeddings that are noise: out-of-fold R2 near zero
    from the embeddings alone, high once the location features join them; the second layer gets them too."""
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    gdf, lat, rng = _noise_points()

    gdf["trend"] = np.sin((lat - lat.min()) / np.ptp(lat) * 3.0) + 0.05 * rng.normal(size=len(gdf))
    write_geodataframe(gdf, tmp_path / "pts.gpkg")
    common = {"INPUT": str(tmp_path / "pts.gpkg"), "TARGET": "trend", "BLOCKS": 2, "MODEL": 1, "SEED": 0}
    plain = run("fit_lightgbm", {**common, "OUTPUT": str(tmp_path / "plain.gpkg")})
    located = run(
        "fit_lightgbm",
        {
            **common,
            "LOCATION": True,
            "OUTPUT": str(tmp_path / "located.gpkg"),
            "PREDICT_LAYER": str(tmp_path / "pts.gpkg"),
            "OUTPUT_PREDICT": str(tmp_path / "second.gpkg"),
        },
    )
    assert plain["R2"] < 0.2 and located["R2"] > 0.8, (plain["R2"], located["R2"])
    second = gpd.read_file(located["OUTPUT_PREDICT"])["prediction"].to_numpy()
    np.testing.assert_allclose(second, gpd.read_file(located["OUTPUT"])["prediction"].to_numpy(), rtol=1e-6)
    # a second layer partly 80 km east of the fitted area: its location code is extrapolated, and the log says so
    away = gdf.copy()
    away.loc[away.index[:25], "geometry"] = away.geometry[:25].translate(xoff=1.0)
    write_geodataframe(away, tmp_path / "away.gpkg")
    log = LogFeedback()
    params = {**common, "LOCATION": True, "OUTPUT": "memory:", "PREDICT_LAYER": str(tmp_path / "away.gpkg")}
    run("fit_lightgbm", {**params, "OUTPUT_PREDICT": str(tmp_path / "away_pred.gpkg")}, log)
    assert any(w.startswith(f"25 of {len(gdf)} features of the second layer lie outside") for w in log.warnings)
    log = LogFeedback()  # the fitted layer itself: nothing outside
    run("fit_lightgbm", {**params, "PREDICT_LAYER": str(tmp_path / "pts.gpkg"), "OUTPUT_PREDICT": "memory:"}, log)
    assert not [w for w in log.warnings if "outside" in w], log.warnings


def test_fit_refuses_constant_all_null_and_missing_targets(qgis, cells_with_targets, tmp_path):
    import geopandas as gpd
    from qgis.core import QgsProcessingException

    from mobclip_core.geofile import write_geodataframe

    gdf = gpd.read_file(cells_with_targets)
    gdf["constant"] = 3.0
    gdf["nothing"] = np.nan
    write_geodataframe(gdf, tmp_path / "t.gpkg")
    common = {"INPUT": str(tmp_path / "t.gpkg"), "BLOCK_RESOLUTION": 7, "OUTPUT": str(tmp_path / "o.gpkg")}
    with pytest.raises(QgsProcessingException, match="'constant' has the same value \\(3\\) for every usable feature"):
        run("fit_lightgbm", {**common, "TARGET": "constant"})
    with pytest.raises(QgsProcessingException, match="'nothing' is NULL for every feature"):
        run("fit_lightgbm", {**common, "TARGET": "nothing"})
    with pytest.raises(QgsProcessingException, match="Incorrect parameter value for TARGET"):
        run("fit_lightgbm", common)  # a required parameter: QGIS asks for it (the dialog preselects a field)
    with pytest.raises(QgsProcessingException, match="'fid' is the layer's feature id, not a value to predict"):
        run("fit_lightgbm", {**common, "TARGET": "fid"})  # the first numeric field of a GeoPackage layer
    with pytest.raises(QgsProcessingException, match="'emb_0' is an embedding field, not a value to predict"):
        run("fit_lightgbm", {**common, "TARGET": "emb_0"})  # the first numeric field of a layer without fid
    gdf["kind"] = "cell"
    write_geodataframe(gdf, tmp_path / "t.gpkg")
    with pytest.raises(QgsProcessingException, match="Extra feature field 'kind' is not numeric \\(String\\): leave"):
        run("fit_lightgbm", {**common, "TARGET": "night", "EXTRA_FIELDS": ["kind"]})
    with pytest.raises(QgsProcessingException, match="The layer has no field 'incme': choose one of") as typo:
        run("fit_lightgbm", {**common, "TARGET": "incme"})
    assert "constant" in str(typo.value) and "not numeric" not in str(typo.value)
    assert not (tmp_path / "o.gpkg").exists()


def test_fit_target_has_no_default_and_names_the_fitted_model(qgis, cells_with_targets):
    import re

    import processing
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("mobclip:fit_lightgbm")
    assert alg.parameterDefinition("TARGET").defaultValue() is None
    assert "LightGBM or Ridge" in alg.displayName()
    feedback = LogFeedback()
    small = run(
        "fit_lightgbm",
        {"INPUT": str(cells_with_targets), "TARGET": "night", "BLOCKS": 2, "OUTPUT": "memory:"},
        feedback,
    )
    assert small["MODEL"] == "Ridge"  # 'auto' under 300 features
    fitted = [line for line in feedback.lines if line.startswith("Fitted ")]
    assert len(fitted) == 1 and re.match(r"Fitted Ridge \(alpha [0-9.e+-]+, chosen by leave-one-out\) on ", fitted[0])
    feedback = LogFeedback()
    from qgis.core import QgsProcessingContext, QgsProcessingOutputLayerDefinition, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    forced = processing.run(
        "mobclip:fit_lightgbm",
        {
            "INPUT": str(cells_with_targets),
            "TARGET": "night",
            "BLOCKS": 2,
            "MODEL": 1,
            "FOLDS": 2,
            "N_ESTIMATORS": 20,
            "OUTPUT": QgsProcessingOutputLayerDefinition("memory:", QgsProject.instance()),
        },
        context=context,
        feedback=feedback,
    )
    assert forced["MODEL"] == "LightGBM"
    assert any(re.match(r"Fitted LightGBM \(\d+ trees\) on ", line) for line in feedback.lines), feedback.lines
    names = [details.name for details in context.layersToLoadOnCompletion().values()]
    assert names == ["night predicted by LightGBM"]  # the layer the dialog adds to the project
    # in a model the output has the name the modeller gave it: kept (a model's outputs are found by their names)
    named = QgsProcessingOutputLayerDefinition("memory:", QgsProject.instance())
    named.destinationName = "pred_cells"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {"INPUT": str(cells_with_targets), "TARGET": "night", "BLOCKS": 2, "FOLDS": 2, "OUTPUT": named}
    processing.run("mobclip:fit_lightgbm", params, context=context, feedback=LogFeedback())
    assert [details.name for details in context.layersToLoadOnCompletion().values()] == ["pred_cells"]


def test_fit_group_and_random_folds_and_second_layer(qgis, cells_with_targets, small_city, tmp_path):
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    gdf = gpd.read_file(cells_with_targets)
    gdf["district"] = [f"d{i % 6}" for i in range(len(gdf))]
    write_geodataframe(gdf, tmp_path / "g.gpkg")
    common = {"INPUT": str(tmp_path / "g.gpkg"), "TARGET": "night", "MODEL": 2, "FOLDS": 3}
    log = LogFeedback()
    grouped = run("fit_lightgbm", {**common, "BLOCKS": 1, "GROUP_FIELD": "district", "OUTPUT": "memory:"}, log)
    assert not [w for w in log.warnings if "groups for" in w]
    log = LogFeedback()  # a group per feature (an id field): the folds are random, and the user is told
    run("fit_lightgbm", {**common, "BLOCKS": 1, "GROUP_FIELD": "h3_cell", "OUTPUT": "memory:"}, log)
    assert any(
        f"'h3_cell' has {len(gdf)} groups for {len(gdf)} features" in w and "not blocked" in w for w in log.warnings
    )
    random = run("fit_lightgbm", {**common, "BLOCKS": 2, "OUTPUT": "memory:"})
    assert grouped["R2"] > 0.5 and random["R2"] > 0.5 and grouped["R2"] != random["R2"]
    other = gdf.iloc[:20].drop(columns=["night"])
    write_geodataframe(other, tmp_path / "other.gpkg")
    both = run(
        "fit_lightgbm",
        {
            **common,
            "BLOCKS": 2,
            "PREDICT_LAYER": str(tmp_path / "other.gpkg"),
            "OUTPUT": "memory:",
            "OUTPUT_PREDICT": str(tmp_path / "pred.gpkg"),
        },
    )
    first = layer_frame(both["OUTPUT"]).iloc[:20]["prediction"].astype(float).to_numpy()
    onto = layer_frame(both["OUTPUT_PREDICT"])["prediction"].astype(float).to_numpy()
    np.testing.assert_allclose(onto, first, rtol=1e-9)  # same refit model, same features
    # a second layer without the feature fields: said before the fit, and nothing is written
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProject

    write_geodataframe(other.drop(columns=["emb_3"]), tmp_path / "lacking.gpkg")
    feedback = LogFeedback()
    with pytest.raises(QgsProcessingException, match="lacks the feature fields \\['emb_3'\\]: attach the same"):
        run(
            "fit_lightgbm",
            {**common, "PREDICT_LAYER": str(tmp_path / "lacking.gpkg"), "OUTPUT": str(tmp_path / "no.gpkg")},
            feedback,
        )
    assert not any(line.startswith("Fitted") for line in feedback.lines) and not (tmp_path / "no.gpkg").exists()
    # a second layer chosen, its output left skipped (the dialog's default): a temporary layer in the project
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {**common, "BLOCKS": 2, "PREDICT_LAYER": str(tmp_path / "other.gpkg"), "OUTPUT": "memory:"}
    onto_project = processing.run("mobclip:fit_lightgbm", params, context=context, feedback=LogFeedback())
    names = [details.name for details in context.layersToLoadOnCompletion().values()]
    assert names == ["Predictions on the second layer"]
    np.testing.assert_allclose(layer_frame(onto_project["OUTPUT_PREDICT"])["prediction"].astype(float), onto)


def test_fit_warns_when_most_folds_score_below_zero(qgis, tmp_path):
    """A target that differs between five bands of the city and is noise within each, folds by band: the pooled
    out-of-fold R2 is high (the bands are told apart) while every fold scores below zero. The log says what the
    pooled number credits; a fit whose folds do well gets no such warning."""
    from mobclip_core.geofile import write_geodataframe

    gdf, lat, rng = _noise_points()

    band = np.digitize(lat, np.quantile(lat, [0.2, 0.4, 0.6, 0.8]))
    gdf["band"] = band.astype(str)
    gdf["stepped"] = 3.0 * band + rng.normal(size=len(gdf))
    gdf["smooth"] = np.sin((lat - lat.min()) / np.ptp(lat) * 3.0) + 0.05 * rng.normal(size=len(gdf))
    write_geodataframe(gdf, tmp_path / "pts.gpkg")
    common = {"INPUT": str(tmp_path / "pts.gpkg"), "MODEL": 2, "LOCATION": True, "FOLDS": 5, "OUTPUT": "memory:"}
    log = LogFeedback()
    fit = run("fit_lightgbm", {**common, "TARGET": "stepped", "BLOCKS": 1, "GROUP_FIELD": "band"}, log)
    assert fit["R2"] > 0.5
    assert [w for w in log.warnings if "below zero" in w] == [
        "5 of 5 folds score below zero: inside most held-out folds the predictions do worse than the fold's own "
        "mean. The out-of-fold R2 above pools all features, so it credits the model for telling the held-out areas "
        "apart (a city-wide trend), not for what varies within them"
    ], log.warnings
    log = LogFeedback()
    run("fit_lightgbm", {**common, "TARGET": "smooth", "BLOCKS": 2}, log)
    assert not any("below zero" in w for w in log.warnings), log.warnings


def test_fit_warns_when_few_features_are_left_to_learn_from(qgis, cells_with_targets, tmp_path):
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    gdf = gpd.read_file(cells_with_targets)
    write_geodataframe(gdf.iloc[:30], tmp_path / "few.gpkg")
    common = {"TARGET": "night", "MODEL": 2, "BLOCKS": 2, "FOLDS": 3, "OUTPUT": "memory:"}
    few = LogFeedback()
    run("fit_lightgbm", {**common, "INPUT": str(tmp_path / "few.gpkg")}, few)
    assert any(w.startswith("Only 30 features to learn from") for w in few.warnings), few.warnings
    many = LogFeedback()
    run("fit_lightgbm", {**common, "INPUT": str(cells_with_targets)}, many)
    assert not any("features to learn from" in w for w in many.warnings), many.warnings


def test_fit_cancel_mid_cross_validation(qgis, cells_with_targets, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 20 else None)  # after the first fold
    out = tmp_path / "never.gpkg"
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run(
            "fit_lightgbm",
            {
                "INPUT": str(cells_with_targets),
                "TARGET": "night",
                "MODEL": 1,
                "BLOCK_RESOLUTION": 7,
                "FOLDS": 3,
                "OUTPUT": str(out),
            },
            feedback,
        )
    assert not out.exists()


def _gpkg_with_layers(source, path):
    """A GeoPackage holding the analyst's work: the cell layer and a notes table beside it."""
    import geopandas as gpd
    import pandas as pd

    gpd.read_file(source).to_file(path, layer="cells", driver="GPKG")
    pd.DataFrame({"note": ["keep me"]}).pipe(gpd.GeoDataFrame).to_file(path, layer="notes", driver="GPKG")
    return path


def _layer_names(path) -> list[str]:
    from osgeo import ogr

    data = ogr.Open(str(path))
    return sorted(data.GetLayer(i).GetName() for i in range(data.GetLayerCount()))


def test_a_layer_replaced_in_a_geopackage_is_swapped_in_at_the_end(qgis, embedding_file, tmp_path, monkeypatch):
    """An existing GeoPackage layer chosen as the output is written beside it and swapped in when the run has
    succeeded: a Cancel during the write (it was not heard there, and the layer was replaced anyway) or a failure
    leaves the old layer whole; a finished run replaces it, names it in its results and loads it under that name."""
    import sys

    import processing
    from qgis.core import (
        QgsProcessingContext,
        QgsProcessingException,
        QgsProcessingOutputLayerDefinition,
        QgsProject,
    )

    gpkg = tmp_path / "project.gpkg"
    square = "POLYGON((9 45, 9.2 45, 9.2 45.2, 9 45.2, 9 45))"
    for layer, res in (("cells", 6), ("notes", 5)):
        destination = f"ogr:dbname='{gpkg}' table=\"{layer}\" (geom)"
        run("tessellate", {"INPUT": memory_layer("Polygon", [square]), "RESOLUTION": res, "OUTPUT": destination})
    before = {name: len(layer_frame(f"{gpkg}|layername={name}")) for name in ("cells", "notes")}
    params = {"INPUT": memory_layer("Polygon", [square]), "RESOLUTION": 9}
    target = f"ogr:dbname='{gpkg}' table=\"cells\" (geom)"
    feedback = LogFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p >= 75 else None)  # the write is 70-100 %
    with pytest.raises(QgsProcessingException, match="Cancelled by the user; no output was written$"):
        run("tessellate", {**params, "OUTPUT": target}, feedback)
    after = {name: len(layer_frame(f"{gpkg}|layername={name}")) for name in ("cells", "notes")}
    assert after == before and _layer_names(gpkg) == ["cells", "notes"]
    # a failure when the layers are swapped: the old layer stays, the new one is removed, the message says so
    base = sys.modules["mobclip.processing_algorithms.base"]  # the plugin as QGIS loaded it

    def refused(file, layer, staged):
        raise OSError("database is locked")

    monkeypatch.setattr(base, "_replace_layer", refused)
    with pytest.raises(QgsProcessingException, match="'cells' in place .*database is locked.*old layer is as it was"):
        run("tessellate", {**params, "OUTPUT": target})
    assert _layer_names(gpkg) == ["cells", "notes"] and len(layer_frame(f"{gpkg}|layername=cells")) == before["cells"]
    monkeypatch.undo()
    # finished: replaced, other layers kept, results and the layer to load name the final layer
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    output = QgsProcessingOutputLayerDefinition(target, QgsProject.instance())
    result = processing.run("mobclip:tessellate", {**params, "OUTPUT": output}, context=context, feedback=LogFeedback())
    assert result["OUTPUT"] == f"{gpkg}|layername=cells" and _layer_names(gpkg) == ["cells", "notes"]
    assert len(layer_frame(f"{gpkg}|layername=cells")) > 1000 > before["cells"]
    assert list(context.layersToLoadOnCompletion()) == [f"{gpkg}|layername=cells"]
    # a styled output (Change) swapped in keeps its styler for the load (a freed one crashed QGIS in the dialog)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    output = QgsProcessingOutputLayerDefinition(target, QgsProject.instance())
    table = str(embedding_file[0])
    change = {"BEFORE": table, "AFTER": table, "OUTPUT": output}
    result = processing.run("mobclip:embedding_change", change, context=context, feedback=LogFeedback())
    assert result["OUTPUT"] == f"{gpkg}|layername=cells" and _layer_names(gpkg) == ["cells", "notes"]
    details = context.layerToLoadOnCompletionDetails(result["OUTPUT"])
    assert type(details.postProcessor()).__name__ == "Styler" and details.name == "Change per cell"


def test_a_failed_or_cancelled_fit_into_a_geopackage_keeps_the_files_other_layers(qgis, cells_with_targets, tmp_path):
    """An output written as a new layer of an existing GeoPackage (the dialog's "Save to GeoPackage"): a run that
    fails or is cancelled removes that layer only, never the file with the analyst's other layers; and an output
    QGIS cannot create is refused before the fit, not after it."""
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    gpkg = _gpkg_with_layers(cells_with_targets, tmp_path / "analyst.gpkg")
    common = {
        "INPUT": f"{gpkg}|layername=cells",
        "TARGET": "night",
        "MODEL": 1,
        "BLOCK_RESOLUTION": 7,
        "FOLDS": 3,
        "OUTPUT": f"ogr:dbname='{gpkg}' table=\"pred\" (geom)",
    }
    log = LogFeedback()
    onto = {"PREDICT_LAYER": f"{gpkg}|layername=cells", "OUTPUT_PREDICT": str(tmp_path / "no_such_dir" / "x.gpkg")}
    with pytest.raises(QgsProcessingException, match="no_such_dir does not exist: create it"):
        run("fit_lightgbm", {**common, **onto}, log)
    assert not any(line.startswith("Fitted") for line in log.lines), log.lines  # refused before the fit
    assert _layer_names(gpkg) == ["cells", "notes"]
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p >= 15 else None)  # while the folds run
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run("fit_lightgbm", common, feedback)
    assert _layer_names(gpkg) == ["cells", "notes"]
    done = run("fit_lightgbm", common)  # and a run that finishes adds its layer beside them
    assert done["OUTPUT"].endswith("|layername=pred") and _layer_names(gpkg) == ["cells", "notes", "pred"]
    # an output that exists (the input itself, an earlier result) is replaced only after the fit: a cancelled run
    # leaves it as it was
    before = {name: len(layer_frame(f"{gpkg}|layername={name}")) for name in ("cells", "pred")}
    for layer in ("cells", "pred"):
        feedback = QgsProcessingFeedback()
        feedback.progressChanged.connect(lambda p, f=feedback: f.cancel() if p >= 15 else None)
        with pytest.raises(QgsProcessingException, match="Cancelled"):
            run("fit_lightgbm", {**common, "OUTPUT": f"ogr:dbname='{gpkg}' table=\"{layer}\" (geom)"}, feedback)
    assert _layer_names(gpkg) == ["cells", "notes", "pred"]
    assert {name: len(layer_frame(f"{gpkg}|layername={name}")) for name in ("cells", "pred")} == before
    assert "prediction" not in layer_frame(f"{gpkg}|layername=cells").columns
    plain = tmp_path / "earlier.gpkg"
    run("fit_lightgbm", {**common, "OUTPUT": str(plain)})
    stamp = plain.stat().st_mtime_ns
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p >= 15 else None)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        run("fit_lightgbm", {**common, "OUTPUT": str(plain)}, feedback)
    assert plain.stat().st_mtime_ns == stamp


def test_cancel_while_an_output_replaces_its_own_input_keeps_a_complete_layer(
    qgis, cells_with_targets, embedding_file, tmp_path
):
    """Attach written onto its own input file (an in-place run) and cancelled while writing: the sink emptied the
    file when it was created, so stopping there would leave neither the input nor the result. The write finishes
    and the file holds every feature with its new fields; a cancel before the write changes nothing."""
    import geopandas as gpd
    from qgis.core import QgsProcessingException

    from mobclip_core.geofile import write_geodataframe

    path, _ = embedding_file
    centres = gpd.read_file(cells_with_targets).geometry.representative_point()
    points = gpd.GeoDataFrame({"k": range(12 * len(centres))}, geometry=list(centres) * 12, crs=4326)
    layer = tmp_path / "points.gpkg"
    write_geodataframe(points, layer)
    n = len(points)
    assert n > 2000  # written in three batches of 1,000: Cancel would be heard between them
    feedback = LogFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p >= 80 else None)  # the write is 80-100 %
    params = {"INPUT": str(layer), "EMBEDDINGS": str(path), "PREFIX": "new_", "OUTPUT": str(layer)}
    try:
        run("attach_embeddings", params, feedback)
    except QgsProcessingException as exc:
        assert "already replaced by this run's complete result" in str(exc), exc
    # QGIS then calls the run failed and adds nothing to the map: the user is told where the new layer is
    assert any("written in full" in w and "from the Browser" in w and "points.gpkg" in w for w in feedback.warnings)
    after = layer_frame(str(layer))
    assert len(after) == n and "new_0" in after.columns and after["new_0"].notna().all()


def test_a_blank_second_output_in_the_batch_dialog_goes_to_a_temporary_layer(qgis, cells_with_targets, tmp_path):
    """The batch dialog passes a blank output cell as an empty QgsProcessingOutputLayerDefinition (truthy): the
    predictions on the second layer go to a temporary layer, as in the single dialog, not to an error after the
    fit that also deletes the first output."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingOutputLayerDefinition, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {
        "INPUT": str(cells_with_targets),
        "TARGET": "night",
        "MODEL": 2,
        "BLOCKS": 2,
        "FOLDS": 3,
        "PREDICT_LAYER": str(cells_with_targets),
        "OUTPUT": str(tmp_path / "first.gpkg"),
        "OUTPUT_PREDICT": QgsProcessingOutputLayerDefinition("", QgsProject.instance()),
    }
    result = processing.run("mobclip:fit_lightgbm", params, context=context, feedback=LogFeedback())
    assert (tmp_path / "first.gpkg").exists()
    second = layer_frame(result["OUTPUT_PREDICT"])["prediction"].astype(float)
    assert second.notna().all() and len(second) == len(layer_frame(str(cells_with_targets)))


def test_a_run_on_an_earlier_runs_output_replaces_its_fields_and_says_so(
    qgis, cells_with_targets, embedding_file, tmp_path
):
    """A second target fitted on a fit's output, and embeddings attached to a layer that already has them: the new
    values, not the old ones kept under the new names (QgsFields.append skips a name it already has)."""
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    gdf = gpd.read_file(cells_with_targets)
    gdf["thousands"] = 1000.0 * gdf["night"]
    write_geodataframe(gdf, tmp_path / "t.gpkg")
    common = {"BLOCK_RESOLUTION": 7, "FOLDS": 5, "MODEL": 1}
    first = run(
        "fit_lightgbm",
        {**common, "INPUT": str(tmp_path / "t.gpkg"), "TARGET": "night", "OUTPUT": str(tmp_path / "a.gpkg")},
    )
    log = LogFeedback()
    second = run(
        "fit_lightgbm",
        {**common, "INPUT": first["OUTPUT"], "TARGET": "thousands", "OUTPUT": str(tmp_path / "b.gpkg")},
        log,
    )
    got = layer_frame(second["OUTPUT"])
    assert list(got.columns).count("prediction") == 1
    np.testing.assert_allclose(got["residual"], got["thousands"] - got["oof_prediction"], rtol=1e-6, atol=1e-6)
    assert np.corrcoef(got["prediction"], got["thousands"])[0, 1] > 0.9
    assert got["prediction"].abs().mean() > 100 * layer_frame(first["OUTPUT"])["prediction"].abs().mean()
    assert any("already has the field(s) prediction, oof_prediction, residual" in w for w in log.warnings), log.warnings

    path, table = embedding_file
    shifted = table + 5.0
    from mobclip_core.export import write_embeddings

    write_embeddings(shifted, tmp_path / "shifted.gpkg")
    log = LogFeedback()
    again = run(
        "attach_embeddings",
        {
            "INPUT": str(tmp_path / "t.gpkg"),
            "EMBEDDINGS": str(tmp_path / "shifted.gpkg"),
            "OUTPUT": str(tmp_path / "c.gpkg"),
        },
        log,
    )
    got = layer_frame(again["OUTPUT"]).set_index("h3_cell")
    np.testing.assert_allclose(got["emb_0"].astype(float), shifted.loc[got.index, "emb_0"], rtol=1e-6)
    assert any("already has the field(s) emb_0" in w and "more" in w for w in log.warnings), log.warnings
    # a narrower embedding attached over a wider one leaves none of the old fields behind
    write_embeddings(shifted.iloc[:, :3], tmp_path / "narrow.gpkg")
    params = {"INPUT": again["OUTPUT"], "EMBEDDINGS": str(tmp_path / "narrow.gpkg"), "OUTPUT": str(tmp_path / "d.gpkg")}
    narrow = layer_frame(run("attach_embeddings", params)["OUTPUT"])
    assert [c for c in narrow.columns if c.startswith("emb_")] == ["emb_0", "emb_1", "emb_2"]


def test_fit_fills_the_gaps_features_with_a_null_target_get_a_prediction(qgis, cells_with_targets, tmp_path):
    """The gap-filling use: a feature whose target is NULL is left out of the fit but gets a prediction from its
    embedding (no out-of-fold prediction, no residual); one without embedding values gets none."""
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    gdf = gpd.read_file(cells_with_targets)
    gdf.loc[gdf.index[::7], "night"] = np.nan
    gdf.loc[gdf.index[3], "emb_0"] = np.nan
    write_geodataframe(gdf, tmp_path / "gaps.gpkg")
    log = LogFeedback()
    params = {"INPUT": str(tmp_path / "gaps.gpkg"), "TARGET": "night", "BLOCK_RESOLUTION": 7, "MODEL": 1}
    got = layer_frame(run("fit_lightgbm", {**params, "OUTPUT": str(tmp_path / "o.gpkg")}, log)["OUTPUT"])
    gaps = got["night"].isna() & got["emb_0"].notna()
    assert gaps.sum() == len(gdf.index[::7]) and got.loc[gaps, "prediction"].notna().all()
    assert got.loc[gaps, ["oof_prediction", "residual"]].isna().all().all()
    assert got.loc[got["emb_0"].isna(), "prediction"].isna().all()
    truth = 2.0 * got.loc[gaps, "emb_5"] + np.sign(got.loc[gaps, "emb_6"])  # the planted target, without noise
    assert np.corrcoef(got.loc[gaps, "prediction"], truth)[0, 1] > 0.8
    assert any(f"the {gaps.sum()} with a NULL target got a prediction" in w for w in log.warnings), log.warnings


def test_fit_predictions_load_as_a_map_of_the_prediction(qgis, cells_with_targets, tmp_path):
    """Both prediction layers come into the project styled by their prediction (quantile classes), not in one
    random colour under the embedding layer."""
    import geopandas as gpd
    import processing
    from qgis.core import QgsProcessingContext, QgsProject, QgsVectorLayer

    from mobclip_core.geofile import write_geodataframe

    write_geodataframe(gpd.read_file(cells_with_targets).iloc[:30].drop(columns=["night"]), tmp_path / "other.gpkg")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {"INPUT": str(cells_with_targets), "TARGET": "night", "MODEL": 2, "BLOCK_RESOLUTION": 7}
    params |= {"PREDICT_LAYER": str(tmp_path / "other.gpkg"), "OUTPUT": str(tmp_path / "fit.gpkg")}
    params["OUTPUT_PREDICT"] = str(tmp_path / "onto.gpkg")
    processing.runAndLoadResults("mobclip:fit_lightgbm", params, feedback=LogFeedback(), context=context)
    try:
        loaded = {
            lyr.name(): lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)
        }
        assert {"night predicted by Ridge", "Predictions on the second layer"} <= set(loaded), list(loaded)
        for name in ("night predicted by Ridge", "Predictions on the second layer"):
            renderer = loaded[name].renderer()
            assert type(renderer).__name__ == "QgsGraduatedSymbolRenderer", (name, type(renderer).__name__)
            assert renderer.classAttribute() == "prediction" and len(renderer.ranges()) == 8
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_features_left_without_embeddings_are_a_warning_that_counts_them(qgis, small_city, embedding_file, tmp_path):
    """Polygons or points outside the table's cells get NULL fields: a warning says how many, not an info line."""
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    path, _ = embedding_file
    districts = gpd.read_file(small_city.districts)
    moved = districts.copy()
    moved.loc[moved.index[:2], "geometry"] = moved.geometry[:2].translate(
        xoff=50_000 if moved.crs.is_projected else 1.0
    )
    write_geodataframe(moved, tmp_path / "moved.gpkg")
    log = LogFeedback()
    run(
        "aggregate_embeddings",
        {"INPUT": str(tmp_path / "moved.gpkg"), "EMBEDDINGS": str(path), "OUTPUT": "memory:"},
        log,
    )
    n = len(districts)
    assert any(w.startswith(f"2 of {n} polygons got no embedding (NULL fields)") for w in log.warnings), log.warnings
    log = LogFeedback()
    run("aggregate_embeddings", {"INPUT": str(small_city.districts), "EMBEDDINGS": str(path), "OUTPUT": "memory:"}, log)
    assert not log.warnings and any(line.startswith(f"{n} of {n} polygons got embeddings") for line in log.lines)
    points = gpd.read_file(small_city.pois)
    points.loc[points.index[:3], "geometry"] = points.geometry[:3].translate(
        xoff=50_000 if points.crs.is_projected else 1.0
    )
    write_geodataframe(points, tmp_path / "points.gpkg")
    log = LogFeedback()
    run(
        "attach_embeddings", {"INPUT": str(tmp_path / "points.gpkg"), "EMBEDDINGS": str(path), "OUTPUT": "memory:"}, log
    )
    assert any(w.startswith(f"3 of {len(points)} features got no embedding") for w in log.warnings), log.warnings
    # features without a geometry are counted apart: they are not outside the area, and the fix differs
    points.loc[points.index[3:5], "geometry"] = None
    write_geodataframe(points, tmp_path / "no_geometry.gpkg")
    log = LogFeedback()
    params = {"INPUT": str(tmp_path / "no_geometry.gpkg"), "EMBEDDINGS": str(path), "OUTPUT": "memory:"}
    run("attach_embeddings", params, log)
    assert [w for w in log.warnings if "got no embedding" in w] == [
        f"5 of {len(points)} features got no embedding (NULL fields): 2 have no geometry (NULL or empty: give them "
        "one, or filter them out); 3 lie outside the embedding table's cells (resolution 9): check that the layer "
        f"and the table cover the same area. {len(points) - 5} got embeddings"
    ], log.warnings
