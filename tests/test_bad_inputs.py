"""Bad and unusual input, as a demanding user gives it: each case ends in a clear message (the problem and the fix)
or a correct result, never a traceback, a silently wrong answer or a half-written file.

Cases marked ``xfail(strict=True)`` fail today in a part another branch is rewriting; the reason names it. Strict:
once that part is fixed the test passes and the marker must go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest

from mobclip_core.cli import main
from mobclip_core.config import LineConfig, TrainConfig, config_from_dict, load_config
from mobclip_core.exceptions import (
    CheckpointError,
    ConfigError,
    InvalidInputError,
    MobClipError,
    OutputInUseError,
    OutsideExtentWarning,
)
from mobclip_core.export import export_all, read_embeddings, write_embeddings
from mobclip_core.io import atomic_dir, atomic_path, clean_stale, host_tag, output_transaction

REPO = Path(__file__).resolve().parents[1]
OPENDATA = "fixed on branch opendata"
LEAD = "lead: trainer rewrite"
EXPORT_NAMES = {"embeddings.parquet", "embeddings.gpkg", "embeddings.tif", "embeddings_pca_rgb.tif"}


# -- helpers ---------------------------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def assert_message(rc: int, err: str, *fragments: str) -> None:
    """Exit code 2, one ``mobclip: error:`` line holding every fragment, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("mobclip: error: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def leftovers(folder: Path) -> list[str]:
    """Temporary or staging names anywhere under ``folder``: there must be none after any run, failed or not."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".mobclip-" in p.name)


def embedding_table(center=(41.88, -87.63), rings: int = 12, dim: int = 8, seed: int = 0) -> pd.DataFrame:
    cells = sorted(h3.grid_disk(h3.latlng_to_cell(*center, 9), rings))
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(len(cells), dim)).astype(np.float32)
    return pd.DataFrame(values, index=pd.Index(cells, name="h3_cell"), columns=[f"emb_{i}" for i in range(dim)])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def emb() -> pd.DataFrame:
    return embedding_table()


@pytest.fixture(scope="module")
def records(small_city) -> pd.DataFrame:
    return pd.read_parquet(small_city.records)


# -- 1. one error family ---------------------------------------------------------------------------------------
def test_former_plain_value_errors_are_mobclip_errors():
    import scipy.sparse as sp
    from shapely.geometry import box

    from mobclip_core.grid import neighbours, polygons_to_cells
    from mobclip_core.modalities import MobilityGraph
    from mobclip_core.models.line import train_line

    cell = np.array([int(h3.latlng_to_cell(45.0, 9.0, 9), 16)], dtype=np.uint64)
    with pytest.raises(MobClipError, match="k must be a whole number of grid steps >= 0"):
        neighbours(cell, -1)
    with pytest.raises(MobClipError, match=r"containment must be one of \['center', 'overlap'\], got 'inside'"):
        polygons_to_cells([box(9.0, 45.0, 9.1, 45.1)], 8, containment="inside")
    with pytest.raises(MobClipError, match=r"order must be one of \['first', 'second', 'both'\]"):
        train_line(sp.csr_matrix(np.array([[0, 1.0], [1.0, 0]])), order="third")
    two = np.sort(np.array([int(c, 16) for c in h3.grid_disk(h3.latlng_to_cell(45.0, 9.0, 9), 1)][:2], np.uint64))
    with pytest.raises(MobClipError, match=r"ratio must be in \(0, 1\]"):
        MobilityGraph(two, sp.csr_matrix(np.array([[0, 1.0], [1.0, 0]]))).top_k(0)


RECORDS = '[mobility]\nrecords = "r.parquet"\n'


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("resolution = 16\n" + RECORDS, ["resolution", "unknown H3 resolution 16", "0 to 15"]),
        ("resolution = 9.5\n" + RECORDS, ["resolution = 9.5 must be an integer"]),
        ("train = 3\n" + RECORDS, ["[train] must be a table"]),
        (RECORDS + "[train]\nembedding_dim = 0\n", ["[train] embedding_dim must be >= 1, got 0"]),
        (RECORDS + '[train]\nepochs = "10"\n', ["[train] epochs = '10' must be an integer"]),
        (RECORDS + "[train]\nbatch_size = 1\n", ["[train] batch_size must be >= 2"]),
        (RECORDS + "[train]\nval_fraction = 1.0\n", ["val_fraction must be below 1"]),
        (RECORDS + "[line]\ndim = 64\n", ["[line] dim (64) must equal [train] embedding_dim (128)", "'mlp'"]),
        (RECORDS + "[line]\nsamples_per_edge = nan\n", ["[line] samples_per_edge must be >="]),
        (RECORDS + '[line]\nengine = "gpu"\n', ["[line] engine must be one of ['numba', 'torch'], got 'gpu'"]),
        (RECORDS + "[train]\nthreads = -1\n", ["[train] threads must be >= 0, got -1"]),
        (RECORDS + "ratio = 0\n", ["ratio must be in (0, 1]"]),
        (RECORDS + '[image]\npath = "img.tif"\nencoder = "open_clip"\n', ["needs 'checkpoint'", "encoder = 'stats'"]),
        (
            RECORDS + '[demographics]\nraster = "img.tif"\ntable = "t.csv"\n',
            ["one of 'raster', 'rasters', 'table' or 'worldpop'"],
        ),
        (
            RECORDS + '[poi]\npath = "missing.gpkg"\n',
            ["'missing.gpkg'", "does not exist", "config file's"],
        ),
        (RECORDS + '[poi]\npath = "sub"\n', ["[poi] path = 'sub'", "is a folder; name the file inside it"]),
        (RECORDS + '[poi]\npath = "empty.gpkg"\n', ["empty.gpkg", "is empty (0 bytes)"]),
        (  # sources and WorldPop folders are checked when the config is read, not at the end of a long build
            '[[mobility.sources]]\nkind = "gtfs"\npath = ["t.csv", "feed.zip"]\n',
            ["[mobility.sources[0]] (gtfs) path = 'feed.zip'", "does not exist"],
        ),
        (
            '[[mobility.sources]]\nkind = "lodes"\npath = "t.csv"\ncrosswalk = "xw.csv.gz"\n',
            ["(lodes) crosswalk = 'xw.csv.gz'", "does not exist"],
        ),
        (RECORDS + '[demographics]\nworldpop = "img.tif"\n', ["[demographics] worldpop", "is a file; name the folder"]),
    ],
)
def test_config_errors_name_the_option_and_the_fix(tmp_path, capsys, toml, fragments):
    (tmp_path / "r.parquet").write_bytes(b"PAR1")
    (tmp_path / "img.tif").write_bytes(b"II*\x00")
    (tmp_path / "t.csv").write_text("zone\n")
    (tmp_path / "empty.gpkg").touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "bad.toml").write_text(toml)
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bad.toml")
    rc, err = run_cli(capsys, "build", tmp_path / "bad.toml", "--out", tmp_path / "ds")
    assert_message(rc, err, *fragments)
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


def test_config_file_itself(tmp_path, capsys):
    rc, err = run_cli(capsys, "build", tmp_path)
    assert_message(rc, err, "is a folder: give the config file itself", "mobclip.toml")
    (tmp_path / "latin1.toml").write_bytes('name = "Zürich"\n'.encode("latin-1"))
    rc, err = run_cli(capsys, "build", tmp_path / "latin1.toml")
    assert_message(rc, err, "is not UTF-8 text", "save it as UTF-8")
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + b'[mobility]\nrecords = "r.csv"\n')  # Windows Notepad
    (tmp_path / "r.csv").write_text("person_id,timestamp,lon,lat\n")
    assert load_config(tmp_path / "bom.toml").mobility.records == "r.csv"


def test_cli_reports_file_system_errors_without_traceback(tmp_path, capsys, emb):
    write_embeddings(emb, tmp_path / "e.parquet")
    (tmp_path / "afile").write_text("x")
    rc, err = run_cli(capsys, "export", tmp_path / "e.parquet", "--out", tmp_path / "afile" / "sub")
    assert_message(rc, err, "afile/sub lies inside a file, not a folder: give another folder path")
    rc, err = run_cli(capsys, "export", tmp_path / "e.parquet", "--out", tmp_path / "afile")
    assert_message(rc, err, "is an existing file: give a folder path")
    rc, err = run_cli(capsys, "export", tmp_path / "e.parquet", "--out", tmp_path / "x", "--stem", "../up")
    assert_message(rc, err, "export stem '../up' must be a plain file name")
    assert not (tmp_path / "x").exists() or leftovers(tmp_path / "x") == []


# -- records: text coordinates, missing columns, odd files ---------------------------------------------------------
@pytest.mark.parametrize("engine", ["memory", "duckdb"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_latitude_text_with_one_na(tmp_path, capsys, records, engine, fmt):
    bad = records.iloc[:3000].astype({"lat": str})
    bad.iloc[1234, bad.columns.get_loc("lat")] = "n/a" if fmt == "parquet" else "unknown"
    path = tmp_path / f"r.{fmt}"
    bad.to_parquet(path) if fmt == "parquet" else bad.to_csv(path, index=False)
    out = tmp_path / "g.npz"
    rc, err = run_cli(capsys, "graph", path, "--resolution", 9, "--out", out, "--engine", engine)
    assert_message(rc, err, "latitude must be numbers", "row 1234", "pd.to_numeric")
    assert not out.exists() and leftovers(tmp_path) == []


def test_csv_na_marker_in_coordinates_is_refused_not_dropped(tmp_path, capsys, records):
    bad = records.iloc[:3000].astype({"lat": str})
    bad.iloc[77, bad.columns.get_loc("lat")] = "n/a"  # the CSV reader reads n/a as missing: NaN, not a silent skip
    bad.to_csv(tmp_path / "r.csv", index=False)
    rc, err = run_cli(capsys, "graph", tmp_path / "r.csv", "--resolution", 9, "--out", tmp_path / "g.npz")
    assert_message(rc, err, "NaN", "row 77", "drop or fix them")


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_missing_location_column_names_it(tmp_path, capsys, records, engine):
    records.iloc[:500].drop(columns="lon").to_parquet(tmp_path / "r.parquet")
    rc, err = run_cli(
        capsys, "graph", tmp_path / "r.parquet", "--resolution", 9, "--out", tmp_path / "g.npz", "--engine", engine
    )
    assert_message(rc, err, "'lon'", "'lat'")
    assert not (tmp_path / "g.npz").exists()


def test_unusual_but_valid_record_files_give_the_same_graph(tmp_path, capsys, records):
    from mobclip_core.modalities import MobilityGraph, build_copresence_graph

    part = records.iloc[:6000].copy()
    ref = build_copresence_graph(part, 9)
    # a CSV with a byte-order mark, Latin-1 person ids, and a folder and file name with spaces and accents
    csv = part.assign(person_id="José-" + part.person_id.astype(str)).to_csv(index=False)
    folder = tmp_path / "données de test"
    folder.mkdir()
    (folder / "séjours 1.csv").write_bytes(b"\xef\xbb\xbf" + csv.encode("utf-8"))
    (folder / "latin 1.csv").write_bytes(csv.encode("latin-1"))
    for name in ("séjours 1.csv", "latin 1.csv"):
        out = folder / f"graphe {name}.npz"
        rc, err = run_cli(capsys, "graph", folder / name, "--resolution", 9, "--out", out)
        assert rc == 0, err
        g = MobilityGraph.load(out)
        assert np.array_equal(g.cells, ref.cells) and abs(g.adjacency - ref.adjacency).max() == 0, name


def test_records_of_a_single_week_make_a_graph(records):
    from mobclip_core.grid import points_to_cells
    from mobclip_core.modalities import build_copresence_graph, to_week

    weeks = to_week(records.timestamp.to_numpy())
    one = records[weeks == weeks.min()]
    g = build_copresence_graph(one, 9)
    assert g.n_edges > 0
    assert np.array_equal(g.cells, np.unique(points_to_cells(one.lon.to_numpy(), one.lat.to_numpy(), 9)))


@pytest.mark.parametrize("content", [b"", b"person_id,person_id,timestamp,lon,lat\n1,1,2024-01-01,9.0,45.0\n"])
def test_empty_or_duplicate_column_csv_records(tmp_path, capsys, content):
    (tmp_path / "r.csv").write_bytes(content)
    rc, err = run_cli(capsys, "graph", tmp_path / "r.csv", "--resolution", 9, "--out", tmp_path / "g.npz")
    assert_message(rc, err, "r.csv")


def test_truncated_parquet_records(tmp_path, capsys, small_city):
    data = Path(small_city.records).read_bytes()
    (tmp_path / "r.parquet").write_bytes(data[: len(data) // 2])
    rc, err = run_cli(capsys, "graph", tmp_path / "r.parquet", "--resolution", 9, "--out", tmp_path / "g.npz")
    assert_message(rc, err, "r.parquet", "truncated")


def test_records_in_a_projected_crs(tmp_path, capsys, records):
    metres = records.iloc[:2000].assign(lon=records.lon * 111_000, lat=records.lat * 111_000)  # e.g. UTM in lon/lat
    metres.to_parquet(tmp_path / "r.parquet")
    rc, err = run_cli(capsys, "graph", tmp_path / "r.parquet", "--resolution", 9, "--out", tmp_path / "g.npz")
    assert_message(rc, err, "outside [-180, 180]", "projected CRS", "EPSG:4326")


def test_polygon_layers_without_crs_in_another_crs_or_truncated(tmp_path, capsys, small_city):
    districts = gpd.read_file(small_city.districts)
    out = tmp_path / "cells.gpkg"
    districts.set_crs(None, allow_override=True).to_file(tmp_path / "nocrs.gpkg")
    rc, err = run_cli(capsys, "tessellate", tmp_path / "nocrs.gpkg", "--resolution", 8, "--out", out)
    assert_message(rc, err, "has no CRS", "set_crs")
    assert not out.exists()
    districts.to_crs(3857).to_file(tmp_path / "mercator.gpkg")  # a projected layer is reprojected, not misread
    assert run_cli(capsys, "tessellate", tmp_path / "mercator.gpkg", "--resolution", 8, "--out", out)[0] == 0
    ref = tmp_path / "ref.gpkg"
    assert run_cli(capsys, "tessellate", small_city.districts, "--resolution", 8, "--out", ref)[0] == 0
    assert set(gpd.read_file(out).h3_cell) == set(gpd.read_file(ref).h3_cell)
    whole = Path(small_city.districts).read_bytes()
    (tmp_path / "cut.gpkg").write_bytes(whole[: len(whole) // 2])
    rc, err = run_cli(capsys, "tessellate", tmp_path / "cut.gpkg", "--resolution", 8, "--out", tmp_path / "c2.gpkg")
    assert_message(rc, err, "cannot read polygon layer", "cut.gpkg", "truncated")
    assert not (tmp_path / "c2.gpkg").exists() and leftovers(tmp_path) == []


def test_a_file_of_several_layers_names_them_instead_of_reading_the_first(tmp_path, capsys, zone_config):
    """GDAL lists a GeoPackage's layers in its own order: reading the first would tessellate or count whichever
    came first. A table without geometry (QGIS's saved styles) does not make a file ambiguous."""
    import pyogrio

    from mobclip_core.modalities.build import build_region_dataset

    zones = tmp_path / "zones.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["s"]}), zones, layer="layer_styles")  # still one layer
    assert build_region_dataset(zone_config(columns=["young", "old"])).features["demographics"].notna().any().all()
    gpd.read_file(zones, layer="zones").iloc[:1].to_file(zones, layer="aaa_draft")
    with pytest.raises(InvalidInputError, match=r"zones.gpkg holds 2 layers \(.*aaa_draft.*\).*Save Features As"):
        build_region_dataset(zone_config(columns=["young", "old"]))
    rc, err = run_cli(capsys, "tessellate", zones, "--resolution", 8, "--out", tmp_path / "cells.gpkg")
    assert_message(rc, err, "holds 2 layers", "aaa_draft", "zones")
    assert not (tmp_path / "cells.gpkg").exists()
    from mobclip_core.sources import read_layer

    tables = tmp_path / "tables.gpkg"  # no geometry at all: the one table that is not QGIS's styles
    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["s"]}), tables, layer="layer_styles")
    pyogrio.write_dataframe(pd.DataFrame({"zone": ["a"], "people": [3]}), tables, layer="counts")
    assert list(read_layer(tables).columns) == ["zone", "people"]


# -- OD tables ---------------------------------------------------------------------------------------------------
def _od(records, flows) -> pd.DataFrame:
    from mobclip_core.grid import cells_to_strings, points_to_cells

    cells = cells_to_strings(points_to_cells(records.lon.to_numpy()[:20], records.lat.to_numpy()[:20], 9))
    return pd.DataFrame({"origin": cells[:10], "destination": cells[10:], "flow": flows})


@pytest.mark.parametrize("flows", [np.r_[-1.0, np.ones(9)], np.r_[np.nan, np.ones(9)]])
def test_negative_or_nan_od_flows_are_refused(records, flows):
    from mobclip_core.modalities import build_od_graph

    with pytest.raises(InvalidInputError, match="finite and non-negative"):
        build_od_graph(_od(records, flows))


def test_text_od_flows_are_refused_with_a_message(records):
    from mobclip_core.modalities import build_od_graph

    with pytest.raises(InvalidInputError, match="flow"):
        build_od_graph(_od(records, ["1", "2", "lots", "4", "5", "6", "7", "8", "9", "10"]))


# -- zone tables and the dataset builder ------------------------------------------------------------------------
@pytest.fixture()
def zone_config(small_city, tmp_path):
    zones = gpd.read_file(small_city.districts)
    zones["GEOID"] = np.arange(len(zones)) + 17031000  # integer ids, as census GeoPackages store them
    zones["young"] = np.arange(len(zones)) * 10.0 + 5
    zones["old"] = np.arange(len(zones)) * 3.0 + 1
    zones[["GEOID", "young", "old", "geometry"]].to_file(tmp_path / "zones.gpkg", driver="GPKG")

    def make(**demographics):
        raw = {
            "mobility": {"records": str(small_city.records)},
            "demographics": {"table": "zones.gpkg", "zone_id": "GEOID", **demographics},
        }
        return config_from_dict(raw, base_dir=tmp_path)

    return make


def test_numeric_zone_ids_with_named_columns(zone_config):
    from mobclip_core.modalities.build import build_region_dataset

    ds = build_region_dataset(zone_config(columns=["young", "old"]))
    demo = ds.features["demographics"]
    assert list(demo.columns) == ["demo_young", "demo_old"] and demo.notna().all(axis=1).any()


def test_numeric_zone_ids_without_columns_are_not_counted_as_a_bin(zone_config):
    from mobclip_core.modalities.build import build_region_dataset

    demo = build_region_dataset(zone_config()).features["demographics"]
    assert sorted(demo.columns) == ["demo_old", "demo_young"]  # GEOID is the id, not an age bin


def test_missing_image_path_at_the_library_door(small_city, tmp_path):
    from mobclip_core.modalities.build import build_region_dataset

    cfg = config_from_dict({"mobility": {"records": str(small_city.records)}, "image": {"path": "nope.tif"}}, tmp_path)
    with pytest.raises(MobClipError, match=r"nope\.tif.*does not exist"):
        build_region_dataset(cfg)


def test_missing_image_path_through_the_cli(small_city, tmp_path, capsys):
    (tmp_path / "c.toml").write_text(f'[mobility]\nrecords = "{small_city.records}"\n[image]\npath = "nope.tif"\n')
    rc, err = run_cli(capsys, "build", tmp_path / "c.toml", "--out", tmp_path / "ds")
    assert_message(rc, err, "[image] path = 'nope.tif'", "does not exist")
    assert not (tmp_path / "ds").exists()


# -- truncated or wrong embedding files ---------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".parquet", ".gpkg"])
def test_truncated_embedding_file_given_to_export(tmp_path, capsys, emb, suffix):
    whole = write_embeddings(emb, tmp_path / f"e{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "export", tmp_path / f"cut{suffix}", "--out", out)
    assert_message(
        rc, err, str(tmp_path / f"cut{suffix}"), "not a readable", "truncated", "export the embeddings again"
    )
    assert not out.exists() or (list(out.iterdir()) == [])
    (tmp_path / "empty.parquet").touch()
    rc, err = run_cli(capsys, "export", tmp_path / "empty.parquet", "--out", out)
    assert_message(rc, err, "0 bytes")


def test_tables_that_are_not_embeddings(tmp_path, capsys, emb, records):
    records.iloc[:10].to_parquet(tmp_path / "records.parquet")
    rc, err = run_cli(capsys, "export", tmp_path / "records.parquet", "--out", tmp_path / "out")
    assert_message(rc, err, "no embedding columns named emb_0, emb_1", "is this an embedding table")
    with pytest.raises(InvalidInputError, match="has no rows"):
        export_all(emb.iloc[:0], tmp_path / "out")
    twice = pd.concat([emb, emb.iloc[:3]])
    with pytest.raises(InvalidInputError, match="lists 3 cells twice"):
        export_all(twice, tmp_path / "out")
    mixed = emb.copy()
    mixed.index = [h3.cell_to_parent(c, 8) if i == 0 else c for i, c in enumerate(emb.index)]
    with pytest.raises(InvalidInputError, match="mixes H3 resolutions"):
        export_all(mixed.rename_axis("h3_cell"), tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_nan_rows_export_as_nodata_not_garbage(tmp_path, emb):
    import rasterio

    holes = emb.copy()
    holes.iloc[:5] = np.nan  # e.g. a distilled encoder's outside="nan" rows
    files = export_all(holes, tmp_path)
    back = read_embeddings(files["geoparquet"])
    assert back.iloc[:5].isna().all().all() and back.iloc[5:].notna().all().all()
    with rasterio.open(files["pca_rgb"]) as src:
        rgb = src.read()
        row, col = src.index(*h3.cell_to_latlng(emb.index[0])[::-1])
        assert (rgb[:, row, col] == 0).all()  # nodata where the embedding is NaN
        row, col = src.index(*h3.cell_to_latlng(emb.index[-1])[::-1])
        assert (rgb[:, row, col] > 0).all()
    with rasterio.open(files["geotiff"]) as src:
        row, col = src.index(*h3.cell_to_latlng(emb.index[-1])[::-1])
        np.testing.assert_allclose(src.read()[:, row, col], emb.iloc[-1].to_numpy(), rtol=1e-6)


# -- 3. atomic, umask-respecting, all-or-nothing outputs ------------------------------------------------------------
@pytest.fixture()
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_are_readable_as_the_umask_says(tmp_path, umask, emb, mask, small_dataset):
    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder

    umask(mask)
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    with atomic_path(tmp_path / "a.bin") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # a writer that makes its files private
        os.close(fd)
    files = [tmp_path / "a.bin", *export_all(emb, tmp_path / "export").values()]
    small_dataset.graph.save(tmp_path / "graph.npz")
    small_dataset.save(tmp_path / "dataset")
    lon, lat = np.array([9.0, 9.01, 9.02]), np.array([45.0, 45.01, 45.0])
    enc = DistilledEncoder(DistilConfig(degree=2, hidden=4, layers=1, epochs=1)).fit(lon, lat, np.eye(3))
    enc.save(tmp_path / "distilled")
    files += [tmp_path / "graph.npz", *(tmp_path / "dataset").rglob("*.*"), *(tmp_path / "distilled").iterdir()]
    for f in files:
        assert f.stat().st_mode & 0o777 == file_mode, (f, oct(f.stat().st_mode & 0o777))
    for d in (tmp_path / "export", tmp_path / "dataset", tmp_path / "dataset" / "features", tmp_path / "distilled"):
        assert d.stat().st_mode & 0o777 == dir_mode, (d, oct(d.stat().st_mode & 0o777))
    assert leftovers(tmp_path) == []


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_path(target) as tmp:
        tmp.write_text("half")
        1 / 0  # noqa: B018
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["table.parquet"]
    with pytest.raises(MobClipError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_text() == "old"


def test_failed_export_over_an_earlier_one_changes_nothing(tmp_path, emb):
    export_all(emb, tmp_path)
    before = snapshot(tmp_path)
    assert set(before) == EXPORT_NAMES
    # the same table plus cells on another continent: GeoParquet and GeoPackage are staged, then the GeoTIFF is
    # refused as too large -- the staged files must not reach the folder
    far = embedding_table(center=(-33.9, 151.2), seed=1)
    with pytest.raises(InvalidInputError, match="lower the pixels per cell"):
        export_all(pd.concat([emb, far]), tmp_path)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_dataset_folder_is_replaced_whole(tmp_path, small_dataset):
    from mobclip_core.dataset import RegionDataset

    small_dataset.save(tmp_path / "ds")
    (tmp_path / "ds" / "features" / "stale.parquet").write_bytes(b"from an older build")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "ds") as tmp:
        (tmp / "metadata.json").write_text("{}")
        raise RuntimeError("build failed half way")
    assert (tmp_path / "ds" / "features" / "stale.parquet").exists()  # failed: old folder untouched
    small_dataset.save(tmp_path / "ds")
    assert not (tmp_path / "ds" / "features" / "stale.parquet").exists()  # succeeded: whole new folder
    assert RegionDataset.load(tmp_path / "ds").cells.size == small_dataset.cells.size
    assert leftovers(tmp_path) == []


def _export_child(table: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "mobclip_core.cli", "export", str(table), "--out", str(out)],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # background shells ignore Ctrl-C
    )


def _wait_for_staged(out: Path, proc: subprocess.Popen, name: str = "embeddings.parquet", timeout: float = 120):
    """Wait until the child has staged ``name`` (its transaction is under way), then return."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any((s / name).exists() for s in out.glob(".mobclip-txn@*")):
            return
        if proc.poll() is not None:
            pytest.fail(f"export ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("export never started staging")


@pytest.fixture(scope="module")
def big_table(tmp_path_factory) -> Path:
    """Large enough that exporting it takes a good part of a second: room to interrupt it."""
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    embedding_table(rings=60, dim=32, seed=2).to_parquet(path)
    return path


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_signal_during_export_leaves_all_old_or_all_new(tmp_path, emb, big_table, signum, code, word):
    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    proc = _export_child(big_table, tmp_path)
    _wait_for_staged(tmp_path, proc)
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == code, err
    assert f"mobclip: {word}" in err and "Traceback" not in err
    now = snapshot(tmp_path)
    assert now == old or (set(now) == EXPORT_NAMES and all(now[n] != old[n] for n in EXPORT_NAMES))
    assert leftovers(tmp_path) == []


def test_sigterm_during_the_moves_still_ends_all_new(tmp_path, emb, monkeypatch):
    import mobclip_core.io as io_module

    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    real_replace, calls = os.replace, []

    def replace_then_signal(src, dst):  # SIGTERM arrives right after the first file is moved into place
        real_replace(src, dst)
        if Path(dst).parent == tmp_path:
            calls.append(Path(dst).name)
            if len(calls) == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(io_module.os, "replace", replace_then_signal)
    with pytest.raises(SystemExit) as exc:
        export_all(embedding_table(seed=5), tmp_path)
    assert exc.value.code == 143 and len(calls) == 4  # the signal still ends the program, after the commit
    now = snapshot(tmp_path)
    assert set(now) == EXPORT_NAMES and all(now[n] != old[n] for n in EXPORT_NAMES)  # all new, none old
    assert leftovers(tmp_path) == [] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("locked", ["embeddings.parquet", "embeddings_pca_rgb.tif"])
def test_an_output_held_open_elsewhere_leaves_every_old_output_in_place(tmp_path, emb, monkeypatch, locked):
    """Windows refuses to replace a file another program holds open (a layer QGIS shows from the last run): the
    commit stops before anything new is in place, puts back what it had moved aside, and says what to do."""
    import mobclip_core.io as io_module

    monkeypatch.setattr(io_module, "_OPEN_FILES_LOCKED", True)  # as on Windows
    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    real_replace = io_module.os.replace

    def replace_unless_open(src, dst):  # a file held open can be neither moved nor replaced
        if tmp_path / locked in (Path(src), Path(dst)):
            raise PermissionError(13, "The process cannot access the file because it is being used", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", replace_unless_open)
    with pytest.raises(OutputInUseError, match=f"cannot replace .*{locked}.*remove the layers read from it") as exc:
        export_all(embedding_table(seed=5), tmp_path)
    assert "were left as they were" in str(exc.value)
    assert snapshot(tmp_path) == old and leftovers(tmp_path) == []  # all old, nothing staged left behind
    monkeypatch.setattr(io_module.os, "replace", real_replace)
    export_all(embedding_table(seed=5), tmp_path)  # once the file is closed, the next run replaces everything
    assert all(snapshot(tmp_path)[n] != old[n] for n in EXPORT_NAMES)


def test_a_new_output_that_cannot_be_put_in_place_leaves_every_old_one(tmp_path, emb, monkeypatch):
    """The second pass fails (a fresh file held for a moment by a virus scanner, on Windows): the new files already
    in place go back and the old ones return; before, the old ones were deleted with the staging folder."""
    import mobclip_core.io as io_module

    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    real_replace = io_module.os.replace
    staging_name = ".mobclip-txn@"

    def refuse_new_tif(src, dst):  # moving the new GeoTIFF out of the staging folder fails
        if staging_name in str(src) and Path(src).name == "embeddings.tif" and Path(dst).parent == tmp_path:
            raise PermissionError(13, "The process cannot access the file", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", refuse_new_tif)
    with pytest.raises(OutputInUseError, match="cannot replace .*embeddings.tif"):
        export_all(embedding_table(seed=5), tmp_path)
    assert snapshot(tmp_path) == old and leftovers(tmp_path) == []


def test_old_outputs_an_interrupted_attempt_moved_aside_come_back_too(tmp_path, emb, monkeypatch):
    """A stop (Ctrl-Break, on Windows not held back before) right after the first old file was moved aside, then
    the rollback's second attempt meets a file held open: every old file is back, the first one included."""
    import mobclip_core.io as io_module

    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    real_replace = io_module.os.replace
    moved = []

    def stop_then_refuse(src, dst):
        if Path(src).parent == tmp_path and not moved:  # the first old output goes aside, then the stop
            real_replace(src, dst)
            moved.append(Path(src).name)
            raise SystemExit(143)
        if Path(src) == tmp_path / "embeddings_pca_rgb.tif":
            raise PermissionError(13, "The process cannot access the file", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", stop_then_refuse)
    with pytest.raises(SystemExit):
        export_all(embedding_table(seed=5), tmp_path)
    assert moved and snapshot(tmp_path) == old and leftovers(tmp_path) == []


def test_one_file_held_open_elsewhere_is_left_as_it_was(tmp_path, monkeypatch):
    import mobclip_core.io as io_module

    monkeypatch.setattr(io_module, "_OPEN_FILES_LOCKED", True)  # as on Windows
    target = tmp_path / "similarity.tif"
    target.write_text("old")

    def refuse(src, dst):
        raise PermissionError(13, "The process cannot access the file because it is being used", str(dst))

    monkeypatch.setattr(io_module.os, "replace", refuse)
    with pytest.raises(OutputInUseError, match="cannot replace .*similarity.tif.*remove the layers read from it"):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["similarity.tif"]


def test_stop_between_journal_and_moves_finishes_the_commit_and_records_it(tmp_path, emb, monkeypatch):
    """A stop after the commit journal is written rolls the outputs forward: they are complete, and the process
    records so (a stopped worker reports it; it must not claim that nothing new was written)."""
    import mobclip_core.io as io_module

    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    real_fsync = io_module._fsync

    def fsync_then_stop(path):
        real_fsync(path)
        if (Path(path) / ".mobclip-commit.json").exists():  # the staging folder, once its journal is written
            raise SystemExit(143)

    monkeypatch.setattr(io_module, "_fsync", fsync_then_stop)
    monkeypatch.setattr(io_module, "COMMITTED", [])
    with pytest.raises(SystemExit):
        export_all(embedding_table(seed=5), tmp_path)
    now = snapshot(tmp_path)
    assert set(now) == EXPORT_NAMES and all(now[n] != old[n] for n in EXPORT_NAMES)  # rolled forward: all new
    assert io_module.COMMITTED == [tmp_path] and leftovers(tmp_path) == []


def _stopped_worker_events(monkeypatch, capfd, train) -> list[dict]:
    """Run ``python -m mobclip_core.worker train`` in this process with ``train`` as its task, which ends in the
    parent's stop signal; returns the events the child wrote."""
    import mobclip_core.io as io_module
    from mobclip_core import worker

    monkeypatch.setattr(worker, "_train", train)
    monkeypatch.setattr(io_module, "COMMITTED", [])
    monkeypatch.setattr(worker, "install_stop_handlers", lambda: None)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # _Events redirects stdout for the run: restored after
    with pytest.raises(SystemExit) as exc:
        worker.main(["train", "unused.toml"])
    assert exc.value.code == 128 + signal.SIGTERM
    return [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]


def test_worker_stopped_after_its_outputs_are_complete_says_so(tmp_path, monkeypatch, capfd):
    """The parent's stop can reach the child after its outputs are committed but before its "done" line: the child
    must still report the committed folder (the QGIS message then says the outputs are complete)."""
    from mobclip_core import worker

    def train(events, config, rebuild, threads=None):
        with output_transaction(tmp_path) as txn:
            txn.path("a.txt").write_text("new")
        return {"output": str(tmp_path)}

    real_emit = worker._Events.emit

    def emit(self, event, **fields):
        if event == "done":  # the stop lands just before the done line is written
            worker._on_stop(signal.SIGTERM, None)
        real_emit(self, event, **fields)

    monkeypatch.setattr(worker._Events, "emit", emit)
    events = _stopped_worker_events(monkeypatch, capfd, train)
    assert events == [{"event": "stopped", "committed": [str(tmp_path)]}]
    assert (tmp_path / "a.txt").read_text() == "new"


def test_worker_stopped_after_the_dataset_says_nothing_new_was_written(small_dataset, tmp_path, monkeypatch, capfd):
    """A stop during LINE comes after the run's dataset was saved (atomically, in the output folder): that is a step,
    not the result. The child must not report its folder as complete (QGIS said the outputs were complete)."""
    from mobclip_core import worker

    def train(events, config, rebuild, threads=None):
        small_dataset.save(tmp_path / "dataset")
        worker._on_stop(signal.SIGTERM, None)  # Cancel during LINE

    events = _stopped_worker_events(monkeypatch, capfd, train)
    assert (tmp_path / "dataset" / "cells.parquet").exists()
    assert not [e for e in events if e["event"] == "stopped"], events


def test_worker_progress_never_goes_back_within_a_stage(monkeypatch, capfd):
    """The dataset stage advances on each log line; a log line after the stage reported 100 % must not move the
    QGIS progress bar back (seen as 20.0 -> 19.7 on a slow machine)."""
    from mobclip_core import worker

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # _Events redirects stdout: restored after
    events = worker._Events()
    events.progress("dataset", 0.0, force=True)
    events.log("poi: 10 cells")
    events.progress("dataset", 1.0, force=True)
    events.log("dataset saved")
    events.progress("line", 0.0)
    out = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    progress = [(e["stage"], e["fraction"]) for e in out if e["event"] == "progress"]
    assert progress == [("dataset", 0.0), ("dataset", 0.5), ("dataset", 1.0), ("dataset", 1.0), ("line", 0.0)]


def test_sigkill_leftovers_are_cleaned_or_finished_next_time(tmp_path, emb, big_table):
    export_all(emb, tmp_path)
    old = snapshot(tmp_path)
    proc = _export_child(big_table, tmp_path)
    _wait_for_staged(tmp_path, proc)
    proc.kill()  # SIGKILL: no cleanup can run
    proc.communicate(timeout=60)
    assert snapshot(tmp_path) == old  # never mixed
    assert leftovers(tmp_path)  # its staging folder is still there ...
    export_all(emb, tmp_path)
    assert leftovers(tmp_path) == []  # ... until the next writer into the folder removes it

    # a writer killed in the middle of its moves: the journal lets the next writer finish them
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staging = tmp_path / f".mobclip-txn@{host_tag()}@{dead.pid}@ab12"
    staging.mkdir()
    (staging / "a.txt").write_text("new a")
    (staging / ".mobclip-commit.json").write_text(json.dumps(["a.txt", "b.txt"]))
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("new b")  # moved before the kill
    clean_stale(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "b.txt").read_text() == "new b"
    assert leftovers(tmp_path) == []


def test_outputs_from_a_worker_thread(tmp_path, emb):
    # QGIS runs algorithms in worker threads, where Python cannot touch signal handlers: writing still works
    import threading

    before = signal.getsignal(signal.SIGTERM)
    errors: list[BaseException] = []

    def work():
        try:
            export_all(emb, tmp_path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert not errors and set(snapshot(tmp_path)) == EXPORT_NAMES and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_transaction_refuses_names_outside_its_folder(tmp_path):
    with pytest.raises(InvalidInputError, match="plain relative path"), output_transaction(tmp_path) as txn:
        txn.path("../escape.txt")
    assert leftovers(tmp_path) == []


# -- 2. one fingerprint rule ------------------------------------------------------------------------------------
def test_fingerprint_reads_the_whole_graph_files_and_settings(tmp_path, small_dataset):
    from mobclip_core.modalities import MobilityGraph
    from mobclip_core.modalities.cache import fingerprint, section_fingerprint

    g = small_dataset.graph
    a = g.adjacency.copy()
    a.data[-1] += 1.0  # the last weight only: far past the first 2 KB
    changed = MobilityGraph(g.cells, a)
    assert fingerprint(g) == fingerprint(MobilityGraph(g.cells.copy(), g.adjacency.copy()))
    assert fingerprint(g) != fingerprint(changed)
    assert fingerprint(LineConfig()) != fingerprint(LineConfig(dim=64))

    (tmp_path / "r.csv").write_text("a\n1\n")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "p0.parquet").write_text("x")
    section = {"records": "r.csv", "folder": "parts", "sampling": "top_k"}
    key = section_fingerprint(section, lambda s: tmp_path / s)
    assert key == section_fingerprint(dict(section), lambda s: tmp_path / s)
    os.utime(tmp_path / "r.csv", ns=(0, 10**18))  # same size and text, new modification time
    assert section_fingerprint(section, lambda s: tmp_path / s) != key
    key = section_fingerprint(section, lambda s: tmp_path / s)
    (tmp_path / "parts" / "p1.parquet").write_text("y")  # a new file in a Parquet folder
    assert section_fingerprint(section, lambda s: tmp_path / s) != key
    assert fingerprint("r.csv") != fingerprint(tmp_path / "r.csv")  # text is text, a Path is a file


def test_feature_cache_recomputes_an_unreadable_entry(tmp_path):
    from mobclip_core.modalities.cache import cached, fingerprint

    key = fingerprint("t", 1)
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [1.0, 2.0]})

    first = cached(tmp_path, "t", key, compute)
    pd.testing.assert_frame_equal(cached(tmp_path, "t", key, compute), first)
    assert len(calls) == 1
    (tmp_path / f"t-{key}.parquet").write_bytes(b"garbage")
    pd.testing.assert_frame_equal(cached(tmp_path, "t", key, compute), first)
    assert len(calls) == 2
    arr = cached(tmp_path, "line", key, lambda: np.arange(4.0), kind="array")
    np.testing.assert_array_equal(cached(tmp_path, "line", key, lambda: np.zeros(4), kind="array"), arr)


def test_dataset_rebuilt_when_an_input_file_changes(small_city, tmp_path):
    from mobclip_core.dataset import RegionDataset
    from mobclip_core.pipeline import run_pipeline

    records = pd.read_parquet(small_city.records)
    records.to_parquet(tmp_path / "records.parquet")
    toml = (
        'output = "out"\n[mobility]\nrecords = "records.parquet"\n'
        f'[demographics]\nraster = "{small_city.demographics}"\n'
        "[line]\ndim = 8\nsamples_per_edge = 1\n[train]\nembedding_dim = 8\nepochs = 1\nbatch_size = 256\n"
    )
    (tmp_path / "c.toml").write_text(toml)
    logs: list[str] = []
    run = lambda: run_pipeline(load_config(tmp_path / "c.toml"), log=logs.append, progress=False)  # noqa: E731
    first = run()
    assert any("building region dataset" in m for m in logs)
    first_stats = RegionDataset.load(tmp_path / "out" / "dataset").graph.stats()
    logs.clear()
    run()
    assert any("reusing region dataset" in m for m in logs)  # nothing changed: reused
    logs.clear()
    # same config text, same file name, other records (one week dropped)
    from mobclip_core.modalities import to_week

    weeks = to_week(records.timestamp.to_numpy())
    records[weeks != weeks.max()].to_parquet(tmp_path / "records.parquet")
    second = run()
    assert any("building region dataset" in m for m in logs)
    assert second.embeddings.shape[0] <= first.embeddings.shape[0]
    assert RegionDataset.load(tmp_path / "out" / "dataset").graph.stats()["flow_total"] < first_stats["flow_total"]
    assert leftovers(tmp_path) == []


def test_training_refuses_at_once_when_last_runs_layer_is_held_open(small_city, tmp_path, monkeypatch):
    """A layer of the previous run held open (Windows, QGIS) would stop the outputs at the end: said before any
    work, not after a training whose results would then be thrown away."""
    import mobclip_core.io as io_module
    from mobclip_core.pipeline import run_pipeline

    toml = (
        f'output = "out"\n[mobility]\nrecords = "{small_city.records}"\n'
        f'[demographics]\nraster = "{small_city.demographics}"\n'
        "[line]\ndim = 8\nsamples_per_edge = 1\n[train]\nembedding_dim = 8\nepochs = 1\nbatch_size = 256\n"
    )
    (tmp_path / "c.toml").write_text(toml)
    logs: list[str] = []
    run_pipeline(load_config(tmp_path / "c.toml"), log=logs.append, progress=False)
    gpkg = tmp_path / "out" / "embeddings.gpkg"
    before = gpkg.read_bytes()
    real_replace = io_module.os.replace
    monkeypatch.setattr(io_module, "_OPEN_FILES_LOCKED", True)  # as on Windows: elsewhere nothing is checked

    def replace_unless_open(src, dst):
        if gpkg in (Path(src), Path(dst)):
            raise PermissionError(13, "The process cannot access the file because it is being used", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", replace_unless_open)
    logs.clear()
    with pytest.raises(OutputInUseError, match="cannot replace .*embeddings.gpkg"):
        run_pipeline(load_config(tmp_path / "c.toml"), log=logs.append, progress=False)
    assert not any("region dataset" in m for m in logs)  # refused before the dataset, let alone the training
    assert gpkg.read_bytes() == before and leftovers(tmp_path / "out") == []


# -- 4. the distilled encoder knows where it was trained -------------------------------------------------------
@pytest.fixture(scope="module")
def milan_encoder():
    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(9.1, 9.25, 300), rng.uniform(45.42, 45.52, 300)
    teacher = np.c_[np.sin(30 * lon), np.cos(30 * lat)]
    cfg = DistilConfig(degree=4, hidden=16, layers=2, epochs=3)
    return DistilledEncoder(cfg).fit(lon, lat, teacher), lon, lat


def test_distilled_encoder_warns_outside_its_training_extent(milan_encoder):
    enc, lon, lat = milan_encoder
    here, sydney = (9.18, 45.46), (151.2, -33.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside: no warning at all
        inside = enc.embed(lon[:50], lat[:50])
    assert np.isfinite(inside).all()
    pts = np.array([here, sydney])
    with pytest.warns(OutsideExtentWarning, match=r"1 of 2 points lie outside.*lon 9\.1.*outside='nan'"):
        both = enc.embed(pts[:, 0], pts[:, 1])
    assert np.isfinite(both).all()  # warn: values still given
    nan = enc.embed(pts[:, 0], pts[:, 1], outside="nan")
    assert np.isfinite(nan[0]).all() and np.isnan(nan[1]).all()
    np.testing.assert_allclose(nan[0], both[0], rtol=1e-6)
    with pytest.raises(InvalidInputError, match=r"outside the area this encoder was trained on.*lon 151\.2"):
        enc.embed(pts[:, 0], pts[:, 1], outside="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.embed(pts[:, 0], pts[:, 1], outside="ignore")
    with pytest.raises(InvalidInputError, match="outside must be one of"):
        enc.embed(pts[:, 0], pts[:, 1], outside="drop")


def test_distilled_extent_survives_save_and_old_configs_still_load(milan_encoder, tmp_path):
    from mobclip_core.encoders.distilled import DistilledEncoder

    enc, _, _ = milan_encoder
    enc.save(tmp_path / "d")
    back = DistilledEncoder.load(tmp_path / "d")
    assert back.extent == enc.extent
    nan = back.embed(np.array([151.2]), np.array([-33.9]), outside="nan")
    assert np.isnan(nan).all()
    meta = json.loads((tmp_path / "d" / "config.json").read_text())
    del meta["extent"]  # a config.json written before extents were saved
    (tmp_path / "d" / "config.json").write_text(json.dumps(meta))
    old = DistilledEncoder.load(tmp_path / "d")
    assert old.extent is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            old.embed(np.array([151.2]), np.array([-33.9])),
            enc.embed(np.array([151.2]), np.array([-33.9]), outside="ignore"),
        )


def test_worker_reports_locations_outside_the_extent_as_a_warning_event(milan_encoder, tmp_path):
    """The QGIS child process: a Python warning would stay on its stderr, so the count goes out as an event."""
    from mobclip_core.worker import run_worker

    enc, _, _ = milan_encoder
    enc.save(tmp_path / "d")
    np.save(tmp_path / "c.npy", np.array([[9.18, 45.46], [151.2, -33.9], [9.2, 45.5]]))
    for outside in ("warn", "nan"):
        events: list[dict] = []
        args = ["embed", str(tmp_path / "d"), str(tmp_path / "c.npy"), str(tmp_path / f"{outside}.npy")]
        result = run_worker([*args, "--outside", outside], python=sys.executable, on_event=events.append)
        warned = [e["message"] for e in events if e["event"] == "warning"]
        assert len(warned) == 1 and warned[0].startswith("1 of 3 locations lie outside the area"), events
        assert ("left empty (NULL)" in warned[0]) == (outside == "nan") and result["outside"] == 1
        values = np.load(tmp_path / f"{outside}.npy")
        assert np.isfinite(values[[0, 2]]).all()
        assert np.isnan(values[1]).all() if outside == "nan" else np.isfinite(values[1]).all()


def test_distillation_refuses_nan_targets():
    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder

    with pytest.raises(InvalidInputError, match="1 target rows hold NaN"):
        DistilledEncoder(DistilConfig(degree=2, epochs=1)).fit([9.0, 9.1], [45.0, 45.1], [[1.0], [np.nan]])


# -- trainer cases (the lead is rewriting the trainer) ---------------------------------------------------------------
QUICK = dict(batch_size=64, patience=0)


@pytest.fixture(scope="module")
def trained_dir(small_dataset, tmp_path_factory):
    from mobclip_core.training import train_mobclip

    out = tmp_path_factory.mktemp("run")
    train_mobclip(
        small_dataset,
        TrainConfig(epochs=2, embedding_dim=16, **QUICK),
        LineConfig(dim=16, samples_per_edge=2),
        checkpoint_dir=out / "checkpoint",
    )
    return out


def _resume(small_dataset, out: Path, dim: int = 16):
    from mobclip_core.training import train_mobclip

    return train_mobclip(
        small_dataset,
        TrainConfig(epochs=3, embedding_dim=dim, **QUICK),
        LineConfig(dim=dim, samples_per_edge=2),
        checkpoint_dir=out / "checkpoint",
        resume=True,
    )


def test_resume_from_a_truncated_checkpoint(small_dataset, trained_dir, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_dir, out)
    last = out / "checkpoint" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        _resume(small_dataset, out)


def test_resume_after_a_dimension_change(small_dataset, trained_dir, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_dir, out)
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        _resume(small_dataset, out, dim=8)


def test_embedding_dim_zero_at_the_library_door(small_dataset):
    from mobclip_core.training import train_mobclip

    with pytest.raises(MobClipError, match="embedding_dim"):
        train_mobclip(
            small_dataset,
            TrainConfig(embedding_dim=0, epochs=1, graph_encoder="mlp"),
            LineConfig(dim=8, samples_per_edge=1),
        )


def test_line_cache_sees_the_whole_graph(small_dataset, tmp_path):
    from mobclip_core.modalities import MobilityGraph
    from mobclip_core.training.pretrain import line_embeddings

    line = LineConfig(dim=8, samples_per_edge=1, batch_size=8192)
    g = small_dataset.graph
    a = g.adjacency.copy()
    a.data[-2:] += 50.0  # one edge (both directions) near the end of the arrays
    first = line_embeddings(g, line, cache=tmp_path).embedding
    other = line_embeddings(MobilityGraph(g.cells, a), line, cache=tmp_path).embedding
    fresh = line_embeddings(MobilityGraph(g.cells, a), line, cache=None).embedding
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(other, fresh)


def test_resume_keeps_the_early_stopping_count(small_dataset, tmp_path):
    from mobclip_core.training import train_mobclip

    line = LineConfig(dim=16, samples_per_edge=1, batch_size=8192)

    def cfg(epochs):
        return TrainConfig(
            epochs=epochs, embedding_dim=16, batch_size=256, patience=2, lr=0.2, modalities=["demographics"]
        )

    whole = train_mobclip(small_dataset, cfg(60), line)
    stop = int(whole.history.epoch.iloc[-1])  # stopped early here: its best epoch was patience epochs before
    if stop >= 59:
        pytest.fail("the reference run did not stop early: raise lr so that it does")
    train_mobclip(small_dataset, cfg(stop), line, checkpoint_dir=tmp_path)  # stopped one epoch short of the stop
    resumed = train_mobclip(small_dataset, cfg(60), line, checkpoint_dir=tmp_path, resume=True)
    assert list(resumed.history.epoch) == list(whole.history.epoch)


def test_timestamps_in_milliseconds_and_ambiguous_day_month_strings():
    """Epoch milliseconds (JavaScript, Java exports) land in the same weeks as seconds, not in 10-minute "weeks";
    day-and-month-first strings are refused with the fix instead of read month-first when every day is <= 12."""
    from mobclip_core.exceptions import InvalidInputError
    from mobclip_core.modalities import to_week

    seconds = np.array([1_580_515_200, 1_580_601_600, 1_581_120_000, 1_583_020_800], dtype=np.int64)  # Feb/Mar 2020
    weeks = to_week(seconds)
    assert len(set(weeks)) == 3
    for unit in (1_000, 1_000_000, 1_000_000_000):
        np.testing.assert_array_equal(to_week(seconds * unit), weeks)
    np.testing.assert_array_equal(to_week(seconds * 1000.0), weeks)
    iso = np.array(["2020-02-01 00:00", "2020-02-02 00:00", "2020-02-08 00:00", "2020-03-01 00:00"], dtype=object)
    np.testing.assert_array_equal(to_week(iso), weeks)
    with pytest.raises(InvalidInputError, match="'01/02/2020 00:00' put day and month first.*ISO 8601"):
        to_week(np.array(["01/02/2020 00:00", "02/02/2020 00:00"], dtype=object))


@pytest.mark.parametrize("rows", ["1;2024-01-01;9,0;45,0\n2;2024-01-01;9,1;45,1\n", "1;2024-01-01;9.0;45.0\n"])
def test_semicolon_records_say_so(tmp_path, capsys, rows):
    """A semicolon-separated CSV (with decimal commas, or without: then it reads as one column): the message says
    what the file looks like and the fix."""
    (tmp_path / "r.csv").write_text("person_id;timestamp;lon;lat\n" + rows)
    rc, err = run_cli(capsys, "graph", tmp_path / "r.csv", "--resolution", 9, "--out", tmp_path / "g.npz")
    assert rc != 0 and "looks semicolon- or tab-separated; save it as a comma-separated CSV" in err, err
    assert not (tmp_path / "g.npz").exists()


def test_a_crashed_childs_stderr_is_shown_from_the_start_of_a_line():
    """The message keeps the end of a long stderr, cut where a line starts (it began "] spatial_weight)")."""
    import collections
    import types

    from mobclip_core.exceptions import WorkerError
    from mobclip_core.worker import _outcome

    lines = [f"line {i}: {'x' * 50}\n" for i in range(200)]
    with pytest.raises(WorkerError) as caught:
        _outcome(types.SimpleNamespace(returncode=1), None, None, collections.deque(lines))
    shown = str(caught.value).split("\n", 1)[1]
    assert shown.startswith("line ") and shown.endswith("line 199: " + "x" * 50) and len(shown) <= 3000


def test_a_modality_that_misses_every_mobility_cell_says_where_to_look(small_city, tmp_path):
    """POIs of another place than the mobility data: the message says the region is the cells mobility reaches."""
    from mobclip_core.modalities.build import build_region_dataset

    pois = gpd.read_file(small_city.pois).to_crs(4326)
    pois.geometry = pois.geometry.translate(xoff=5.0)  # 5 degrees east: no cell in common
    pois.to_file(tmp_path / "elsewhere.gpkg")
    raw = {"mobility": {"records": str(small_city.records)}, "poi": {"path": "elsewhere.gpkg", "encoder": "counts"}}
    with pytest.raises(Exception, match="covers none of the .* cells the mobility data reaches .* right CRS"):
        build_region_dataset(config_from_dict(raw, base_dir=tmp_path))


def test_an_output_folder_inside_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "a_file.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=r"a_file.txt/run lies inside a file, not a folder: give another"):
        with output_transaction(tmp_path / "a_file.txt" / "run") as txn:
            txn.path("a.txt").write_text("never")
    assert (tmp_path / "a_file.txt").read_text() == "x"
