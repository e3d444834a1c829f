"""QGIS as a user runs it, end to end: every algorithm in one QGIS session (training included, in its child
process), then what that session loaded; training through qgis_process.bin; Cancel during training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.qgis, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
KEPT_ON_CANCEL = (  # a training stopped after its dataset stage
    "Cancelled by the user; no outputs were written (earlier ones are as they were); the region dataset built so "
    "far stays in the output folder's dataset/ and the next run reuses it"
)
FORBIDDEN_MODULES = {"shapely", "geopandas", "pyproj", "rasterio", "pyogrio", "fiona", "torch", "numba", "triton"}


def write_config(city, folder: Path, output: str) -> Path:
    """A small training config over the test city (few epochs: the point is the plumbing, not the quality)."""
    folder.mkdir(parents=True, exist_ok=True)
    d = Path(city.directory)
    path = folder / f"{output}.toml"
    path.write_text(
        f'name = "{output}"\nresolution = 9\noutput = "{folder / output}"\ncache_dir = "{folder / "cache"}"\n'
        f'[mobility]\nrecords = "{d / "records.parquet"}"\n[poi]\npath = "{d / "pois.gpkg"}"\n'
        f'[image]\npath = "{d / "imagery.tif"}"\n[demographics]\nraster = "{d / "demographics.tif"}"\n'
        "[line]\nsamples_per_edge = 10\n[train]\nbatch_size = 64\nepochs = 6\npatience = 3\n"
    )
    return path


@pytest.fixture(scope="module")
def inputs(small_city, tmp_path_factory):
    """Files a user would have: the city's layers, an embedding table (GeoPackage and GeoParquet), a layer of
    cells with a target, a distilled model, and a training config."""
    from planted import write_zone_embeddings

    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
    from mobclip_core.grid import cell_centroids

    root = tmp_path_factory.mktemp("session")
    table = write_zone_embeddings(small_city, root)
    lon, lat = cell_centroids(small_city.cells)
    encoder = DistilledEncoder(DistilConfig(degree=4, hidden=16, layers=2, epochs=5))
    encoder.fit(lon, lat, table.to_numpy()[:, :4]).save(root / "distilled")
    return {
        "root": root,
        "table": table,
        "config": write_config(small_city, root / "train", "session-run"),
        "model": root / "distilled" / "model.pth",
    }


@pytest.fixture(scope="module")
def session(small_city, inputs):
    """Run every algorithm in one QGIS process, training last and loaded into the project like the dialog does."""
    root = inputs["root"]
    out = root / "out"
    out.mkdir()
    pois, districts, gpkg, parquet = (
        str(x) for x in (small_city.pois, small_city.districts, root / "emb.gpkg", root / "emb.parquet")
    )
    jobs = [
        ("tessellate", {"INPUT": districts, "RESOLUTION": 9, "OUTPUT": out / "cells.gpkg"}),
        ("tessellate", {"INPUT": small_city.demographics, "RESOLUTION": 8, "OUTPUT": out / "rc.gpkg"}),
        ("attach_embeddings", {"INPUT": pois, "EMBEDDINGS": gpkg, "OUTPUT": out / "a.gpkg"}),
        ("attach_embeddings", {"INPUT": pois, "EMBEDDINGS": parquet, "OUTPUT": out / "b.gpkg"}),
        ("attach_embeddings", {"INPUT": pois, "MODEL": inputs["model"], "OUTPUT": out / "m.gpkg"}),
        ("aggregate_embeddings", {"INPUT": districts, "EMBEDDINGS": gpkg, "OUTPUT": out / "g.gpkg"}),
        (
            "fit_lightgbm",
            {"INPUT": root / "cells.gpkg", "TARGET": "target", "BLOCK_RESOLUTION": 7, "OUTPUT": out / "p.gpkg"},
        ),
        ("embedding_raster", {"EMBEDDINGS": parquet, "OUTPUT_RGB": out / "rgb.tif"}),
        ("distil_encoder", {"EMBEDDINGS": parquet, "EPOCHS": 200, "OUTPUT": out / "distilled"}),
        ("attach_embeddings", {"INPUT": pois, "MODEL": out / "distilled" / "model.pth", "OUTPUT": out / "d.gpkg"}),
        ("train_embeddings", {"CONFIG": inputs["config"]}),
    ]
    jobs_file = root / "jobs.json"
    jobs_file.write_text(
        json.dumps(
            [
                {
                    "id": f"mobclip:{alg}",
                    "parameters": {k: str(v) for k, v in params.items()},
                    "load": alg == "train_embeddings",
                }
                for alg, params in jobs
            ]
        )
    )
    report_file = root / "report.json"
    run = subprocess.run(
        [sys.executable, str(HERE / "qgis_session.py"), str(jobs_file), str(report_file)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert run.returncode == 0, f"the QGIS session ended with {run.returncode}:\n{run.stderr[-3000:]}"
    return json.loads(report_file.read_text()), run


def test_every_algorithm_runs_in_one_qgis_session(session):
    report, _ = session
    failed = {j["id"]: j["error"] for j in report["jobs"] if "error" in j}
    assert not failed
    assert len(report["jobs"]) == 11


def test_qgis_keeps_its_own_gdal_geos_proj(session):
    """After every algorithm ran (training included), only QGIS's copies of the native libraries are mapped."""
    report, _ = session
    foreign = [p for p in report["libraries"] if not p.startswith(("/usr/lib/", "/lib/"))]
    assert not foreign, f"a second copy was loaded into QGIS: {foreign}"
    assert any("libgdal" in p for p in report["libraries"]) and any("libproj" in p for p in report["libraries"])
    assert not FORBIDDEN_MODULES & set(report["modules"]), FORBIDDEN_MODULES & set(report["modules"])


def test_training_adds_styled_layers_to_the_project(session, inputs):
    report, _ = session
    train = next(j for j in report["jobs"] if j["id"] == "mobclip:train_embeddings")["results"]
    assert Path(train["EMBEDDINGS"]).name == "embeddings.gpkg" and Path(train["PCA_RGB"]).exists()
    layers = {layer["name"]: layer for layer in report["layers"]}
    rgb = layers["MobCLIP PCA RGB (session-run)"]
    cells = layers["MobCLIP embeddings (session-run)"]
    assert rgb["renderer"] == "QgsMultiBandColorRenderer" and rgb["bands"] == [1, 2, 3]
    assert cells["renderer"] == "QgsSingleSymbolRenderer" and cells["fill_alpha"] == 0
    from mobclip_core.embeddings import read_embedding_table

    table = read_embedding_table(train["EMBEDDINGS"])
    assert len(table) > 100 and np.isfinite(table.to_numpy()).all()


def test_training_reports_progress_per_stage(session):
    from processing_algorithms.child import STAGE_TEXTS

    report, _ = session
    train = next(j for j in report["jobs"] if j["id"] == "mobclip:train_embeddings")
    progress = np.array(train["progress"])
    for lo, hi in ((0, 20), (20, 45), (45, 90), (90, 100.01)):  # dataset, LINE, train, export
        assert ((progress >= lo) & (progress < hi)).any(), (lo, hi, progress)
    assert np.all(np.diff(progress) >= -0.01)  # never goes back
    assert any("building region dataset" in line for line in train["info"])
    # each stage's name once (QGIS's dialog writes every progress text into its log: it was once per event)
    ours = [t for t in train["texts"] if t.startswith("MobCLIP")]  # QGIS adds "Loading resulting layers"
    assert ours == [f"MobCLIP: {STAGE_TEXTS[s]}" for s in ("dataset", "line", "train", "export")], train["texts"]
    assert ours[0] == "MobCLIP: building the region dataset (cells, mobility graph, modality features)"
    epochs = [line for line in train["info"] if " epoch " in line and "validation" in line]
    assert epochs and "training loss" in epochs[0] and "(best " in epochs[-1], train["info"]


def test_a_model_distilled_in_qgis_embeds_places_as_its_table_does(session, inputs):
    """*Distil a coordinate encoder*: a model folder that *Attach embeddings* takes as its distilled model, whose
    values at the POIs follow the table's (looked up by cell in a.gpkg), with progress and its R2 in the log."""
    from qgis.core import QgsVectorLayer

    report, _ = session
    distil = next(j for j in report["jobs"] if j["id"] == "mobclip:distil_encoder")
    folder = Path(distil["results"]["OUTPUT"])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pth"]
    assert distil["results"]["MODEL"] == str(folder / "model.pth")
    r2 = float(distil["results"]["R2"])  # the report holds results as text
    assert 0.5 < r2 <= 1.0, distil["results"]
    assert any(f"embeddings at its cells with R2 {r2:.3f} (1 = exactly)" in line for line in distil["info"])
    assert any("as the distilled model in 'Attach embeddings to features'" in line for line in distil["info"])
    assert "MobCLIP: distilling a coordinate encoder" in distil["texts"]
    progress = np.array(distil["progress"])
    assert len(progress) > 3 and np.all(np.diff(progress) >= -0.01) and progress[-1] == 100

    def values(name: str) -> np.ndarray:
        layer = QgsVectorLayer(str(inputs["root"] / "out" / name), name, "ogr")
        cols = [i for i, f in enumerate(layer.fields()) if f.name().startswith("emb_")]
        rows = [[f.attributes()[i] for i in cols] for f in layer.getFeatures()]
        return np.array([[np.nan if v is None else float(v) for v in r] for r in rows])

    looked_up, distilled = values("a.gpkg"), values("d.gpkg")
    assert looked_up.shape == distilled.shape
    both = np.isfinite(looked_up).all(1)
    assert both.sum() > 20
    r = [np.corrcoef(looked_up[both, k], distilled[both, k])[0, 1] for k in range(looked_up.shape[1])]
    print("distilled vs looked-up, correlation per dimension:", np.round(r, 3))
    assert np.median(r) > 0.7


def test_a_distilled_model_that_does_not_fit_is_reported(qgis_app, inputs, tmp_path):
    """Two epochs give a model no better than a constant: the run says so (it reported success with R2 -0.004)."""
    import processing
    from qgis.core import QgsProcessingContext
    from qgis_support import LogFeedback

    feedback = LogFeedback()
    params = {"EMBEDDINGS": str(inputs["root"] / "emb.parquet"), "EPOCHS": 2, "OUTPUT": str(tmp_path / "model")}
    result = processing.run("mobclip:distil_encoder", params, feedback=feedback, context=QgsProcessingContext())
    assert result["R2"] < 0.8
    poor = [w for w in feedback.warnings if f"reproduces the table only with R2 {result['R2']:.3f}" in w]
    assert poor and "more epochs" in poor[0], feedback.warnings
    folder = tmp_path / "model"
    assert result["OUTPUT"] == str(folder) and (folder / "model.pth").exists()  # kept: the user may still use it
    assert not [w for w in feedback.warnings if "temporary folder" in w]
    feedback = LogFeedback()  # the dialog's default output: a temporary folder, which QGIS deletes on exit
    params = {"EMBEDDINGS": str(inputs["root"] / "emb.parquet"), "EPOCHS": 2, "OUTPUT": "TEMPORARY_OUTPUT"}
    result = processing.run("mobclip:distil_encoder", params, feedback=feedback, context=QgsProcessingContext())
    assert Path(result["MODEL"]).exists()
    assert [w for w in feedback.warnings if f"saved in a temporary folder ({result['OUTPUT']})" in w], feedback.warnings
    from mobclip_core.encoders.distilled import DistilConfig
    from processing_algorithms.distil_encoder import DEFAULT_EPOCHS

    assert DEFAULT_EPOCHS == DistilConfig.epochs  # the dialog's default is the library's


def test_cancel_stops_distillation_within_seconds_and_writes_nothing(qgis_app, inputs, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    cancelled_at = []

    def on_progress(p: float) -> None:
        if p >= 2 and not cancelled_at:  # some epochs done
            cancelled_at.append(time.monotonic())
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    out = tmp_path / "model"
    with pytest.raises(QgsProcessingException, match="Cancelled by the user; nothing new was written"):
        processing.run(
            "mobclip:distil_encoder",
            {"EMBEDDINGS": str(inputs["root"] / "emb.parquet"), "OUTPUT": str(out)},
            feedback=feedback,
            context=QgsProcessingContext(),
        )
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 10
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cancel_stops_training_within_seconds_and_leaves_nothing_half_written(qgis_app, session, small_city, tmp_path):
    import shutil

    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    config = write_config(small_city, tmp_path, "cancelled-run")
    trained = Path(
        next(j for j in session[0]["jobs"] if j["id"] == "mobclip:train_embeddings")["results"]["OUTPUT_FOLDER"]
    )
    shutil.copytree(trained / "dataset", tmp_path / "cancelled-run" / "dataset")  # same inputs: LINE starts at once
    feedback = QgsProcessingFeedback()
    cancelled_at = []

    def on_progress(p: float) -> None:
        if p >= 20 and not cancelled_at:  # LINE has started (after the dataset stage)
            cancelled_at.append(time.monotonic())
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    with pytest.raises(QgsProcessingException) as stopped:
        processing.run(
            "mobclip:train_embeddings", {"CONFIG": str(config)}, feedback=feedback, context=QgsProcessingContext()
        )
    assert str(stopped.value) == KEPT_ON_CANCEL  # stopped in LINE: the dataset stays, nothing else was written
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 10
    output = tmp_path / "cancelled-run"
    leftovers = [p.name for p in output.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    assert not leftovers
    assert not list(output.glob("embeddings*"))
    assert not [t for t in threading.enumerate() if t.name.startswith("mobclip")]


def _run_and_cancel_at(config: Path, progress_at: float) -> tuple[str, list[float]]:
    """train_embeddings through processing.run, Cancel pressed when the progress bar reaches ``progress_at``;
    returns the error message QGIS shows and the progress values seen."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    seen: list[float] = []

    def on_progress(p: float) -> None:
        seen.append(p)
        if p >= progress_at and not feedback.isCanceled():
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            "mobclip:train_embeddings", {"CONFIG": str(config)}, feedback=feedback, context=QgsProcessingContext()
        )
    return str(err.value), seen


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _earlier_run(session, small_city, folder: Path, name: str) -> Path:
    """A config whose output folder already holds a finished run (the session's): a re-run over earlier results."""
    import shutil

    config = write_config(small_city, folder, name)
    trained = Path(
        next(j for j in session[0]["jobs"] if j["id"] == "mobclip:train_embeddings")["results"]["OUTPUT_FOLDER"]
    )
    shutil.copytree(trained, folder / name)  # its dataset is reused: the run goes straight to LINE
    return config


def test_cancel_during_the_export_keeps_the_earlier_outputs_and_says_so(qgis_app, session, small_city, tmp_path):
    """Cancel once the export has started (progress 90 %): the run's output transaction unwinds, the earlier run's
    files stay byte for byte, nothing half-written is left, and the message says so (no traceback)."""
    config = _earlier_run(session, small_city, tmp_path, "export-cancel")
    output = tmp_path / "export-cancel"
    before = _files(output)
    message, seen = _run_and_cancel_at(config, 90.0)
    assert max(seen) >= 90 and max(seen) < 100, seen  # cancelled in the export stage
    assert message == KEPT_ON_CANCEL
    after = _files(output)
    # training's resume state (checkpoint/last.pt) is saved during the epochs, before the export: not a run output
    assert {k: v for k, v in after.items() if k != "checkpoint/last.pt"} == {
        k: v for k, v in before.items() if k != "checkpoint/last.pt"
    }
    assert "embeddings.gpkg" in after and "embeddings_pca_rgb.tif" in after  # the earlier run's, untouched
    assert "Traceback" not in message


def test_cancel_after_the_outputs_are_complete_says_they_are(qgis_app, session, small_city, tmp_path):
    """Cancel pressed when the export has just finished (100 %): the outputs are complete, and the message says so
    instead of claiming that nothing was written."""
    from mobclip_core.embeddings import read_embedding_table

    config = _earlier_run(session, small_city, tmp_path, "late-cancel")
    output = tmp_path / "late-cancel"
    started = time.time_ns()
    message, seen = _run_and_cancel_at(config, 100.0)
    assert max(seen) == 100, seen
    names = ("embeddings.gpkg", "embeddings.parquet", "embeddings_pca_rgb.tif", "config.json")
    if message == KEPT_ON_CANCEL:
        # the Cancel landed between the last progress event and the commit: then that message must be true
        for name in names:
            assert (output / name).stat().st_mtime_ns < started, name  # the earlier run's files, untouched
    else:
        assert message.startswith("Cancelled by the user after the run had finished writing: its outputs in "), message
        assert str(output) in message and "are complete" in message
        for name in names:
            assert (output / name).stat().st_mtime_ns >= started, name  # the new run's files, all of them
    gpkg, parquet = (read_embedding_table(output / f"embeddings.{ext}") for ext in ("gpkg", "parquet"))
    assert len(gpkg) == len(parquet) > 100
    assert not [p.name for p in output.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]


def test_train_from_qgis_process(qgis_process_env, inputs):
    from test_qgis_process import qgis_process

    out = qgis_process(
        qgis_process_env, "--json", "run", "mobclip:train_embeddings", "--", f"CONFIG={inputs['config']}"
    )
    results = json.loads(out.stdout)["results"]
    assert Path(results["EMBEDDINGS"]).exists() and Path(results["PCA_RGB"]).exists()
    assert "dataset" in out.stderr + out.stdout or "reusing region dataset" in out.stdout + out.stderr


@pytest.fixture(scope="module")
def qgis_app(small_city):
    from qgis_support import start_qgis

    return start_qgis()


@pytest.fixture(scope="module")
def qgis_process_env(tmp_path_factory):
    from test_qgis_process import make_env

    return make_env(tmp_path_factory)


def test_a_second_run_into_the_same_folder_shows_its_own_cells(qgis_app, tmp_path):
    """QGIS loads a result by reusing the project's layer of the same file, if there is one: a second training into
    an output folder (another region, the same config retrained) showed the earlier run's cells and image under the
    new run's name. The post-processors make the layer read the file as it now is. Run through QGIS's own result
    handling (``handleAlgorithmResults``, what the dialog and runAndLoadResults call)."""
    import geopandas as gpd
    import rasterio
    import shapely
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject, QgsRasterLayer, QgsVectorLayer
    from rasterio.transform import from_origin

    from processing_algorithms.train_embeddings import CellOutlines, RgbAsIs, load_styled

    gpkg, tif = str(tmp_path / "embeddings.gpkg"), str(tmp_path / "embeddings_pca_rgb.tif")

    def write_run(n: int, x0: float) -> None:  # replaced whole, as the export does
        cells = gpd.GeoDataFrame(
            {"h3_cell": [str(i) for i in range(n)]},
            geometry=[shapely.box(x0 + i, 0, x0 + i + 0.5, 0.5) for i in range(n)],
            crs=4326,
        )
        cells.to_file(gpkg + ".new.gpkg", layer="embeddings")
        os.replace(gpkg + ".new.gpkg", gpkg)
        profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": "EPSG:4326"}
        with rasterio.open(
            tif + ".new.tif", "w", width=n, height=2, transform=from_origin(x0, 1, 1, 0.5), **profile
        ) as dst:
            dst.write(np.full((3, 2, n), 9, np.uint8))
        os.replace(tif + ".new.tif", tif)

    project = QgsProject.instance()
    write_run(5, 0.0)
    earlier = [project.addMapLayer(QgsVectorLayer(gpkg, "earlier", "ogr")), project.addMapLayer(QgsRasterLayer(tif))]
    write_run(9, 100.0)
    context = QgsProcessingContext()
    context.setProject(project)
    load_styled(context, gpkg, "MobCLIP embeddings (second)", "EMBEDDINGS", CellOutlines())
    load_styled(context, tif, "MobCLIP PCA RGB (second)", "PCA_RGB", RgbAsIs())
    alg = QgsApplication.processingRegistry().algorithmById("mobclip:train_embeddings")
    assert handleAlgorithmResults(alg, context, showResults=False)
    cells = project.mapLayersByName("MobCLIP embeddings (second)")[0]
    rgb = project.mapLayersByName("MobCLIP PCA RGB (second)")[0]
    assert cells.featureCount() == 9 and cells.extent().xMinimum() == pytest.approx(100.0)
    assert rgb.width() == 9 and rgb.extent().xMinimum() == pytest.approx(100.0)
    for layer in earlier:
        project.removeMapLayer(layer.id())
