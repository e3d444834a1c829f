"""*Write a training config from layers*: a GIS analyst's layers (zones with an OD table, or activity records; POIs;
census counts) become a config and inputs that the pipeline builds a region dataset from, as Train would."""

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


def run(params, feedback=None):
    import processing
    from qgis.core import QgsProcessingContext

    return processing.run(
        "mobclip:write_training_config", params, context=QgsProcessingContext(), feedback=feedback or LogFeedback()
    )


@pytest.fixture(scope="module")
def od_layers(qgis, small_city, tmp_path_factory):
    """The demo's districts (in UTM, as a user's layer would be) with census-like counts, and an OD CSV of flows
    between them derived from the demo's records (people moving between districts within a day)."""
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    folder = tmp_path_factory.mktemp("layers")
    districts = gpd.read_file(small_city.districts)
    rng = np.random.default_rng(0)
    districts["pop_young"] = rng.integers(50, 500, len(districts)).astype(float)
    districts["pop_old"] = rng.integers(50, 500, len(districts)).astype(float)
    write_geodataframe(districts, folder / "districts.gpkg")
    ids = districts["district"].tolist()
    pairs = [(o, d, float(rng.integers(1, 100))) for o in ids for d in ids if o != d and rng.random() < 0.5]
    pd.DataFrame(pairs, columns=["from_zone", "to_zone", "trips"]).to_csv(folder / "od.csv", index=False)
    return folder


def build(config):
    from mobclip_core.config import load_config
    from mobclip_core.modalities.build import build_region_dataset

    return build_region_dataset(load_config(config))


def test_zones_od_pois_and_census_counts_become_a_config_the_pipeline_builds(qgis, small_city, od_layers, tmp_path):
    from qgis.core import QgsVectorLayer

    od = QgsVectorLayer(f"file://{od_layers / 'od.csv'}?type=csv&detectTypes=yes&geomType=none", "od", "delimitedtext")
    assert od.isValid() and od.featureCount() > 20
    out = run(
        {
            "NAME": "districts",
            "RESOLUTION": 9,
            "OD_TABLE": od,
            "OD_ORIGIN": "from_zone",
            "OD_DESTINATION": "to_zone",
            "OD_FLOW": "trips",
            "ZONES": str(od_layers / "districts.gpkg"),
            "ZONE_ID": "district",
            "POIS": str(small_city.pois),
            "POI_CATEGORY": "category",
            "DEMOGRAPHICS": str(od_layers / "districts.gpkg"),
            "DEMOGRAPHICS_ID": "district",
            "DEMOGRAPHICS_FIELDS": ["district", "pop_young", "pop_old"],  # "all fields": the id is left out
            "OUTPUT": str(tmp_path / "run"),
        }
    )
    config = tmp_path / "run" / "mobclip.toml"
    assert out["CONFIG"] == str(config) and config.exists()
    text = config.read_text()
    assert 'od = "inputs/od.csv"' in text and 'zone_id = "zone"' in text and 'encoder = "counts"' in text
    assert sorted(p.name for p in (tmp_path / "run" / "inputs").iterdir()) == [
        "demographics.gpkg", "od.csv", "pois.gpkg", "zones.gpkg"
    ]  # fmt: skip
    ds = build(config)
    assert ds.cells.size > 100 and ds.graph.n_edges > 100
    assert {"poi", "demographics"} <= set(ds.features)
    shares = ds.features["demographics"]
    assert shares.shape[1] == 2 and np.allclose(shares.sum(axis=1), 1.0)
    assert not list((tmp_path / "run").glob(".mobclip-*"))  # no staging left behind


def test_activity_records_become_a_co_presence_config(qgis, small_city, tmp_path):
    """Points with a person id and a QGIS date-time field: written with ISO times and WGS84 coordinates."""
    import geopandas as gpd

    from mobclip_core.geofile import write_geodataframe

    records = pd.read_parquet(small_city.records).iloc[:40_000]
    points = gpd.GeoDataFrame(
        {"who": records["person_id"].astype(str), "seen": pd.to_datetime(records["timestamp"])},
        geometry=gpd.points_from_xy(records["lon"], records["lat"]),
        crs=4326,
    ).to_crs(3857)
    write_geodataframe(points, tmp_path / "records.gpkg")
    out = run(
        {
            "RECORDS": str(tmp_path / "records.gpkg"),
            "PERSON": "who",
            "TIME": "seen",
            "POIS": str(small_city.pois),
            "POI_NAME": "name",
            "POI_CATEGORY": "category",
            "OUTPUT": str(tmp_path / "run"),
        }
    )
    written = pd.read_csv(tmp_path / "run" / "inputs" / "records.csv")
    assert len(written) == len(records) and list(written.columns) == ["person", "time", "lon", "lat"]
    np.testing.assert_allclose(written["lon"], records["lon"], atol=1e-6)
    seen = pd.to_datetime(written["time"]).to_numpy("datetime64[s]")
    assert (seen == pd.to_datetime(records["timestamp"]).to_numpy("datetime64[s]")).all()
    from mobclip_core.config import load_config

    cfg = load_config(out["CONFIG"])
    assert cfg.poi.name == "name" and cfg.poi.category == "category" and cfg.poi.encoder == "text"
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.mobility.build import build_mobility_graph

    graph = build_mobility_graph(cfg.mobility, BuildContext.from_config(cfg))
    assert graph.n_edges > 100


def test_missing_or_double_mobility_inputs_are_refused_before_anything_is_written(
    qgis, od_layers, small_city, tmp_path
):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Choose a mobility input: an origin-destination table"):
        run({"POIS": str(small_city.pois), "POI_CATEGORY": "category", "OUTPUT": str(tmp_path / "a")})
    od = str(od_layers / "od.csv")
    common = {"OD_TABLE": od, "OD_ORIGIN": "from_zone", "OD_DESTINATION": "to_zone", "OD_FLOW": "trips"}
    with pytest.raises(QgsProcessingException, match="needs the zone polygons \\(ZONES\\)"):
        run({**common, "OUTPUT": str(tmp_path / "b")})
    with pytest.raises(QgsProcessingException, match="or activity records, not both"):
        run(
            {**common, "RECORDS": str(small_city.pois), "PERSON": "name", "TIME": "name", "OUTPUT": str(tmp_path / "c")}
        )
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir()) for name in "abc")


def test_name_only_pois_a_rerun_and_rows_with_nulls(qgis, small_city, od_layers, tmp_path):
    """POIs with a name field only train with the text model; a second run keeps files it does not write (an
    image added to inputs/) and replaces its own; OD rows with a NULL are left out with a count; ids typed Real
    in the OD table meet the zones' integer ids."""
    import geopandas as gpd

    from mobclip_core.config import load_config
    from mobclip_core.geofile import write_geodataframe
    from mobclip_core.modalities.poi import poi_texts

    districts = gpd.read_file(od_layers / "districts.gpkg")
    number = {d: i + 1 for i, d in enumerate(sorted(districts["district"]))}  # integer zone ids, as GEOIDs are
    write_geodataframe(districts.assign(district=districts["district"].map(number)), tmp_path / "zones.gpkg")
    od = pd.read_csv(od_layers / "od.csv")
    od["from_zone"] = od["from_zone"].map(number).astype(float)  # 3.0 against the zones' 3
    od["to_zone"] = od["to_zone"].map(number)
    od.loc[0, "trips"] = np.nan
    od.to_csv(tmp_path / "od_real.csv", index=False)
    params = {
        "OD_TABLE": str(tmp_path / "od_real.csv"),
        "OD_ORIGIN": "from_zone",
        "OD_DESTINATION": "to_zone",
        "OD_FLOW": "trips",
        "ZONES": str(tmp_path / "zones.gpkg"),
        "ZONE_ID": "district",
        "POIS": str(small_city.pois),
        "POI_NAME": "name",
        "OUTPUT": str(tmp_path / "run"),
    }
    (tmp_path / "run" / "inputs").mkdir(parents=True)
    (tmp_path / "run" / "inputs" / "imagery.tif").write_bytes(b"mine")
    log = LogFeedback()
    out = run(params, log)
    assert (tmp_path / "run" / "inputs" / "imagery.tif").read_bytes() == b"mine"
    assert any(w.startswith("1 rows of the OD table with a NULL") for w in log.warnings), log.warnings
    cfg = load_config(out["CONFIG"])
    assert cfg.poi.encoder == "text"
    pois = gpd.read_file(tmp_path / "run" / "inputs" / "pois.gpkg")
    texts = poi_texts(pois, cfg.poi.name, cfg.poi.category)
    assert texts.str.len().gt(0).all() and not texts.str.endswith(",").any()
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.mobility.build import build_mobility_graph

    assert build_mobility_graph(cfg.mobility, BuildContext.from_config(cfg)).n_edges > 100
    first = (tmp_path / "run" / "inputs" / "od.csv").read_text()
    run({**params, "OD_FLOW": "trips", "POI_NAME": None, "POI_CATEGORY": "category"})
    assert (tmp_path / "run" / "inputs" / "od.csv").read_text() == first
    assert load_config(out["CONFIG"]).poi.encoder == "counts"


def test_census_codes_that_lost_their_leading_zero_still_meet_their_tracts(qgis, od_layers, tmp_path):
    """An OD table whose tract codes are stored as numbers (a GeoPackage or spreadsheet column typed integer) holds
    "06075010100" as 6075010100; the tract layer keeps the text code. They still meet: the graph is the one the
    text codes give."""
    import geopandas as gpd
    import pyogrio
    from qgis.core import QgsVectorLayer

    from mobclip_core.config import load_config
    from mobclip_core.geofile import write_geodataframe
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.mobility.build import build_mobility_graph

    districts = gpd.read_file(od_layers / "districts.gpkg")
    code = {d: f"0607501{i:04d}" for i, d in enumerate(sorted(districts["district"]))}
    write_geodataframe(districts.assign(GEOID=districts["district"].map(code)), tmp_path / "tracts.gpkg")
    od = pd.read_csv(od_layers / "od.csv")
    od[["from_zone", "to_zone"]] = od[["from_zone", "to_zone"]].apply(lambda c: c.map(code))
    od.to_csv(tmp_path / "od.csv", index=False)
    numbers = od.assign(from_zone=od["from_zone"].astype("int64"), to_zone=od["to_zone"].astype("int64"))
    pyogrio.write_dataframe(numbers, tmp_path / "od_numbers.gpkg", layer="od")
    layer = QgsVectorLayer(str(tmp_path / "od_numbers.gpkg"), "od", "ogr")
    first = next(layer.getFeatures())["from_zone"]
    assert isinstance(first, int) and str(first).startswith("607501")  # the leading zero is gone
    common = {"OD_ORIGIN": "from_zone", "OD_DESTINATION": "to_zone", "OD_FLOW": "trips", "ZONE_ID": "GEOID"}
    zones = str(tmp_path / "tracts.gpkg")
    graphs = []
    for name, table in (("detected", layer), ("text", str(tmp_path / "od.csv"))):
        out = run({**common, "OD_TABLE": table, "ZONES": zones, "OUTPUT": str(tmp_path / name)})
        cfg = load_config(out["CONFIG"])
        graphs.append(build_mobility_graph(cfg.mobility, BuildContext.from_config(cfg)))
    assert graphs[0].n_edges == graphs[1].n_edges > 100
    assert (
        np.array_equal(graphs[0].cells, graphs[1].cells) and abs(graphs[0].adjacency - graphs[1].adjacency).max() == 0
    )


def test_a_field_that_is_not_there_or_not_numeric_is_named(qgis, od_layers, tmp_path):
    from qgis.core import QgsProcessingException

    common = {
        "OD_TABLE": str(od_layers / "od.csv"),
        "OD_DESTINATION": "to_zone",
        "OD_FLOW": "trips",
        "ZONES": str(od_layers / "districts.gpkg"),
        "ZONE_ID": "district",
        "OUTPUT": str(tmp_path / "run"),
    }
    with pytest.raises(QgsProcessingException, match="OD_ORIGIN: the layer has no field 'from_zon'; it has from_zone"):
        run({**common, "OD_ORIGIN": "from_zon"})
    with pytest.raises(QgsProcessingException, match="ZONE_ID: the layer has no field 'districts'"):
        run({**common, "OD_ORIGIN": "from_zone", "ZONE_ID": "districts"})
    with pytest.raises(QgsProcessingException, match="OD_FLOW: '.*' is not a number: choose the field that holds"):
        run({**common, "OD_ORIGIN": "from_zone", "OD_FLOW": "to_zone"})  # ids like "d3" as flows
    assert not (tmp_path / "run" / "mobclip.toml").exists()


def test_chicagos_real_layers_give_the_benchmarks_dataset(qgis, tmp_path):
    """The real data (../shared/data/chicago): tract polygons, the taxi OD table between them and the tracts' age
    counts, passed as layers, give the very graph and demographic features of the Chicago benchmark's config."""
    from benchmarks.chicago_data import SHARED, prepare_chicago

    if not (SHARED / "taxi-all.matrix").exists():
        pytest.skip(f"the shared Chicago data is not at {SHARED}")
    from mobclip_core.config import load_config
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.demographics import demographics_from_zone_table
    from mobclip_core.modalities.mobility.build import build_mobility_graph

    bench = load_config(prepare_chicago(tmp_path / "bench"))
    columns = ["age_0_4", "age_5_17", "age_18_64", "age_65"]
    out = run(
        {
            "OD_TABLE": str(tmp_path / "bench" / "taxi_od.csv"),
            "OD_ORIGIN": "origin",
            "OD_DESTINATION": "destination",
            "OD_FLOW": "flow",
            "ZONES": str(tmp_path / "bench" / "tracts.gpkg"),
            "ZONE_ID": "tract",
            "DEMOGRAPHICS": str(tmp_path / "bench" / "tracts.gpkg"),
            "DEMOGRAPHICS_ID": "tract",
            "DEMOGRAPHICS_FIELDS": columns,
            "OUTPUT": str(tmp_path / "layers"),
        }
    )
    ours = load_config(out["CONFIG"])
    a = build_mobility_graph(ours.mobility, BuildContext.from_config(ours))
    b = build_mobility_graph(bench.mobility, BuildContext.from_config(bench))
    assert np.array_equal(a.cells, b.cells) and a.n_edges == b.n_edges > 500_000
    assert abs(a.adjacency - b.adjacency).max() < 1e-9
    da = demographics_from_zone_table(ours.demographics, 9, ours.path)
    db = demographics_from_zone_table(bench.demographics, 9, bench.path)
    pd.testing.assert_frame_equal(da.sort_index(), db.sort_index(), check_names=False)


# --- open data: files named where they are ---------------------------------------------------------------------
def test_a_gtfs_feed_and_an_osm_extract_train_a_region_without_any_layer(qgis, tmp_path):
    """The README's Helsinki walk-through from QGIS: a GTFS feed and an OpenStreetMap extract, no layer and no TOML
    by hand. The config names the files where they are and builds the dataset the hand-written config builds."""
    from _opendata import HSL_GTFS, helsinki_pbf

    from mobclip_core.config import config_from_dict, load_config
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.mobility.build import build_mobility_graph

    pbf = helsinki_pbf()
    out = run({"RESOLUTION": 10, "GTFS": str(HSL_GTFS), "POI_FILE": str(pbf), "OUTPUT": str(tmp_path / "run")})
    text = (tmp_path / "run" / "mobclip.toml").read_text()
    assert "[[mobility.sources]]" in text and 'kind = "gtfs"' in text
    assert not (tmp_path / "run" / "inputs").exists()  # nothing copied: the files stay where they are
    cfg = load_config(out["CONFIG"])
    assert cfg.poi.path == str(pbf) and cfg.poi.encoder == "text" and cfg.train.clip is True
    by_hand = config_from_dict(
        {"resolution": 10, "mobility": {"sources": [{"kind": "gtfs", "path": str(HSL_GTFS)}]}}, base_dir=tmp_path
    )
    ours = build_mobility_graph(cfg.mobility, BuildContext.from_config(cfg))
    theirs = build_mobility_graph(by_hand.mobility, BuildContext.from_config(by_hand))
    assert np.array_equal(ours.cells, theirs.cells) and ours.n_edges == theirs.n_edges > 40
    assert abs(ours.adjacency - theirs.adjacency).max() == 0
    ds = build(out["CONFIG"])
    assert ds.cells.size == ours.cells.size and ds.features["poi"].notna().all(axis=1).sum() > 10


def test_trips_and_lodes_commutes_combine_into_one_graph(qgis, tmp_path):
    """Two open-data sources of different units (Divvy trips, LODES jobs) become two weighted sources: each graph
    scaled to half of the combined weight, as the library combines them."""
    from _opendata import DATA, DIVVY_TRIPS

    from mobclip_core.config import load_config
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.mobility.build import build_mobility_graph, graph_from_source

    lodes = DATA / "lodes_detroit_2019"
    log = LogFeedback()
    out = run(
        {
            "RESOLUTION": 7,
            "TRIPS": str(DIVVY_TRIPS),
            "LODES": str(lodes / "mi_od_main_JT00_2019.csv.gz"),
            "LODES_CROSSWALK": str(lodes / "tri_county_hex_xwalk.csv.gz"),
            "OUTPUT": str(tmp_path / "run"),
        },
        log,
    )
    cfg = load_config(out["CONFIG"])
    # mobility alone: nothing to align it with, so no contrastive training (Train stopped on this config before)
    assert cfg.train.clip is False and any("No POIs or demographics" in w for w in log.warnings), log.warnings
    sources = cfg.mobility.source_list()
    assert [type(s).__name__ for s in sources] == ["TripsSource", "LodesSource"]
    ctx = BuildContext.from_config(cfg)
    combined = build_mobility_graph(cfg.mobility, ctx)
    parts = [graph_from_source(s, ctx) for s in sources]
    assert combined.cells.size == sum(p.cells.size for p in parts)  # Chicago and Detroit share no cell
    total = combined.adjacency.sum()
    for part in parts:  # each source carries half of the weight, its links in proportion
        rows = np.searchsorted(combined.cells, part.cells)
        sub = combined.adjacency[rows][:, rows]
        assert sub.sum() == pytest.approx(total / 2)
        np.testing.assert_allclose(
            sub.toarray(), part.adjacency.toarray() / part.adjacency.sum() * total / 2, atol=1e-12
        )


def test_worldpop_folder_as_demographics(qgis, small_city, tmp_path):
    import shutil

    from _opendata import WORLDPOP_WUHAN

    from mobclip_core.config import load_config

    folder = tmp_path / "worldpop"
    folder.mkdir()
    for sex in "fm":
        for age in (20, 25, 30):
            shutil.copy(WORLDPOP_WUHAN / f"pop_{age}_{sex}_wuhan.tif", folder / f"chn_{sex}_{age}_2020.tif")
    params = {"RECORDS": str(small_city.pois), "PERSON": "name", "TIME": "name", "OUTPUT": str(tmp_path / "run")}
    cfg = load_config(run({**params, "WORLDPOP": str(folder)})["CONFIG"])
    assert cfg.demographics.worldpop == str(folder)
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="WORLDPOP: no WorldPop age/sex raster in .*fin_f_0_2020.tif"):
        run({**params, "WORLDPOP": str(WORLDPOP_WUHAN), "OUTPUT": str(tmp_path / "other")})  # names not WorldPop's


def test_open_data_files_that_are_not_what_they_are_given_as(qgis, small_city, od_layers, tmp_path):
    """Checked from their headers or file lists before anything is written: a CSV as a GTFS feed, a zip without
    stop times, an OD table as trips, LODES without its crosswalk, POIs or demographics given twice."""
    import zipfile

    from _opendata import DIVVY_TRIPS, HSL_GTFS, helsinki_pbf
    from qgis.core import QgsProcessingException

    out = {"OUTPUT": str(tmp_path / "run")}
    (tmp_path / "feed.zip").write_bytes(DIVVY_TRIPS.read_bytes()[:2000])  # a CSV saved as .zip
    with pytest.raises(QgsProcessingException, match="GTFS: .*feed.zip is neither a GTFS zip nor a folder"):
        run({**out, "GTFS": str(tmp_path / "feed.zip")})
    with zipfile.ZipFile(HSL_GTFS) as src, zipfile.ZipFile(tmp_path / "partial.zip", "w") as dst:
        for name in src.namelist():
            if not name.endswith("stop_times.txt"):
                dst.writestr(name, src.read(name))
    with pytest.raises(QgsProcessingException, match="GTFS: partial.zip is not a GTFS feed: it has no stop_times.txt"):
        run({**out, "GTFS": str(tmp_path / "partial.zip")})
    with pytest.raises(QgsProcessingException, match="TRIPS: MobCLIP does not recognise .*from_zone"):
        run({**out, "TRIPS": str(od_layers / "od.csv")})
    with pytest.raises(QgsProcessingException, match="need both the OD file .* and the state's crosswalk"):
        run({**out, "LODES": str(DIVVY_TRIPS)})
    lodes = DIVVY_TRIPS.parents[1] / "lodes_detroit_2019" / "mi_od_main_JT00_2019.csv.gz"
    with pytest.raises(QgsProcessingException, match="LODES_CROSSWALK: trips.csv is not a LODES crosswalk"):
        run({**out, "LODES": str(lodes), "LODES_CROSSWALK": str(DIVVY_TRIPS)})
    with pytest.raises(QgsProcessingException, match="GTFS: .*nowhere.zip does not exist"):
        run({**out, "GTFS": str(tmp_path / "nowhere.zip")})
    trips = {**out, "TRIPS": str(DIVVY_TRIPS)}
    with pytest.raises(
        QgsProcessingException, match="POIs as a layer \\(POIS\\) or as a file \\(POI_FILE\\), not both"
    ):
        run({**trips, "POIS": str(small_city.pois), "POI_CATEGORY": "category", "POI_FILE": str(helsinki_pbf())})
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_open_data_as_users_have_it(qgis, tmp_path):
    """An upper-case FEED.ZIP, a trip table whose columns are named by hand (they are not a known layout), a run
    name with a DEL character: each gives a config that loads and builds."""
    import shutil

    from _opendata import DIVVY_TRIPS, HSL_GTFS

    from mobclip_core.config import load_config
    from mobclip_core.modalities.base import BuildContext
    from mobclip_core.modalities.mobility.build import build_mobility_graph

    def graph(params, name):
        cfg = load_config(run({**params, "OUTPUT": str(tmp_path / name)})["CONFIG"])
        return build_mobility_graph(cfg.mobility, BuildContext.from_config(cfg))

    shutil.copy(HSL_GTFS, tmp_path / "FEED.ZIP")
    upper = graph({"RESOLUTION": 10, "GTFS": str(tmp_path / "FEED.ZIP"), "NAME": "tab\x7fname"}, "upper")
    lower = graph({"RESOLUTION": 10, "GTFS": str(HSL_GTFS)}, "lower")
    assert upper.n_edges == lower.n_edges > 40 and abs(upper.adjacency - lower.adjacency).max() == 0
    assert load_config(tmp_path / "upper" / "mobclip.toml").name == "tab\x7fname"

    trips = pd.read_csv(DIVVY_TRIPS)
    renamed = {"start_lng": "a_x", "start_lat": "a_y", "end_lng": "b_x", "end_lat": "b_y"}
    trips.rename(columns=renamed).to_csv(tmp_path / "mine.csv", index=False)
    from qgis.core import QgsProcessingException

    with pytest.raises(
        QgsProcessingException,
        match="TRIPS: MobCLIP does not recognise the coordinate columns of "
        "mine.csv .*a_y, a_x, b_y, b_x.*: name them in 'Trip table: coordinate columns' \\(TRIP_COLUMNS\\)",
    ):
        run({"TRIPS": str(tmp_path / "mine.csv"), "OUTPUT": str(tmp_path / "x")})
    with pytest.raises(QgsProcessingException, match="TRIPS: most trips start or end south of 60 degrees .* swapped"):
        run({"TRIPS": str(tmp_path / "mine.csv"), "TRIP_COLUMNS": "a_y, a_x, b_y, b_x", "OUTPUT": str(tmp_path / "x")})
    with pytest.raises(QgsProcessingException, match="TRIP_COLUMNS: name four columns, .* got 3"):
        run({"TRIPS": str(tmp_path / "mine.csv"), "TRIP_COLUMNS": "a_x, a_y, b_x", "OUTPUT": str(tmp_path / "x")})
    with pytest.raises(QgsProcessingException, match=r"TRIPS: trip table mine.csv has no columns \['b_z'\]"):
        run({"TRIPS": str(tmp_path / "mine.csv"), "TRIP_COLUMNS": "a_x,a_y,b_x,b_z", "OUTPUT": str(tmp_path / "x")})
    named = graph({"TRIPS": str(tmp_path / "mine.csv"), "TRIP_COLUMNS": "a_x, a_y, b_x, b_y"}, "named")
    divvy = graph({"TRIPS": str(DIVVY_TRIPS)}, "divvy")
    assert named.n_edges == divvy.n_edges > 50 and abs(named.adjacency - divvy.adjacency).max() == 0


def test_files_that_cannot_be_read_or_are_something_else(qgis, small_city, tmp_path):
    """Empty, not gzip, semicolon-separated, a CSV given as LODES, a Parquet table without geometry or a damaged
    extract given as POIs: a message naming the parameter, the file and the fix, never a traceback."""
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from _opendata import DATA, DIVVY_TRIPS
    from qgis.core import QgsProcessingException

    lodes = DATA / "lodes_detroit_2019"
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "plain.csv.gz").write_text("start_lng,start_lat,end_lng,end_lat\n")
    (tmp_path / "semi.csv").write_text("start_lng;start_lat;end_lng;end_lat\n1;2;3;4\n")
    (tmp_path / "header.csv").write_text("start_lng,start_lat,end_lng,end_lat\n")
    pq.write_table(pa.table({"name": ["a"], "lon": [1.0], "lat": [2.0]}), tmp_path / "table.parquet")
    (tmp_path / "broken.osm.pbf").write_bytes(b"not a pbf" * 10)
    gpd.read_file(small_city.pois).rename(columns={"category": "kind"}).to_file(tmp_path / "shops.gpkg")
    cases = [
        ({"TRIPS": tmp_path / "empty.csv"}, "TRIPS: cannot read trip table .*empty.csv"),
        ({"TRIPS": tmp_path / "plain.csv.gz"}, "TRIPS: cannot read trip table .*plain.csv.gz"),
        ({"TRIPS": tmp_path / "semi.csv"}, "TRIPS: trip table semi.csv has one column, .*semicolon"),
        ({"TRIPS": tmp_path / "header.csv"}, "TRIPS: the first rows of header.csv have no trip with both ends"),
        (
            {"LODES": DIVVY_TRIPS, "LODES_CROSSWALK": lodes / "tri_county_hex_xwalk.csv.gz"},
            r"LODES: trips.csv is not a LODES OD table: it lacks \['w_geocode', 'h_geocode', 'S000'\]",
        ),
        (
            {"LODES": lodes / "mi_od_main_JT00_2019.csv.gz", "LODES_CROSSWALK": tmp_path / "plain.csv.gz"},
            "LODES_CROSSWALK: cannot read LODES crosswalk .*plain.csv.gz",
        ),
        (
            {"TRIPS": DIVVY_TRIPS, "POI_FILE": tmp_path / "table.parquet"},
            "POI_FILE: table.parquet is a Parquet table without geometry",
        ),
        (
            {"TRIPS": DIVVY_TRIPS, "POI_FILE": tmp_path / "broken.osm.pbf"},
            "POI_FILE: broken.osm.pbf is not an OpenStreetMap PBF",
        ),
        (
            {"TRIPS": DIVVY_TRIPS, "POI_FILE": tmp_path / "shops.gpkg"},
            r"POI_FILE: shops.gpkg is a layer without 'category' fields .*choose it as 'POIs \(points\)'",
        ),
    ]
    for params, message in cases:
        with pytest.raises(QgsProcessingException, match=message):
            run({**{k: str(v) for k, v in params.items()}, "OUTPUT": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()


def test_a_rerun_says_which_inputs_the_new_config_does_not_name(qgis, small_city, tmp_path):
    from _opendata import DIVVY_TRIPS

    params = {"RECORDS": str(small_city.pois), "PERSON": "name", "TIME": "name", "OUTPUT": str(tmp_path / "run")}
    run(params)
    log = LogFeedback()
    run({"TRIPS": str(DIVVY_TRIPS), "OUTPUT": str(tmp_path / "run")}, log)
    assert any("inputs/ also holds records.csv, which this config does not name" in line for line in log.lines), (
        log.lines
    )


def test_a_temporary_output_folder_is_a_warning(qgis, tmp_path):
    """The dialog's default output is QGIS's temporary folder, deleted when QGIS closes: the config would be lost."""
    from _opendata import HSL_GTFS

    log = LogFeedback()
    out = run({"GTFS": str(HSL_GTFS), "OUTPUT": "TEMPORARY_OUTPUT"}, log)
    assert any("output folder is a temporary one" in w for w in log.warnings), log.warnings
    text = open(out["CONFIG"]).read()
    assert "[mobility]\n" not in text and "[[mobility.sources]]" in text  # no empty table before the sources
    quiet = LogFeedback()
    run({"GTFS": str(HSL_GTFS), "OUTPUT": str(tmp_path / "kept")}, quiet)
    assert not any("temporary" in w for w in quiet.warnings), quiet.warnings


def test_the_flow_field_may_be_text_as_in_a_csv_dropped_on_the_map(qgis, od_layers, small_city, tmp_path):
    """A CSV opened without type detection (drag and drop) has text fields only: the dialog's flow field must list
    them (it listed number fields only, so it stayed empty), and the text flows are read as numbers."""
    from qgis.core import QgsApplication, QgsProcessingParameterField, QgsVectorLayer

    alg = QgsApplication.processingRegistry().algorithmById("mobclip:write_training_config")
    assert alg.parameterDefinition("OD_FLOW").dataType() == QgsProcessingParameterField.Any
    od = QgsVectorLayer(str(od_layers / "od.csv"), "od", "ogr")
    assert od.fields().field("trips").typeName() == "String"
    params = {"OD_TABLE": od, "OD_ORIGIN": "from_zone", "OD_DESTINATION": "to_zone", "OD_FLOW": "trips"}
    params.update({"ZONES": str(od_layers / "districts.gpkg"), "ZONE_ID": "district", "OUTPUT": str(tmp_path / "run")})
    run(params)
    written = pd.read_csv(tmp_path / "run" / "inputs" / "od.csv")
    print(written.head(3))
    assert written["flow"].dtype.kind == "f"
    assert written["flow"].sum() == pytest.approx(pd.read_csv(od_layers / "od.csv")["trips"].sum())


def test_zone_ids_are_checked_against_the_od_table_before_anything_is_written(qgis, od_layers, tmp_path):
    from qgis.core import QgsProcessingException
    from qgis_support import LogFeedback

    od = pd.read_csv(od_layers / "od.csv")
    base = {"OD_ORIGIN": "from_zone", "OD_DESTINATION": "to_zone", "OD_FLOW": "trips"}
    base.update({"OD_TABLE": str(od_layers / "od.csv"), "ZONES": str(od_layers / "districts.gpkg")})
    with pytest.raises(QgsProcessingException, match=r"No zone id of the OD table's 'from_zone' and 'to_zone' fields"):
        run({**base, "ZONE_ID": "pop_young", "OUTPUT": str(tmp_path / "a")})  # the wrong field of the zones
    with pytest.raises(QgsProcessingException, match=r"origin and destination fields are the same field"):
        run({**base, "OD_DESTINATION": "from_zone", "ZONE_ID": "district", "OUTPUT": str(tmp_path / "b")})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    extra = pd.concat([od, pd.DataFrame([{"from_zone": "nowhere", "to_zone": od.to_zone[0], "trips": 5.0}])])
    extra.to_csv(tmp_path / "od_extra.csv", index=False)
    feedback = LogFeedback()
    run(
        {**base, "OD_TABLE": str(tmp_path / "od_extra.csv"), "ZONE_ID": "district", "OUTPUT": str(tmp_path / "c")},
        feedback,
    )
    assert any(
        f"1 of {len(extra)} OD rows name a zone that the zone layer lacks (e.g. 'nowhere')" in w
        for w in feedback.warnings
    )
    assert (tmp_path / "c" / "mobclip.toml").exists()


def test_an_empty_poi_field_is_refused(qgis, od_layers, small_city, tmp_path):
    import geopandas as gpd
    from qgis.core import QgsProcessingException

    from mobclip_core.geofile import write_geodataframe

    pois = gpd.read_file(small_city.pois)
    pois["kind"] = None
    write_geodataframe(pois, tmp_path / "pois.gpkg")
    params = {"OD_TABLE": str(od_layers / "od.csv"), "OD_ORIGIN": "from_zone", "OD_DESTINATION": "to_zone"}
    params.update({"OD_FLOW": "trips", "ZONES": str(od_layers / "districts.gpkg"), "ZONE_ID": "district"})
    params.update({"POIS": str(tmp_path / "pois.gpkg"), "POI_CATEGORY": "kind", "OUTPUT": str(tmp_path / "run")})
    with pytest.raises(QgsProcessingException, match=rf"field 'kind' is empty \(NULL or blank\) for all {len(pois)}"):
        run(params)
    assert not (tmp_path / "run").exists()
