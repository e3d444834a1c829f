"""Region dataset round trip, config validation, CLI subcommands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mobclip_core.cli import main
from mobclip_core.config import config_from_dict
from mobclip_core.dataset import RegionDataset
from mobclip_core.exceptions import ConfigError, ModalityMissingError
from mobclip_core.grid import polygons_to_cells


def test_dataset_aligned_and_round_trip(small_dataset, tmp_path):
    ds = small_dataset
    assert set(ds.features) == {"poi", "image", "demographics"}
    for df in ds.features.values():
        assert (df.index == ds.cell_ids).all()
    ds.save(tmp_path / "ds")
    back = RegionDataset.load(tmp_path / "ds")
    assert (back.cells == ds.cells).all()
    assert abs(back.graph.adjacency - ds.graph.adjacency).max() == 0
    for name, df in ds.features.items():
        pd.testing.assert_frame_equal(back.features[name], df, check_dtype=False)
    meta = back.metadata
    assert meta["resolution"] == 9 and meta["modalities"]["poi"]["dim"] == 384
    import geopandas as gpd

    cells = gpd.read_parquet(tmp_path / "ds" / "cells.parquet")  # real GeoParquet
    assert cells.crs.to_epsg() == 4326 and len(cells) == ds.cells.size


def test_modality_missing_for_all_cells(small_dataset):
    ds = RegionDataset(small_dataset.cells, small_dataset.graph, {"poi": small_dataset.features["poi"] * np.nan})
    with pytest.raises(ModalityMissingError, match="missing for every cell"):
        ds.feature_matrix("poi")
    with pytest.raises(ModalityMissingError, match="not in this dataset"):
        ds.feature_matrix("image")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mobility": {}}, "exactly one of 'records'"),
        ({"mobility": {"records": "r.parquet"}, "resolution": 16}, "unknown H3 resolution"),
        ({"mobility": {"records": "r.parquet"}, "train": {"modalities": ["smell"]}}, "unknown modality"),
        ({"mobility": {"records": "r.parquet"}, "poi": {"colour": 1}}, r"unknown option\(s\) \['colour'\] in \[poi\]"),
        (
            {"mobilty": {"records": "r.parquet"}},
            r"unknown top-level option\(s\) \['mobilty'\] \(did you mean 'mobility'\?\); known",
        ),
        ({"mobility": {"records": "r.parquet", "ratio": 2}}, "ratio must be in"),
        ({"mobility": {"records": "r.parquet"}, "line": {"order": "third"}}, "order must be"),
        ({"mobility": {"records": "r.parquet", "engine": "hadoop"}}, "engine must be"),
    ],
)
def test_bad_config(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_cli_help_lists_steps(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("demo", "build", "graph", "tessellate", "train", "export"):
        assert cmd in out


def test_cli_graph_and_tessellate(small_city, tmp_path, capsys):
    from mobclip_core.modalities import MobilityGraph, build_copresence_graph

    assert (
        main(
            ["graph", str(small_city.records), "--resolution", "9", "--out", str(tmp_path / "g.npz"), "--top-k", "0.3"]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    graph = MobilityGraph.load(tmp_path / "g.npz")
    expected = build_copresence_graph(pd.read_parquet(small_city.records), 9).top_k(0.3)
    assert np.array_equal(graph.cells, expected.cells) and abs(graph.adjacency - expected.adjacency).max() == 0
    assert printed == expected.stats()
    assert main(["tessellate", str(small_city.districts), "--resolution", "8", "--out", str(tmp_path / "c.gpkg")]) == 0
    import geopandas as gpd

    cells = gpd.read_file(tmp_path / "c.gpkg")
    assert cells.h3_cell.str.len().eq(15).all() and cells.h3_cell.is_unique
    districts = gpd.read_file(small_city.districts)
    expected_cells = polygons_to_cells(districts.to_crs(4326).geometry.values, 8, cell_ids="str")
    assert set(cells.h3_cell) == set(expected_cells["h3_cell"])
    assert cells.crs.to_epsg() == 4326 and cells.geometry.geom_type.eq("Polygon").all()


def test_cli_output_into_a_geopackage_keeps_its_other_layers(small_city, tmp_path, capsys):
    """GIS users keep many layers in one GeoPackage: writing cells into it adds (or replaces) that layer only."""
    import geopandas as gpd
    import pyogrio

    out = tmp_path / "project.gpkg"
    districts = gpd.read_file(small_city.districts)
    districts.to_file(out, layer="districts")
    districts.iloc[:2].to_file(out, layer="notes")
    for res in (8, 7):  # the second run replaces the cells layer, keeping the others
        assert main(["tessellate", str(small_city.districts), "--resolution", str(res), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "other layers kept: districts, notes" in printed
    assert sorted(n for n, _ in pyogrio.list_layers(out)) == ["cells", "districts", "notes"]
    assert len(gpd.read_file(out, layer="districts")) == len(districts)
    assert len(gpd.read_file(out, layer="notes")) == 2
    expected = polygons_to_cells(districts.to_crs(4326).geometry.values, 7, cell_ids="str")["h3_cell"]
    assert set(gpd.read_file(out, layer="cells").h3_cell) == set(expected)


def test_a_layer_named_in_another_case_is_replaced_and_an_empty_file_written_anew(small_city, tmp_path):
    """GeoPackage layer names compare without case (SQLite's): "Cells" is the layer "cells" replaces (GDAL refused
    to create it beside); an empty placeholder file is simply written."""
    import geopandas as gpd
    import pyogrio

    from mobclip_core.geofile import write_geofile

    districts = gpd.read_file(small_city.districts).to_crs(4326)
    out = tmp_path / "case.gpkg"
    districts.to_file(out, layer="Cells")
    districts.iloc[:2].to_file(out, layer="notes")
    assert write_geofile(districts.iloc[:3], out, layer="cells") == ["notes"]
    assert sorted(n for n, _ in pyogrio.list_layers(out)) == ["cells", "notes"]
    assert len(gpd.read_file(out, layer="cells")) == 3
    empty = tmp_path / "empty.gpkg"
    empty.write_bytes(b"")
    assert write_geofile(districts.iloc[:3], empty, layer="cells") == []
    assert [n for n, _ in pyogrio.list_layers(empty)] == ["cells"]


def test_cli_refuses_a_geopackage_open_elsewhere_or_not_a_geopackage(small_city, tmp_path, capsys):
    import geopandas as gpd

    out = tmp_path / "open.gpkg"
    gpd.read_file(small_city.districts).to_file(out, layer="districts")
    before = out.read_bytes()
    (tmp_path / "open.gpkg-wal").write_bytes(b"")  # what SQLite keeps beside a file QGIS has open
    args = ["tessellate", str(small_city.districts), "--resolution", "8", "--out"]
    assert main([*args, str(out)]) == 2
    assert (
        "open.gpkg is open in another program, or was left unfinished by one (open.gpkg-wal" in capsys.readouterr().err
    )
    assert out.read_bytes() == before
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a geopackage")
    assert main([*args, str(junk)]) == 2
    err = capsys.readouterr().err
    assert "junk.gpkg exists but is not a GeoPackage" in err and "Traceback" not in err
    assert junk.read_text() == "not a geopackage"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.gpkg", "open.gpkg", "open.gpkg-wal"]


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text('resolution = 99\n[mobility]\nrecords = "x.parquet"\n')
    assert main(["build", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert "unknown H3 resolution 99" in err and "Traceback" not in err


def test_config_error_is_config_error():
    with pytest.raises(ConfigError):
        config_from_dict({"mobility": {"records": "a", "od": "b"}})


def test_plugin_zip_is_clean(tmp_path):
    import configparser
    import importlib.util
    import zipfile
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("build_plugin", Path(__file__).parents[1] / "scripts/build_plugin.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = mod.build(tmp_path / "mobclip.zip")
    names = zipfile.ZipFile(path).namelist()
    assert "mobclip/metadata.txt" in names and "mobclip/LICENSE" in names and "mobclip/__init__.py" in names
    assert any(n.startswith("mobclip/processing_algorithms/") for n in names)
    assert any(n.startswith("mobclip/mobclip_core/grid/") for n in names)
    assert not [n for n in names if n.endswith((".pyc", ".so", ".pt")) or "__pycache__" in n or "/tests/" in n]
    meta = configparser.ConfigParser()
    meta.read_string(zipfile.ZipFile(path).read("mobclip/metadata.txt").decode())
    assert meta["general"]["hasProcessingProvider"] == "yes" and meta["general"]["qgisMinimumVersion"] == "3.22"


def test_loss_curve_plot_is_quiet_and_leaves_the_backend_alone(tmp_path):
    """In a fresh process (matplotlib warns once per process): the loss curve is drawn without pyplot's backend
    switch and without matplotlib's "Unable to import Axes3D" warning, which Debian's mpl_toolkits (installed with
    QGIS) beside a pip matplotlib would print in a newcomer's first demo run."""
    import subprocess
    import sys

    code = (
        "import sys, warnings, pandas as pd; warnings.simplefilter('always')\n"
        "from mobclip_core.pipeline import plot_loss_curve\n"
        "h = pd.DataFrame({'epoch': [1, 2, 3], 'train_loss': [3.0, 2.0, 1.5], 'val_loss': [3.1, 2.2, 1.9]})\n"
        f"plot_loss_curve(h, {str(tmp_path / 'loss.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules  # pyplot is what picks a process-wide backend\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Axes3D" not in run.stderr, run.stderr
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_a_modality_on_few_cells_is_a_warning_with_the_resolution_to_try(small_city, tmp_path):
    """A POI layer that reaches a handful of the graph's cells: the build says so, and what to try."""
    import geopandas as gpd

    from mobclip_core.config import config_from_dict
    from mobclip_core.geofile import write_geodataframe
    from mobclip_core.modalities.build import build_region_dataset

    write_geodataframe(gpd.read_file(small_city.pois).iloc[:3], tmp_path / "few.gpkg")
    raw = {
        "name": "few",
        "resolution": 9,
        "mobility": {"records": str(small_city.records)},
        "poi": {"path": str(tmp_path / "few.gpkg"), "encoder": "counts"},
    }
    lines: list[str] = []
    ds = build_region_dataset(config_from_dict(raw, base_dir=tmp_path), progress=lines.append)
    present = int(ds.features["poi"].notna().all(axis=1).sum())
    warning = [line for line in lines if line.startswith("WARNING poi covers only")]
    assert warning == [
        f"WARNING poi covers only {present} of {ds.cells.size} cells ({present / ds.cells.size:.0%}): the model learns "
        "little from it; at H3 resolution 9 cells may be too small for these inputs (a coarser resolution, 8, gives "
        "each cell about 7x the area)"
    ], lines


def test_every_modality_reports_how_many_cells_it_covers(small_city, tmp_path):
    """Coverage is said for every modality, not only when it is sparse: a user reads how much the model had."""
    from mobclip_core.config import config_from_dict
    from mobclip_core.modalities.build import build_region_dataset

    raw = {
        "name": "full",
        "resolution": 9,
        "mobility": {"records": str(small_city.records)},
        "poi": {"path": str(small_city.pois), "encoder": "counts"},
    }
    lines: list[str] = []
    ds = build_region_dataset(config_from_dict(raw, base_dir=tmp_path), progress=lines.append)
    present = int(ds.features["poi"].notna().all(axis=1).sum())
    assert present / ds.cells.size >= 0.1  # the sparse case has its own warning (above)
    said = f"poi covers {present:,} of {ds.cells.size:,} cells ({present / ds.cells.size:.0%})"
    assert said in lines, lines
