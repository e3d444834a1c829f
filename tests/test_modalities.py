"""POI text/counts, imagery (real open_clip path), demographics, feature cache."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from mobclip_core.exceptions import CheckpointError, InvalidInputError
from mobclip_core.grid import cells_to_strings
from mobclip_core.modalities.demographics import demographics_from_rasters, demographics_from_table
from mobclip_core.modalities.imagery import image_features, image_stats_features
from mobclip_core.modalities.poi import poi_category_counts, poi_text_features


@pytest.fixture(scope="module")
def pois(small_city):
    return gpd.read_file(small_city.pois)


def test_poi_text_embeddings_are_real_and_semantic(pois, tmp_path):
    feats = poi_text_features(pois.iloc[:200], 9, cache_dir=tmp_path)
    assert feats.shape[1] == 384 and feats.index.name == "h3_cell"
    from mobclip_core.modalities.poi import load_text_model

    model = load_text_model()
    a, b, c = model.encode(
        ["Rossi Bakery, bakery", "Bianchi Bakery, bakery", "Conti Warehouse, warehouse"], normalize_embeddings=True
    )
    assert a @ b > a @ c + 0.2  # a real sentence encoder, not noise
    # second call is served from the cache file
    assert len(list(tmp_path.glob("poi_text-*.parquet"))) == 1
    again = poi_text_features(pois.iloc[:200], 9, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(feats, again)


def test_poi_counts_and_errors(pois):
    counts = poi_category_counts(pois, 9)
    assert np.allclose(counts.sum(axis=1), 1.0)
    with pytest.raises(InvalidInputError, match="no column 'kind'"):
        poi_category_counts(pois, 9, category="kind")
    with pytest.raises(InvalidInputError, match="name column, a category column"):
        poi_text_features(pois, 9, name=None, category=None)
    with pytest.raises(InvalidInputError, match="not a local directory"):
        poi_text_features(pois.iloc[:5], 9, model="/nonexistent/bge-m3")
    as_csv = pd.DataFrame(pois.drop(columns="geometry")).assign(geometry=pois.geometry.to_wkt())  # what a CSV reads
    with pytest.raises(InvalidInputError, match="the POI table has no geometry and no lon and lat columns"):
        poi_category_counts(as_csv, 9)
    wgs84 = pois.to_crs(4326).geometry
    lonlat = as_csv.drop(columns="geometry").assign(lon=wgs84.x, lat=wgs84.y)
    pd.testing.assert_frame_equal(poi_category_counts(lonlat, 9), counts)


def test_image_stats_separate_parks_from_industry(small_city):
    feats = image_stats_features(small_city.imagery, cells_to_strings(small_city.cells))
    zones = small_city.zone_labels.reindex(feats.index)
    green_minus_red = feats["img_1"] - feats["img_0"]  # mean G - mean R
    assert green_minus_red[zones == "park"].mean() > green_minus_red[zones == "industrial"].mean() + 0.1


def test_open_clip_features_through_a_checkpoint_file(small_city, tmp_path):
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    ckpt = tmp_path / "vit.pt"
    torch.save(model.state_dict(), ckpt)
    cells = cells_to_strings(small_city.cells[:6])
    feats = image_features(small_city.imagery, cells, checkpoint=ckpt)
    assert feats.shape == (6, 512) and np.isfinite(feats.to_numpy()).all()
    assert feats.std(axis=0).mean() > 0  # chips differ, features differ
    wrong = tmp_path / "rn.pt"
    torch.save(open_clip.create_model("RN50", pretrained=None).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="does not fit open_clip 'ViT-B-32'"):
        image_features(small_city.imagery, cells, checkpoint=wrong)


def test_demographics_histograms(small_city):
    hist = demographics_from_rasters(small_city.demographics, 9)
    assert hist.shape[1] == 16 and np.allclose(hist.sum(axis=1), 1.0, atol=1e-5)
    zones = small_city.zone_labels.reindex(hist.index)
    young = hist[["demo_f_20", "demo_m_20"]].sum(axis=1)
    assert young[zones == "campus"].mean() > young[zones == "residential"].mean() + 0.2


def test_demographics_from_zone_table():
    from mobclip_core.constants import REGION_INDEX

    table = pd.DataFrame({"zone": ["a", "b"], "young": [10, 0], "old": [30, 5]})
    from mobclip_core.grid import points_to_cells

    cells = points_to_cells([13.40, 13.41, 13.42], [52.5, 52.5, 52.5], 9)
    zc = pd.DataFrame({"zone": ["a", "a", "b"], REGION_INDEX: cells, "weight": [0.5, 0.5, 1.0]})
    out = demographics_from_table(table, zone_cells=zc)
    assert np.allclose(out.sum(axis=1), 1.0) and len(out) == 3
    assert out.loc[cells_to_strings(cells[:1])[0], "demo_young"] == pytest.approx(0.25)
