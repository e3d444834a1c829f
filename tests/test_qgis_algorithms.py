"""The plugin's algorithms in real QGIS 3.22 through processing.run, on the demo region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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
    return pd.DataFrame([f.attributes() for f in layer.getFeatures()], columns=names)


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
    }
    for alg in provider.algorithms():
        assert len(alg.shortHelpString()) > 80


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


def test_attach_from_distilled_checkpoint_and_wrong_shape(qgis, small_city, tmp_path):
    import torch
    from qgis.core import QgsProcessingException

    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
    from mobclip_core.grid import cell_centroids

    lon, lat = cell_centroids(small_city.cells)
    teacher = np.c_[np.eye(5)[small_city.zone], lon - lon.mean()]
    enc = DistilledEncoder(DistilConfig(degree=6, hidden=32, layers=2, epochs=20)).fit(lon, lat, teacher)
    enc.save(tmp_path / "distilled")
    out = run(
        "attach_embeddings",
        {
            "INPUT": str(small_city.pois),
            "MODEL": str(tmp_path / "distilled" / "model.pth"),
            "OUTPUT": str(tmp_path / "pois_distilled.gpkg"),
        },
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

    _, table = embedding_file
    gdf = embeddings_geodataframe(table).reset_index()
    noise = np.random.default_rng(2).normal(scale=0.1, size=len(gdf))
    gdf["night"] = 2.0 * gdf["emb_5"] + np.sign(gdf["emb_6"]) + noise
    gdf["shuffled"] = np.random.default_rng(1).permutation(gdf["night"].to_numpy())
    gdf["label"] = "x"
    path = tmp_path_factory.mktemp("cells") / "cells.gpkg"
    gpd.GeoDataFrame(gdf, crs=4326).to_file(path, driver="GPKG")
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
    assert not (tmp_path / "never.gpkg").exists() or _feature_count(tmp_path / "never.gpkg") < 10000


def _feature_count(path):
    from qgis.core import QgsVectorLayer

    return QgsVectorLayer(str(path)).featureCount()


def test_embedding_raster(qgis, embedding_file, tmp_path):
    import rasterio

    res = run(
        "embedding_raster",
        {
            "EMBEDDINGS": str(embedding_file[0]),
            "OUTPUT": str(tmp_path / "b.tif"),
            "OUTPUT_RGB": str(tmp_path / "rgb.tif"),
        },
    )
    with rasterio.open(res["OUTPUT_RGB"]) as src:
        assert src.count == 3 and src.dtypes[0] == "uint8" and src.crs.to_epsg() == 4326
    with rasterio.open(res["OUTPUT"]) as src:
        assert src.count == embedding_file[1].shape[1]
