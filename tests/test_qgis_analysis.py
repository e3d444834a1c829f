"""The analysis algorithms in real QGIS 3.22 on the demo city, against its planted zones.

Embeddings: a stand-in "model" of a planted city, so that no training runs in the suite. Each zone type has a
direction in a 16-d space; each cell gets its zone's direction plus noise that belongs to the city's data (0.45 per
dimension); a model seed then rotates the whole space at random and adds its own, smaller noise (0.15). So the
planted zones are recoverable but not trivially, two seeds differ by a rotation plus a little noise (as two trainings
of one model do), and another planted city (same cells, other zone patches) differs where its zones differ.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from planted import DIM, deep_cell, planted_embeddings
from qgis_support import LogFeedback

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def qgis(small_city):
    from qgis_support import start_qgis

    return start_qgis()


@pytest.fixture(scope="module")
def tables(small_city, tmp_path_factory):
    from mobclip_core.export import write_embeddings

    root = tmp_path_factory.mktemp("analysis")
    paths = {}
    for name, seed in (("seed0", 0), ("seed1", 1)):
        paths[name] = write_embeddings(planted_embeddings(small_city, 3, seed), root / f"{name}.gpkg")
    return root, paths


@pytest.fixture(scope="module")
def other_city(small_city, tmp_path_factory):
    """Another planted city on the same cells (another seed of the generator: other zone patches)."""
    from mobclip_core.demo import make_demo_city

    city = make_demo_city(
        tmp_path_factory.mktemp("city_b"), seed=4, rings=8, n_agents=50, n_weeks=1, n_districts=4, imagery_pixel_m=200.0
    )
    assert np.array_equal(city.cells, small_city.cells) and (city.zone != small_city.zone).mean() > 0.5
    return city


def run(alg, params, feedback=None):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())  # layers given by id (a selection) are looked up in the project
    return processing.run(f"mobclip:{alg}", params, context=context, feedback=feedback or QgsProcessingFeedback())


def frame(layer_or_path) -> pd.DataFrame:
    from qgis.core import QgsVectorLayer

    layer = layer_or_path if isinstance(layer_or_path, QgsVectorLayer) else QgsVectorLayer(str(layer_or_path))
    names = [f.name() for f in layer.fields()]
    rows = [[None if v == None else v for v in f.attributes()] for f in layer.getFeatures()]  # noqa: E711 - QGIS NULL
    return pd.DataFrame(rows, columns=names)


@pytest.mark.parametrize("zone", ["industrial", "campus", "park"])
def test_similar_places_to_a_zone_cell_are_mostly_that_zone(qgis, small_city, tables, zone, tmp_path):
    from osgeo import gdal

    _, paths = tables
    ref = deep_cell(small_city, zone)
    n = min(15, int((small_city.zone_labels == zone).sum()) - 1)
    res = run(
        "similar_places",
        {
            "EMBEDDINGS": str(paths["seed0"]),
            "REFERENCE_CELLS": ref,
            "TOP_N": n,
            "OUTPUT": str(tmp_path / "sim.gpkg"),
            "OUTPUT_TOP": "memory:",
            "OUTPUT_RASTER": str(tmp_path / "sim.tif"),
        },
    )
    top = frame(res["OUTPUT_TOP"])
    assert top["rank"].tolist() == list(range(1, n + 1)) and ref not in set(top.h3_cell)
    share = (small_city.zone_labels.reindex(top.h3_cell) == zone).mean()
    assert share >= 0.8, (zone, share)  # the zone's share of the city is 0.04-0.22
    sim = frame(res["OUTPUT"]).set_index("h3_cell")
    assert sim.loc[ref, "is_reference"] and sim.loc[ref, "similarity"] == pytest.approx(1.0, abs=1e-5)
    assert sim["rank"].isna().sum() == 1
    ds = gdal.Open(res["OUTPUT_RASTER"])
    assert ds.GetRasterBand(1).GetDescription() == "similarity" and np.nanmax(ds.ReadAsArray()) == pytest.approx(
        1, 1e-5
    )


def test_similar_places_from_a_point_a_selection_and_a_distilled_model(qgis, small_city, tables, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject, QgsVectorLayer

    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
    from mobclip_core.grid import cell_centroids, strings_to_cells

    _, paths = tables
    ref = deep_cell(small_city, "industrial")
    lon, lat = cell_centroids(strings_to_cells(np.array([ref])))
    by_point = run(
        "similar_places",
        {
            "EMBEDDINGS": str(paths["seed0"]),
            "REFERENCE_POINT": f"{lon[0]},{lat[0]} [EPSG:4326]",
            "OUTPUT": "memory:",
            "OUTPUT_TOP": "memory:",
        },
    )
    by_cell = run(
        "similar_places",
        {"EMBEDDINGS": str(paths["seed0"]), "REFERENCE_CELLS": ref, "OUTPUT": "memory:", "OUTPUT_TOP": "memory:"},
    )
    pd.testing.assert_frame_equal(frame(by_point["OUTPUT_TOP"]), frame(by_cell["OUTPUT_TOP"]))
    # polygons with embedding fields (aggregated districts), the reference selected on the layer itself
    processing.run(
        "mobclip:aggregate_embeddings",
        {"INPUT": str(small_city.districts), "EMBEDDINGS": str(paths["seed0"]), "OUTPUT": str(tmp_path / "d.gpkg")},
    )
    districts = QgsVectorLayer(str(tmp_path / "d.gpkg"), "districts with embeddings")
    QgsProject.instance().addMapLayer(districts)
    try:
        districts.selectByIds([2])
        res = run(
            "similar_places",
            {
                "EMBEDDINGS_LAYER": districts,
                "REFERENCE": QgsProcessingFeatureSourceDefinition(districts.id(), True),
                "TOP_N": 3,
                "OUTPUT": str(tmp_path / "sim.gpkg"),
                "OUTPUT_TOP": str(tmp_path / "top.gpkg"),
            },
        )
        out = frame(res["OUTPUT"])
        chosen = out[out.is_reference]
        assert len(out) == districts.featureCount() and len(chosen) == 1
        assert chosen.district.iloc[0] == districts.getFeature(2)["district"]
        top = frame(res["OUTPUT_TOP"])  # a GeoPackage lists rows by its key: the ranks must be that order
        assert list(top["rank"]) == [1, 2, 3] and "district" in top.columns and "feature_fid" in top.columns
        assert top.similarity.is_monotonic_decreasing
        assert list(top.fid) == [1, 2, 3]
        # run again on that output (it has rank and similarity fields, and a field after them): the ranked table's
        # columns stay aligned with their values
        import geopandas as gpd

        from mobclip_core.geofile import write_geodataframe

        earlier = gpd.read_file(tmp_path / "sim.gpkg")
        write_geodataframe(earlier.assign(after=np.arange(len(earlier)) + 100.0), tmp_path / "sim2.gpkg")
        again = run(
            "similar_places",
            {"EMBEDDINGS": str(tmp_path / "sim2.gpkg"), "REFERENCE_POINT": f"{lon[0]},{lat[0]} [EPSG:4326]"}
            | {"TOP_N": 3, "OUTPUT": "memory:", "OUTPUT_TOP": "memory:"},
        )
        top2 = frame(again["OUTPUT_TOP"])
        assert list(top2.columns).count("rank") == 1 and list(top2["rank"]) == [1, 2, 3]
        after = earlier.assign(after=np.arange(len(earlier)) + 100.0).set_index("district")["after"]
        np.testing.assert_allclose(top2["after"], after.reindex(top2.district))
        districts.selectAll()  # every place a reference: nothing left to rank, and the log says so
        warned = LogFeedback()
        params = {"EMBEDDINGS_LAYER": districts, "OUTPUT": "memory:", "OUTPUT_TOP": "memory:"}
        params["REFERENCE"] = QgsProcessingFeatureSourceDefinition(districts.id(), True)
        everything = run("similar_places", params, warned)
        assert frame(everything["OUTPUT_TOP"]).empty
        n = districts.featureCount()
        assert warned.warnings == [
            f"All {n} places with an embedding are references: none is left to rank. Choose fewer references"
        ]
    finally:
        QgsProject.instance().removeMapLayer(districts.id())
    # a distilled model over an extent (the child process embeds the cells)
    teacher = planted_embeddings(small_city, 3, 0)
    clon, clat = cell_centroids(small_city.cells)
    enc = DistilledEncoder(DistilConfig(degree=8, hidden=64, layers=2, epochs=60)).fit(clon, clat, teacher.to_numpy())
    enc.save(tmp_path / "distilled")
    extent = f"{clon.min()},{clon.max()},{clat.min()},{clat.max()} [EPSG:4326]"
    res = run(
        "similar_places",
        {
            "MODEL": str(tmp_path / "distilled" / "model.pth"),
            "EXTENT": extent,
            "RESOLUTION": 9,
            "REFERENCE_CELLS": ref,
            "TOP_N": 10,
            "OUTPUT": "memory:",
            "OUTPUT_TOP": "memory:",
        },
    )
    top = frame(res["OUTPUT_TOP"])
    assert (small_city.zone_labels.reindex(top.h3_cell) == "industrial").mean() >= 0.7


def test_similar_places_over_an_extent_past_the_model_area_warns_or_gives_null(qgis, small_city, tmp_path):
    """An extent reaching 15 km east of the city a distilled model was trained on: the warning names how many cells
    lie outside its area, and 'Write NULL' leaves exactly those cells without similarity or rank."""
    import h3

    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
    from mobclip_core.grid import cell_centroids, strings_to_cells

    clon, clat = cell_centroids(small_city.cells)
    teacher = planted_embeddings(small_city, 3, 0).to_numpy()
    enc = DistilledEncoder(DistilConfig(degree=4, hidden=16, layers=2, epochs=3)).fit(clon, clat, teacher)
    enc.save(tmp_path / "distilled")
    params = {
        "MODEL": str(tmp_path / "distilled" / "model.pth"),
        "EXTENT": f"{clon.min()},{clon.max() + 0.2},{clat.min()},{clat.max()} [EPSG:4326]",
        "RESOLUTION": 8,
        "REFERENCE_CELLS": h3.latlng_to_cell(float(clat.mean()), float(clon.mean()), 8),
        "OUTPUT": "memory:",
        "OUTPUT_TOP": "memory:",
    }
    warned = LogFeedback()
    cells = frame(run("similar_places", params, warned)["OUTPUT"])
    outside = enc.outside_extent(*cell_centroids(strings_to_cells(cells.h3_cell.to_numpy())))
    assert 0 < outside.sum() < len(cells) and cells.similarity.notna().all()
    expected = f"{int(outside.sum())} of {len(cells)} locations lie outside the area"
    assert [w for w in warned.warnings if w.startswith(expected)], (expected, warned.warnings)
    nulls = LogFeedback()
    res = run("similar_places", {**params, "OUTSIDE": 1}, nulls)
    assert [w for w in nulls.warnings if w.startswith(expected) and "left empty (NULL)" in w], nulls.warnings
    features = {f["h3_cell"]: f for f in res["OUTPUT"].getFeatures()}
    empty = np.array([features[c]["similarity"] == None for c in cells.h3_cell])  # noqa: E711 - QGIS NULL
    np.testing.assert_array_equal(empty, outside)
    assert all(features[c]["rank"] == None for c in cells.h3_cell[outside])  # noqa: E711
    assert not set(frame(res["OUTPUT_TOP"]).h3_cell) & set(cells.h3_cell[outside])


def test_a_multisurface_reference_layer_is_read_as_its_polygons(qgis, small_city, tables):
    """Reference polygons stored as MultiSurface (ArcGIS exports) select the same reference cells as plain ones."""
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    from mobclip_core.grid import cell_centroids

    _, paths = tables
    lon, lat = cell_centroids(small_city.cells[:1])
    x0, y0, d = float(lon[0]) - 0.004, float(lat[0]) - 0.003, 0.008
    ring = f"({x0} {y0}, {x0 + d} {y0}, {x0 + d} {y0 + d}, {x0} {y0 + d}, {x0} {y0})"
    chosen = {}
    for kind, wkt in (("Polygon", f"POLYGON({ring})"), ("MultiSurface", f"MULTISURFACE(({ring}))")):
        layer = QgsVectorLayer(f"{kind}?crs=EPSG:4326", "reference", "memory")
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        layer.dataProvider().addFeatures([feature])
        result = run("similar_places", {"EMBEDDINGS": str(paths["seed0"]), "REFERENCE": layer, "OUTPUT": "memory:"})
        out = frame(result["OUTPUT"])
        chosen[kind] = set(out[out.is_reference.astype(bool)].h3_cell)
    assert chosen["Polygon"] and chosen["MultiSurface"] == chosen["Polygon"]


@pytest.mark.parametrize(
    "alg, raster, params",
    [
        ("embedding_raster", "OUTPUT", {"OUTPUT_RGB": "rgb.tif"}),
        ("embedding_change", "OUTPUT_RASTER", {"AFTER": "seed1", "OUTPUT": "memory:"}),
        ("functional_zones", "OUTPUT_RASTER", {"METHOD": 2, "K": 3, "OUTPUT": "memory:", "OUTPUT_PROFILES": "memory:"}),
        ("similar_places", "OUTPUT_RASTER", {"REFERENCE_POINT": "first cell", "OUTPUT": "memory:"}),
    ],
)
def test_a_blank_optional_raster_in_a_batch_row_is_skipped(qgis, small_city, tables, tmp_path, alg, raster, params):
    """The batch dialog passes a blank optional output as an empty output definition: it was listed as a layer
    to load that never existed ("The following layers were not correctly generated" in red after a good run)."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingOutputLayerDefinition, QgsProject

    from mobclip_core.grid import cell_centroids

    _, paths = tables
    lon, lat = cell_centroids(small_city.cells[:1])
    values = {"rgb.tif": str(tmp_path / "rgb.tif"), "seed1": str(paths["seed1"])}
    values["first cell"] = f"{lon[0]},{lat[0]} [EPSG:4326]"
    given = {k: values.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    blank = QgsProcessingOutputLayerDefinition("", QgsProject.instance())  # "Load layers on completion" ticked
    table = {"BEFORE" if alg == "embedding_change" else "EMBEDDINGS": str(paths["seed0"])}
    full = {**table, **given, raster: blank}
    results = processing.run(f"mobclip:{alg}", full, context=context, feedback=QgsProcessingFeedback())
    assert raster not in results or not results[raster]
    loaded = [(path, d.name) for path, d in context.layersToLoadOnCompletion().items()]
    assert all(path for path, _ in loaded), loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == (["rgb.tif"] if alg == "embedding_raster" else [])


def test_zones_find_the_region_dataset_beside_a_trained_runs_embeddings(qgis, small_dataset, tables, tmp_path):
    """A training run writes <output>/embeddings.gpkg and <output>/dataset: with the dataset left empty, the zones
    are described from the one beside the embeddings (an analyst's zones were labelled 'Zone 1 (2638 places)')."""
    import shutil

    from qgis_support import LogFeedback

    _, paths = tables
    run_dir = tmp_path / "output"
    run_dir.mkdir()
    shutil.copy(paths["seed0"], run_dir / "embeddings.gpkg")
    small_dataset.save(run_dir / "dataset")
    common = {"EMBEDDINGS": str(run_dir / "embeddings.gpkg"), "METHOD": 2, "K": 5}
    found = {}
    for name, extra in (("beside", {}), ("given", {"DATASET": str(run_dir / "dataset")})):
        log = LogFeedback()
        out = {"OUTPUT": str(tmp_path / f"{name}.gpkg"), "OUTPUT_PROFILES": str(tmp_path / f"{name}_p.gpkg")}
        run("functional_zones", {**common, **extra, **out}, log)
        found[name] = (frame(out["OUTPUT_PROFILES"]).label.tolist(), log.lines)
    assert found["beside"][0] == found["given"][0]
    assert not any(label.startswith("Zone 1 (") for label in found["beside"][0]), found["beside"][0]
    # the log gives each zone's size even when the labels describe the zones instead
    sizes = [re.search(r"\((\d+) places\)$", line) for line in found["beside"][1] if line.startswith("Zone ")]
    assert len(sizes) == 5 and all(sizes), found["beside"][1]
    assert sum(int(m.group(1)) for m in sizes) == len(frame(tmp_path / "beside.gpkg"))
    expected = f"Zones described with the region dataset beside the embeddings: {run_dir / 'dataset'}"
    assert expected in found["beside"][1] and expected not in found["given"][1]


def test_zones_match_the_planted_zones_with_labels_from_the_dataset(qgis, small_city, small_dataset, tables, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsVectorLayer
    from sklearn.metrics import adjusted_rand_score

    _, paths = tables
    dataset_dir = tmp_path / "dataset"
    small_dataset.save(dataset_dir)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    res = processing.runAndLoadResults(
        "mobclip:functional_zones",
        {
            "EMBEDDINGS": str(paths["seed0"]),
            "METHOD": 2,
            "K": 5,
            "DATASET": str(dataset_dir),
            "POIS": str(small_city.pois),
            "POI_CATEGORY": "category",
            "OUTPUT": str(tmp_path / "zones.gpkg"),
            "OUTPUT_PROFILES": str(tmp_path / "profiles.gpkg"),
            "OUTPUT_RASTER": str(tmp_path / "zones.tif"),
        },
        feedback=QgsProcessingFeedback(),
        context=context,
    )
    try:
        zones = frame(str(tmp_path / "zones.gpkg")).set_index("h3_cell")
        planted = small_city.zone_labels.reindex(zones.index)
        ari = adjusted_rand_score(planted, zones.zone)
        assert ari > 0.5, ari  # chance is 0, a perfect match 1 (the commercial zone has only 5 cells)
        profiles = frame(str(tmp_path / "profiles.gpkg")).set_index("zone")
        assert res["ZONES"] == 5 and list(profiles.index) == [1, 2, 3, 4, 5]
        # each zone is named by the POI categories planted in the zone type most of its cells belong to
        signature = {
            "residential": ("bakeries", "schools", "pharmacies", "supermarkets", "hairdressers"),
            "commercial": ("restaurants", "banks", "clothing stores", "cafes", "hotels", "cinemas"),
            "industrial": ("warehouses", "factories", "car repairs", "truck depots"),
            "park": ("playgrounds", "sports fields", "kiosks"),
            "campus": ("libraries", "university buildings", "student housings", "cafes", "bookshops"),
        }
        named = 0
        for zone_id, label in profiles.label.items():
            majority = planted[zones.zone == zone_id].mode()[0]
            if "many " in label:
                named += 1
                assert any(word in label for word in signature[majority]), (majority, label)
        assert named >= 4, profiles.label.tolist()
        campus = zones.zone[planted == "campus"].mode()[0]
        assert "young" in profiles.loc[campus, "label"], profiles.loc[campus, "label"]
        assert (zones.zone_label == zones.zone.map(profiles.label)).all()
        # the loaded layer is styled one colour per zone with the labels in the legend
        loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)]
        renderer = next(lyr.renderer() for lyr in loaded if lyr.source().startswith(str(tmp_path / "zones.gpkg")))
        assert type(renderer).__name__ == "QgsCategorizedSymbolRenderer" and renderer.classAttribute() == "zone"
        assert sorted(c.label() for c in renderer.categories()) == sorted(profiles.label)
        assert len({c.symbol().color().name() for c in renderer.categories()}) == 5
        raster = QgsRasterLayer(str(tmp_path / "zones.tif"))
        assert raster.isValid() and raster.dataProvider().bandStatistics(1).maximumValue == 5
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_auto_k_and_hdbscan_on_the_planted_city(qgis, small_city, tables):
    from sklearn.metrics import adjusted_rand_score

    _, paths = tables
    auto = run(
        "functional_zones",
        {"EMBEDDINGS": str(paths["seed0"]), "METHOD": 0, "K_MAX": 8, "OUTPUT": "memory:", "OUTPUT_PROFILES": "memory:"},
    )
    suggested = frame(auto["OUTPUT"]).set_index("h3_cell")
    assert 2 <= auto["ZONES"] <= 8 and suggested.zone.nunique() == auto["ZONES"]
    assert adjusted_rand_score(small_city.zone_labels.reindex(suggested.index), suggested.zone) > 0.3  # chance: 0
    dense = run(
        "functional_zones",
        {"EMBEDDINGS": str(paths["seed0"]), "METHOD": 3, "OUTPUT": "memory:", "OUTPUT_PROFILES": "memory:"},
    )
    out = frame(dense["OUTPUT"]).set_index("h3_cell")
    kept = out.zone > 0
    assert kept.mean() > 0.6
    assert adjusted_rand_score(small_city.zone_labels.reindex(out.index)[kept], out.zone[kept]) > 0.6
    assert set(out.zone_label[~kept]) <= {"No zone"}


def planted_polygons(city, path) -> pd.Series:
    """Polygons that each hold the cells of one planted zone under one res-8 parent (about 7 cells), written to
    ``path`` in UTM with a 'pid' field; returns each polygon's planted zone by pid."""
    import geopandas as gpd

    from mobclip_core.demo import ZONES
    from mobclip_core.grid import cells_to_polygons, parent_cells

    cells = gpd.GeoDataFrame(
        {"planted": np.asarray(ZONES)[city.zone], "parent": parent_cells(city.cells, 8)},
        geometry=cells_to_polygons(city.cells),
        crs=4326,
    )
    polygons = cells.dissolve(by=["planted", "parent"]).reset_index().drop(columns="parent")
    polygons.insert(0, "pid", range(len(polygons)))
    polygons.to_crs(polygons.estimate_utm_crs()).to_file(path)
    return polygons.set_index("pid")["planted"]


def test_zones_on_aggregated_polygons_match_the_planted_zones(qgis, small_city, tables, tmp_path):
    """Zones of polygons (not cells): the planted cell embeddings aggregated over polygons that each cover one
    planted zone, then k-means on the polygons' emb_ fields; the output keeps the polygons with a styled zone."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsVectorLayer
    from sklearn.metrics import adjusted_rand_score

    _, paths = tables
    planted = planted_polygons(small_city, tmp_path / "polygons.gpkg")
    processing.run(
        "mobclip:aggregate_embeddings",
        {
            "INPUT": str(tmp_path / "polygons.gpkg"),
            "EMBEDDINGS": str(paths["seed0"]),
            "OUTPUT": str(tmp_path / "areas.gpkg"),
        },
    )
    areas = QgsVectorLayer(str(tmp_path / "areas.gpkg"), "areas with embeddings")
    assert "h3_cell" not in areas.fields().names() and areas.featureCount() == len(planted)
    QgsProject.instance().addMapLayer(areas)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    try:
        res = processing.runAndLoadResults(
            "mobclip:functional_zones",
            {
                "EMBEDDINGS_LAYER": areas.id(),
                "METHOD": 2,
                "K": 5,
                "OUTPUT": str(tmp_path / "zones.gpkg"),
                "OUTPUT_PROFILES": "memory:",
            },
            feedback=QgsProcessingFeedback(),
            context=context,
        )
        zones = frame(str(tmp_path / "zones.gpkg")).set_index("pid")
        assert res["ZONES"] == 5 and sorted(zones.index) == sorted(planted.index)
        assert {"planted", "cell_count", "zone", "zone_label"} <= set(zones.columns)
        ari = adjusted_rand_score(planted.reindex(zones.index), zones.zone)
        assert ari > 0.6, ari  # chance is 0 (0.85 here): the polygons are means of up to 7 cells of one zone
        out = QgsVectorLayer(str(tmp_path / "zones.gpkg"))
        assert out.geometryType() == areas.geometryType() and out.crs() == areas.crs()
        loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsVectorLayer)]
        renderer = next(lyr.renderer() for lyr in loaded if lyr.source().startswith(str(tmp_path / "zones.gpkg")))
        assert type(renderer).__name__ == "QgsCategorizedSymbolRenderer" and renderer.classAttribute() == "zone"
        assert sorted(c.label() for c in renderer.categories()) == sorted(set(zones.zone_label))
        assert sorted(int(c.value()) for c in renderer.categories()) == [1, 2, 3, 4, 5]
    finally:
        QgsProject.instance().removeAllMapLayers()
    # the same polygons given as a file: read as the layer is, not refused for lacking h3_cell
    params = {"EMBEDDINGS": str(tmp_path / "areas.gpkg"), "METHOD": 2, "K": 5, "OUTPUT": str(tmp_path / "z2.gpkg")}
    processing.run("mobclip:functional_zones", {**params, "OUTPUT_PROFILES": "memory:"})
    again = frame(str(tmp_path / "z2.gpkg")).set_index("pid")
    assert (again.zone.reindex(zones.index) == zones.zone).all()
    # a prefix the file does not have is named as the problem (not "needs the cell table")
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="has no embedding fields \\(x_0, x_1, ...\\)"):
        processing.run("mobclip:functional_zones", {**params, "PREFIX": "x_", "OUTPUT_PROFILES": "memory:"})
    # a tool that needs the cell table says so, naming the file and what to give instead
    with pytest.raises(QgsProcessingException, match="areas.gpkg holds embeddings on its own features .* needs the"):
        processing.run(
            "mobclip:shared_pca_rgb",
            {"EMBEDDINGS": str(tmp_path / "areas.gpkg"), "OUTPUT_RGB": str(tmp_path / "a.tif")},
        )


def test_change_rotation_zero_seeds_small_cities_large(qgis, small_city, other_city, tables, tmp_path):
    from mobclip_core.export import write_embeddings

    root, paths = tables
    base = planted_embeddings(small_city, 3, 0)
    q, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(DIM, DIM)))
    write_embeddings(pd.DataFrame(base.to_numpy() @ q, index=base.index, columns=base.columns), root / "rot.parquet")
    write_embeddings(planted_embeddings(other_city, 4, 0), root / "other.gpkg")

    def change(after, **extra):
        return run(
            "embedding_change", {"BEFORE": str(paths["seed0"]), "AFTER": str(after), "OUTPUT": "memory:", **extra}
        )

    rotation = change(root / "rot.parquet", OUTPUT_RASTER=str(tmp_path / "c.tif"))
    seeds = change(paths["seed1"])
    cities = change(root / "other.gpkg")
    assert rotation["MEDIAN"] < 1e-4
    _assert_change_raster(rotation, small_city)
    assert 0.05 < seeds["MEDIAN"] < 0.5 * cities["MEDIAN"], (seeds["MEDIAN"], cities["MEDIAN"])
    per_cell = frame(cities["OUTPUT"]).set_index("h3_cell")["change"]
    assert len(per_cell) == small_city.cells.size and per_cell.median() == pytest.approx(cities["MEDIAN"])


def _assert_change_raster(result: dict, city) -> None:
    """The change raster holds each cell's change (~0 for a rotation) on the pixels whose centre is in a cell of the
    table, and nodata (NaN) everywhere else."""
    from osgeo import gdal

    from mobclip_core.grid import cells_to_strings, points_to_cells

    ds = gdal.Open(result["OUTPUT_RASTER"])
    band = ds.GetRasterBand(1)
    assert ds.RasterCount == 1 and np.isnan(band.GetNoDataValue())
    data = band.ReadAsArray()
    x0, px, _, y0, _, py = ds.GetGeoTransform()
    gx, gy = np.meshgrid(x0 + (np.arange(ds.RasterXSize) + 0.5) * px, y0 + (np.arange(ds.RasterYSize) + 0.5) * py)
    per_cell = frame(result["OUTPUT"]).set_index("h3_cell")["change"]
    pixel_cells = pd.Series(cells_to_strings(points_to_cells(gx.ravel(), gy.ravel(), 9)))
    expected = per_cell.reindex(pixel_cells).to_numpy().reshape(data.shape)
    inside = np.isfinite(expected)
    assert inside.sum() > 4 * len(city.cells) and (~inside).sum() > 0  # several pixels a cell, corners outside
    assert np.isnan(data[~inside]).all()
    np.testing.assert_allclose(data[inside], expected[inside], atol=1e-6)
    assert np.nanmax(data) < 1e-3  # a rotation changes nothing


def test_embedding_space_links_back_and_shared_scale_colours_alike(qgis, small_city, tables, tmp_path):
    from osgeo import gdal

    from mobclip_core.grid import cell_centroids, strings_to_cells
    from mobclip_core.rasterize import PcaColourScale

    _, paths = tables
    first = run(
        "shared_pca_rgb",
        {
            "EMBEDDINGS": str(paths["seed0"]),
            "OUTPUT_RGB": str(tmp_path / "a.tif"),
            "SCALE_OUT": str(tmp_path / "s.json"),
        },
    )
    assert first["SCALE_USED"] == str(tmp_path / "s.json")
    from mobclip_core.embeddings import read_embedding_table

    table = read_embedding_table(paths["seed0"])
    half = table.iloc[: len(table) // 2]
    from mobclip_core.export import write_embeddings

    write_embeddings(half, tmp_path / "half.gpkg")
    second = run(
        "shared_pca_rgb",
        {
            "EMBEDDINGS": str(tmp_path / "half.gpkg"),
            "SCALE": str(tmp_path / "s.json"),
            "OUTPUT_RGB": str(tmp_path / "b.tif"),
        },
    )
    from qgis.core import QgsProcessingFeedback

    progress = QgsProcessingFeedback()
    reached = []
    progress.progressChanged.connect(reached.append)
    own = run(
        "shared_pca_rgb", {"EMBEDDINGS": str(tmp_path / "half.gpkg"), "OUTPUT_RGB": str(tmp_path / "own.tif")}, progress
    )
    assert max(reached) == 100  # the bar does not stop at a fifth while the raster is drawn and written
    lon, lat = cell_centroids(strings_to_cells(half.index.to_numpy()))

    def colours(path):
        ds = gdal.Open(path)
        x0, px, _, y0, _, py = ds.GetGeoTransform()
        data = ds.ReadAsArray()
        return data[:, ((lat - y0) / py).astype(int), ((lon - x0) / px).astype(int)].T

    np.testing.assert_array_equal(
        colours(first["OUTPUT_RGB"]), colours(second["OUTPUT_RGB"])
    )  # same scale, same colours
    assert not np.array_equal(colours(own["OUTPUT_RGB"]), colours(first["OUTPUT_RGB"]))  # its own scale differs
    space = run(
        "embedding_space",
        {"EMBEDDINGS": str(paths["seed0"]), "METHOD": 2, "SCALE": str(tmp_path / "s.json"), "OUTPUT": "memory:"},
    )
    layer = space["OUTPUT"]
    points = frame(layer).set_index("h3_cell")
    assert set(points.index) == set(table.index)
    expected = PcaColourScale.load(tmp_path / "s.json").transform(table.to_numpy())
    hexes = ["#{:02x}{:02x}{:02x}".format(*c) for c in expected.tolist()]
    assert points.colour.reindex(table.index).tolist() == hexes
    geoms = {f["h3_cell"]: (f.geometry().asPoint().x(), f.geometry().asPoint().y()) for f in layer.getFeatures()}
    assert all(geoms[c] == pytest.approx((points.x[c], points.y[c])) for c in points.index[:20])
    # the planted zones are apart in the 2-D map: each zone's points sit closer to their own centre
    zone = small_city.zone_labels.reindex(points.index)
    centres = points.groupby(zone)[["x", "y"]].mean()
    nearest = ((points[["x", "y"]].to_numpy()[:, None] - centres.to_numpy()[None]) ** 2).sum(-1).argmin(1)
    assert (centres.index[nearest] == zone.to_numpy()).mean() > 0.6


def test_analysis_errors_are_messages_and_leave_no_file(qgis, small_city, tables, tmp_path):
    from qgis.core import QgsProcessingException

    _, paths = tables
    out = tmp_path / "never.gpkg"
    with pytest.raises(QgsProcessingException, match="Choose reference places"):
        run("similar_places", {"EMBEDDINGS": str(paths["seed0"]), "OUTPUT": str(out), "OUTPUT_TOP": "memory:"})
    with pytest.raises(QgsProcessingException, match="none of the 1 reference places lies on a cell"):
        run(
            "similar_places",
            {
                "EMBEDDINGS": str(paths["seed0"]),
                "REFERENCE_POINT": "-70,-30 [EPSG:4326]",
                "OUTPUT": str(out),
                "OUTPUT_TOP": "memory:",
            },
        )
    with pytest.raises(QgsProcessingException, match="share 0 cells"):
        run("embedding_change", {"BEFORE": str(paths["seed0"]), "AFTER_LAYER": _far_table_layer(), "OUTPUT": str(out)})
    with pytest.raises(QgsProcessingException, match="not a MobCLIP PCA colour scale: save one with 'Save the colo"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        run(
            "shared_pca_rgb",
            {"EMBEDDINGS": str(paths["seed0"]), "SCALE": str(bad), "OUTPUT_RGB": str(tmp_path / "x.tif")},
        )
    from qgis.core import QgsVectorLayer

    districts = QgsVectorLayer(str(small_city.districts), "Demo districts")  # no emb_ fields
    with pytest.raises(QgsProcessingException, match="Layer 'Demo districts' has no embedding fields \\(emb_0, emb_1"):
        run("similar_places", {"EMBEDDINGS_LAYER": districts, "REFERENCE_CELLS": "x", "OUTPUT": str(out)})
    with pytest.raises(QgsProcessingException, match="Layer 'Demo districts' has no 'h3_cell' field, so it is not"):
        run("embedding_raster", {"EMBEDDINGS_LAYER": districts, "OUTPUT_RGB": str(tmp_path / "x.tif")})
    assert not out.exists() and not (tmp_path / "x.tif").exists()


def test_dialogs_preselect_the_project_embedding_layer_which_gives_way_to_a_file(qgis, small_city, tables, tmp_path):
    """A dialog opens with the project's embedding layer chosen (cells for the table tools, any layer with emb_
    fields for the places tools, none for a comparison of two tables); a file chosen beside it wins, and an
    emptied choice means no layer."""
    from qgis.core import QgsApplication, QgsProcessingException, QgsProject, QgsVectorLayer

    _, paths = tables
    registry = QgsApplication.processingRegistry()
    districts = QgsVectorLayer(str(small_city.districts), "districts")  # no emb_ fields: never preselected
    cells = QgsVectorLayer(str(paths["seed1"]), "cells with embeddings")
    QgsProject.instance().addMapLayers([districts, cells])
    try:

        def preselected(alg: str, parameter: str = "EMBEDDINGS_LAYER"):
            instance = registry.createAlgorithmById(f"mobclip:{alg}")  # what a dialog opens with
            return instance.parameterDefinition(parameter).defaultValue()

        for alg in ("aggregate_embeddings", "similar_places", "functional_zones", "embedding_raster"):
            assert preselected(alg) == cells.id(), alg
        assert preselected("embedding_change", "BEFORE_LAYER") is None
        # as the dialog sends it: the preselected layer and a file; the file's table is the one used
        both = run(
            "embedding_space",
            {"EMBEDDINGS": str(paths["seed0"]), "EMBEDDINGS_LAYER": cells.id(), "METHOD": 2, "OUTPUT": "memory:"},
        )
        alone = run("embedding_space", {"EMBEDDINGS": str(paths["seed0"]), "METHOD": 2, "OUTPUT": "memory:"})
        pd.testing.assert_frame_equal(frame(both["OUTPUT"]), frame(alone["OUTPUT"]))
        with pytest.raises(QgsProcessingException, match="No embedding table given"):
            run("embedding_raster", {"EMBEDDINGS_LAYER": None, "OUTPUT_RGB": str(tmp_path / "never.tif")})
    finally:
        QgsProject.instance().removeMapLayers([districts.id(), cells.id()])
    assert preselected("similar_places") is None


def _far_table_layer():
    """A project-style embedding layer of cells far from the city."""
    import h3
    from qgis.core import QgsFeature, QgsField, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    layer = QgsVectorLayer("Point?crs=EPSG:4326", "far", "memory")
    layer.dataProvider().addAttributes(
        [QgsField("h3_cell", QVariant.String)] + [QgsField(f"emb_{i}", QVariant.Double) for i in range(DIM)]
    )
    layer.updateFields()
    features = []
    for i, cell in enumerate(sorted(h3.grid_disk(h3.latlng_to_cell(-30, -70, 9), 3))):
        f = QgsFeature(layer.fields())
        f.setAttributes([cell] + [float(i + j) for j in range(DIM)])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    return layer


def test_map_tool_overlay_updates_cells_raster_and_feature_field(qgis, small_city, tables, tmp_path):
    """What a click does (the overlay behind the desktop map tool), headless: cells -> raster, polygons -> field."""
    import processing
    from mobclip.qgis_plugin.similarity_tool import SimilarityOverlay
    from osgeo import gdal
    from qgis.core import QgsPointXY, QgsVectorLayer

    from mobclip_core.analysis.similarity import similar_cells
    from mobclip_core.embeddings import read_embedding_table
    from mobclip_core.grid import cell_centroids, strings_to_cells

    _, paths = tables
    layer = QgsVectorLayer(f"{paths['seed0']}|layername=embeddings", "cells")
    overlay = SimilarityOverlay(layer)
    try:
        table = read_embedding_table(paths["seed0"])
        ref = deep_cell(small_city, "campus")
        lon, lat = cell_centroids(strings_to_cells(np.array([ref])))
        row = overlay.row_at(QgsPointXY(lon[0], lat[0]))
        assert row is not None and overlay.row_at(QgsPointXY(-70, -30)) is None
        overlay.update(row)
        expected = similar_cells(table, cells=[ref]).frame()["similarity"]
        clon, clat = cell_centroids(strings_to_cells(table.index.to_numpy()))
        ds = gdal.Open(overlay.path)
        x0, px, _, y0, _, py = ds.GetGeoTransform()
        pixels = ds.ReadAsArray()[((clat - y0) / py).astype(int), ((clon - x0) / px).astype(int)]
        np.testing.assert_allclose(pixels, expected.to_numpy(), atol=1e-6)
        assert overlay.result.isValid() and overlay.result.dataProvider().bandStatistics(1).maximumValue > 0.99
    finally:
        overlay.close()
    processing.run(
        "mobclip:aggregate_embeddings",
        {"INPUT": str(small_city.districts), "EMBEDDINGS": str(paths["seed0"]), "OUTPUT": str(tmp_path / "d.gpkg")},
    )
    districts = QgsVectorLayer(str(tmp_path / "d.gpkg"), "districts")
    polygons = SimilarityOverlay(districts)
    first = next(districts.getFeatures())
    point = first.geometry().pointOnSurface().asPoint()
    row = polygons.row_at(QgsPointXY(point))
    scores = polygons.update(row)
    values = {f["source_fid"]: f["similarity"] for f in polygons.result.getFeatures()}
    assert values[first.id()] == pytest.approx(1.0, abs=1e-5)
    assert sorted(values.values()) == pytest.approx(sorted(float(s) for s in scores))


def test_map_tool_reads_file_layers_as_numpy_columns_like_the_features(qgis, small_city, tables, tmp_path, monkeypatch):
    """Activating the tool reads a file layer's emb_* columns through GDAL's Arrow interface (the slow path iterates
    QgsFeatures: about 19 s against 3 s on 100,000 x 128, benchmarks/bench_map_tool.py): the same ids, values and cells;
    a filtered layer or a memory layer takes the features' path. Feature mode restyles each click in numpy."""
    import processing
    from mobclip.processing_algorithms import _places
    from mobclip.qgis_plugin.similarity_tool import (
        SimilarityOverlay,
        read_with_ogr,
        read_with_qgis,
        restyle_quantiles,
    )
    from qgis.core import QgsFeatureRequest, QgsVectorLayer

    from mobclip_core.embeddings import embedding_columns

    _, paths = tables
    processing.run(
        "mobclip:aggregate_embeddings",
        {"INPUT": str(small_city.districts), "EMBEDDINGS": str(paths["seed0"]), "OUTPUT": str(tmp_path / "d.gpkg")},
    )
    cells = QgsVectorLayer(f"{paths['seed0']}|layername=embeddings", "cells")
    districts = QgsVectorLayer(str(tmp_path / "d.gpkg"), "districts")
    for layer, with_cells in ((cells, True), (districts, False)):
        cols = embedding_columns(layer.fields().names())
        fast, slow = read_with_ogr(layer, cols, with_cells), read_with_qgis(layer, cols, with_cells)
        assert fast is not None, layer.name()
        order = np.argsort(fast[0])
        np.testing.assert_array_equal(fast[0][order], np.sort(slow[0]))
        np.testing.assert_array_equal(fast[1][order], slow[1][np.argsort(slow[0])].astype(np.float32))
        if with_cells:
            assert np.array(fast[2])[order].tolist() == np.array(slow[2])[np.argsort(slow[0])].tolist()
    cells.setSubsetString("fid > 10")
    assert read_with_ogr(cells, embedding_columns(cells.fields().names()), True) is None
    filtered = SimilarityOverlay(cells)
    filtered.close()
    assert filtered.fids.size == cells.featureCount() == len(small_city.cells) - 10
    memory = districts.materialize(QgsFeatureRequest())
    assert read_with_ogr(memory, embedding_columns(memory.fields().names()), False) is None
    qgis_styles, graduated_style = [], _places.graduated_style
    monkeypatch.setattr(_places, "graduated_style", lambda *a: qgis_styles.append(a) or graduated_style(*a))
    overlay = SimilarityOverlay(districts)
    for row in (0, 3):  # the first click: QGIS's quantile style; the second: its classes moved in numpy
        scores = overlay.update(row)
        restyle_quantiles(overlay.result, "similarity", scores)
    assert len(qgis_styles) == 1
    ranges = overlay.result.renderer().ranges()
    breaks = np.quantile(scores[np.isfinite(scores)], np.linspace(0, 1, len(ranges) + 1))
    assert [r.lowerValue() for r in ranges] == pytest.approx(breaks[:-1].tolist())
    assert [r.upperValue() for r in ranges] == pytest.approx(breaks[1:].tolist())
    assert len({r.label() for r in ranges}) == len(ranges)
    values = {f["source_fid"]: f["similarity"] for f in overlay.result.getFeatures()}
    expected = {int(fid): None if s != s else pytest.approx(float(s)) for fid, s in zip(overlay.fids, scores)}
    assert values == expected


def test_similar_places_loads_both_tables_with_no_error_in_the_log(qgis, small_city, tables, tmp_path):
    """As the dialog runs it (outputs loaded into the project): the ranked table was reported as "not correctly
    generated" in red on every run, although it was loaded (the check for it registered a second, empty output)."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    from mobclip_core.demo import ZONES

    class Errors(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors: list[str] = []

        def reportError(self, error, fatalError=False):  # noqa: N802
            self.errors.append(error)
            super().reportError(error, fatalError)

    _, paths = tables
    context, feedback = QgsProcessingContext(), Errors()
    context.setProject(QgsProject.instance())
    params = {
        "EMBEDDINGS": str(paths["seed0"]),
        "REFERENCE_CELLS": deep_cell(small_city, ZONES[0]),
        "TOP_N": 5,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "OUTPUT_TOP": "TEMPORARY_OUTPUT",
    }
    before = set(QgsProject.instance().mapLayers())
    processing.runAndLoadResults("mobclip:similar_places", params, context=context, feedback=feedback)
    added = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    assert not feedback.errors, feedback.errors
    assert sorted(layer.name() for layer in added) == ["Most similar places (ranked table)", "Similarity"]
    assert next(layer for layer in added if layer.name().startswith("Most")).featureCount() == 5
    for layer in added:
        QgsProject.instance().removeMapLayer(layer.id())


def test_similar_places_with_the_ranked_table_left_blank_in_the_batch_dialog(qgis, small_city, tables):
    """The batch dialog passes a blank optional output as an empty (truthy) QgsProcessingOutputLayerDefinition: no
    ranked table is written and the run does not fail on it."""
    from qgis.core import QgsProcessingOutputLayerDefinition, QgsProject

    from mobclip_core.demo import ZONES

    _, paths = tables
    params = {
        "EMBEDDINGS": str(paths["seed0"]),
        "REFERENCE_CELLS": deep_cell(small_city, ZONES[0]),
        "OUTPUT": "memory:",
        "OUTPUT_TOP": QgsProcessingOutputLayerDefinition("", QgsProject.instance()),
    }
    result = run("similar_places", params)
    assert "OUTPUT_TOP" not in result and len(frame(result["OUTPUT"])) > 0


def test_an_output_under_a_file_is_refused_before_any_work_and_the_geopackage_is_untouched(
    qgis, small_city, tables, tmp_path
):
    """A raster output whose "folder" is a file: refused before the run with the parameter named (it failed with a
    Python traceback after the work, and its cleanup then removed the ranked table it had just written over an
    existing layer)."""
    from osgeo import ogr
    from qgis.core import QgsProcessingException

    from mobclip_core.demo import ZONES

    _, paths = tables
    gpkg = tmp_path / "work.gpkg"
    first = {
        "EMBEDDINGS": str(paths["seed0"]),
        "REFERENCE_CELLS": deep_cell(small_city, ZONES[0]),
        "OUTPUT": f"ogr:dbname='{gpkg}' table=\"sim\" (geom)",
        "OUTPUT_TOP": f"ogr:dbname='{gpkg}' table=\"top\"",
    }
    run("similar_places", first)
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(QgsProcessingException, match="Similarity raster.*a_file is a file, not a folder"):
        run("similar_places", {**first, "OUTPUT_RASTER": str(tmp_path / "a_file" / "x.tif")})
    data = ogr.Open(str(gpkg))
    assert sorted(data.GetLayer(i).GetName() for i in range(data.GetLayerCount())) == ["sim", "top"]
    (tmp_path / "a_folder.tif").mkdir()  # a folder where the raster file should be: refused before any work
    with pytest.raises(QgsProcessingException, match="Similarity raster.*a_folder.tif is a folder: give a file"):
        run("similar_places", {**first, "OUTPUT_RASTER": str(tmp_path / "a_folder.tif")})


def test_a_layer_for_a_file_that_is_not_a_geopackage_is_refused_before_the_raster_is_written(qgis, tables, tmp_path):
    """The raster is written before the table: a table destination that cannot be opened must be refused first,
    or an existing raster would be replaced by a run that then fails."""
    from qgis.core import QgsProcessingException

    _, paths = tables
    (tmp_path / "notes.gpkg").write_text("not a geopackage")
    raster = tmp_path / "existing.tif"
    raster.write_bytes(b"an earlier raster")
    params = {"BEFORE": str(paths["seed0"]), "AFTER": str(paths["seed1"]), "OUTPUT_RASTER": str(raster)}
    params["OUTPUT"] = f"ogr:dbname='{tmp_path / 'notes.gpkg'}' table=\"change\" (geom)"
    with pytest.raises(QgsProcessingException, match="notes.gpkg exists but is not a GeoPackage GDAL can open"):
        run("embedding_change", params)
    assert raster.read_bytes() == b"an earlier raster"


def test_embedding_bands_too_large_for_memory_are_refused_before_the_rgb_is_written(
    qgis, tables, tmp_path, monkeypatch
):
    import sys

    from qgis.core import QgsProcessingException

    import mobclip_core.rasterize as rasterize

    raster_module = sys.modules["mobclip.processing_algorithms.embedding_raster"]  # the plugin as QGIS loaded it
    written, real_write = [], raster_module.write_gdal_raster

    def write(image, path, *, rgb):
        written.append(path)
        real_write(image, path, rgb=rgb)

    monkeypatch.setattr(raster_module, "write_gdal_raster", write)
    _, paths = tables
    monkeypatch.setattr(rasterize, "MAX_IMAGE_BYTES", 200_000)  # the 16-band image is larger, the RGB is not
    params = {"EMBEDDINGS": str(paths["seed0"]), "OUTPUT": str(tmp_path / "bands.tif")}
    with pytest.raises(QgsProcessingException, match="x 16 bands, .* in memory .*: set the pixels per cell to"):
        run("embedding_raster", {**params, "OUTPUT_RGB": str(tmp_path / "rgb.tif")})
    assert written == [] and sorted(p.name for p in tmp_path.iterdir()) == []  # refused before the RGB's work


def test_a_raster_written_before_a_failing_table_is_removed_or_named(qgis, tables, tmp_path, monkeypatch):
    """The raster is written first; if the table then fails, a raster the run created is removed (the message says
    nothing was written) and one it replaced is named as replaced."""
    import sys

    from qgis.core import QgsProcessingException

    change_module = sys.modules["mobclip.processing_algorithms.embedding_change"]  # the plugin as QGIS loaded it

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "c.gpkg"))

    monkeypatch.setattr(change_module, "write_places", disk_full)
    _, paths = tables
    params = {"BEFORE": str(paths["seed0"]), "AFTER": str(paths["seed1"]), "OUTPUT": str(tmp_path / "c.gpkg")}
    raster = tmp_path / "c.tif"
    with pytest.raises(QgsProcessingException) as exc:
        run("embedding_change", {**params, "OUTPUT_RASTER": str(raster)})
    assert str(exc.value) == f"A file could not be read or written ({tmp_path / 'c.gpkg'}): No space left on device"
    assert not raster.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    raster.write_bytes(b"an earlier raster")
    with pytest.raises(QgsProcessingException) as exc:
        run("embedding_change", {**params, "OUTPUT_RASTER": str(raster)})
    assert str(exc.value).endswith(f"({raster}: already replaced by this run's complete result)")
    assert raster.read_bytes() != b"an earlier raster"


def test_a_raster_write_failing_late_leaves_the_existing_layer_and_says_so_in_one_line(
    qgis, tables, tmp_path, monkeypatch
):
    """A late failure the system reports (disk full) while the raster is written: one line naming the error (it
    was a traceback), and the existing layer chosen for the table is untouched (the raster is written before it;
    it came after, so a failed run had already replaced the layer)."""
    import sys

    from qgis.core import QgsProcessingException

    change_module = sys.modules["mobclip.processing_algorithms.embedding_change"]  # the plugin as QGIS loaded it
    _, paths = tables
    gpkg = tmp_path / "work.gpkg"
    layer = f"ogr:dbname='{gpkg}' table=\"change\" (geom)"
    run("embedding_change", {"BEFORE": str(paths["seed0"]), "AFTER": str(paths["seed0"]), "OUTPUT": layer})
    assert (frame(f"{gpkg}|layername=change").change < 1e-9).all()  # a table against itself: no change

    def disk_full(image, path, *, rgb):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(change_module, "write_gdal_raster", disk_full)
    again = {"BEFORE": str(paths["seed0"]), "AFTER": str(paths["seed1"]), "OUTPUT": layer}
    with pytest.raises(QgsProcessingException) as exc:
        run("embedding_change", {**again, "OUTPUT_RASTER": str(tmp_path / "c.tif")})
    message = str(exc.value)
    assert message == f"A file could not be read or written ({tmp_path / 'c.tif'}): No space left on device"
    assert (frame(f"{gpkg}|layername=change").change < 1e-9).all()  # the earlier layer, not this run's
