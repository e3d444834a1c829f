"""The analysis library without QGIS: similarity, zones and their descriptions, the shared colour scale, the embedding
space, change after alignment, and the CLI subcommands."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest

from mobclip_core.exceptions import InvalidInputError


def planted(n_per=60, k=4, d=16, spread=0.15, seed=0):
    """k well-separated groups of unit-ish vectors: rows, labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    return (centres[labels] + spread * rng.normal(size=(labels.size, d))).astype(np.float32), labels


def cell_table(values, seed_cell="891f9b86303ffff"):
    import h3

    cells = sorted(h3.grid_disk(seed_cell, 20))[: len(values)]
    return pd.DataFrame(
        values, index=pd.Index(cells, name="h3_cell"), columns=[f"emb_{i}" for i in range(values.shape[1])]
    )


# --- similarity ------------------------------------------------------------------------------------------------
def test_similarity_equals_mean_cosine_ranking_and_skips_missing_rows():
    from mobclip_core.analysis.similarity import SimilarityIndex, similar_places

    x, _ = planted()
    x[5] = np.nan
    refs = [0, 1, 2]
    got = similar_places(x, reference_rows=refs, top_n=7)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean_cos = (unit @ unit[refs].T).mean(axis=1)  # ranking by mean cosine similarity to the references
    direction = unit[refs].mean(axis=0)
    expected = unit @ (direction / np.linalg.norm(direction))
    np.testing.assert_allclose(got.similarity[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-5)
    assert np.isnan(got.similarity[5]) and got.rank[5] == 0
    assert got.is_reference[refs].all() and (got.rank[refs] == 0).all()
    others = np.setdiff1d(np.flatnonzero(np.isfinite(mean_cos)), refs)
    best = others[np.argsort(-mean_cos[others], kind="stable")][:7]
    assert got.top["row"].tolist() == best.tolist() and got.top["rank"].tolist() == list(range(1, 8))
    index = SimilarityIndex.from_values(x, center=True)
    assert abs(index.unit[index.valid].sum(axis=0)).max() > 0 and index.mean is not None


def test_top_rows_breaks_ties_by_position_and_skips_nan():
    from mobclip_core.analysis.similarity import top_rows

    scores = np.array([0.5, np.nan, 0.9, 0.5, 0.9, -1.0], dtype=np.float32)
    assert top_rows(scores, 4).tolist() == [2, 4, 0, 3]
    assert top_rows(scores, 10, exclude=np.array([0, 0, 1, 0, 0, 0], bool)).tolist() == [4, 0, 3, 5]


def test_similar_cells_from_ids_points_and_polygons_and_clear_errors():
    from shapely.geometry import Point, box

    from mobclip_core.analysis.similarity import similar_cells
    from mobclip_core.grid import cell_centroids, strings_to_cells

    x, labels = planted()
    table = cell_table(x)
    lon, lat = cell_centroids(strings_to_cells(table.index[:3].to_numpy()))
    by_id = similar_cells(table, cells=list(table.index[:3]))
    by_point = similar_cells(table, geometries=[Point(a, b) for a, b in zip(lon, lat)])
    np.testing.assert_array_equal(by_id.similarity, by_point.similarity)
    assert (labels[by_id.top.index.size and table.index.get_indexer(by_id.top.h3_cell)] == labels[0]).all()
    around = box(lon[0] - 1e-5, lat[0] - 1e-5, lon[0] + 1e-5, lat[0] + 1e-5)  # smaller than a cell: its point's cell
    assert similar_cells(table, geometries=[around]).is_reference.sum() == 1
    with pytest.raises(InvalidInputError, match="none of the 1 reference places lies on a cell"):
        similar_cells(table, geometries=[Point(-70, -30)])
    with pytest.raises(InvalidInputError, match="give reference places"):
        similar_cells(table)
    with pytest.raises(InvalidInputError, match="dimensions"):
        from mobclip_core.analysis.similarity import SimilarityIndex

        SimilarityIndex.from_values(x).direction(vectors=np.ones((1, 3)))


# --- zones --------------------------------------------------------------------------------------------------------
def test_kmeans_zones_recover_planted_groups_numbered_by_size():
    from sklearn.metrics import adjusted_rand_score

    from mobclip_core.analysis.zones import functional_zones, suggest_k

    x, labels = planted(n_per=50, k=4)
    x = np.r_[x, x[:30]]  # group 0 is now the largest
    labels = np.r_[labels, labels[:30]]
    x[7] = np.nan
    zones = functional_zones(x, k=4)
    ok = np.isfinite(x).all(axis=1)
    assert adjusted_rand_score(labels[ok], zones.labels[ok]) == pytest.approx(1.0)
    assert zones.labels[7] == -1 and zones.k == 4
    assert (zones.labels[:6] == 1).all()  # the largest planted group is zone 1
    best, scores = suggest_k(x, k_range=(2, 8))
    assert best == 4 and list(scores.k) == list(range(2, 9))
    assert functional_zones(x, k="auto", k_range=(2, 8), criterion="bic").k == 4
    assert functional_zones(x, k="auto", k_range=(2, 8)).notes == []
    capped = functional_zones(x, k="auto", k_range=(2, 3), criterion="bic")  # four groups, at most three zones
    assert capped.k == 3
    assert capped.notes == [
        "the BIC is best at k = 3, the largest number of zones tried: the range set this number, not the data; "
        "choose the number of zones yourself, or let the silhouette pick it"
    ]


def test_hdbscan_zones_leave_noise_out():
    from sklearn.metrics import adjusted_rand_score

    from mobclip_core.analysis.zones import functional_zones

    x, labels = planted(n_per=80, k=3, spread=0.1)
    noise = np.random.default_rng(1).normal(size=(12, x.shape[1])).astype(np.float32) * 3
    zones = functional_zones(np.r_[x, noise], method="hdbscan", min_cluster_size=20)
    assert zones.k == 3
    assert adjusted_rand_score(labels, zones.labels[: labels.size]) > 0.95
    sampled = functional_zones(np.r_[x, noise], method="hdbscan", min_cluster_size=15, max_density_rows=150)
    assert adjusted_rand_score(labels, sampled.labels[: labels.size]) > 0.9  # the rest by nearest sampled place


def test_zone_errors_name_the_fix():
    from mobclip_core.analysis.zones import functional_zones

    x, _ = planted()
    with pytest.raises(InvalidInputError, match="choose k between 1 and"):
        functional_zones(x, k=0)
    with pytest.raises(InvalidInputError, match="zone method must be one of"):
        functional_zones(x, method="dbscan")
    with pytest.raises(InvalidInputError, match="range must start at 2"):
        functional_zones(x, k="auto", k_range=(1, 3))


def test_zone_labels_name_what_stands_out():
    """A dataset where zone A's cells have many supermarkets, young people and heavy flows."""
    import scipy.sparse as sp

    from mobclip_core.analysis.describe import describe_zones, plural
    from mobclip_core.analysis.zones import functional_zones
    from mobclip_core.modalities.mobility.graph import MobilityGraph

    x, labels = planted(n_per=40, k=2, spread=0.05)
    table = cell_table(x)
    cells = table.index
    a = labels == labels[0]
    young = np.where(a[:, None], [[0.5, 0.4, 0.1, 0.0]], [[0.1, 0.2, 0.3, 0.4]])
    demo = pd.DataFrame(young, index=cells, columns=["demo_0", "demo_20", "demo_40", "demo_65"])
    cat = pd.DataFrame(
        np.where(a[:, None], [[0.8, 0.2]], [[0.1, 0.9]]), index=cells, columns=["cat_supermarket", "cat_bakery"]
    )
    weights = np.where(a, 10.0, 1.0)
    adj = sp.csr_matrix(np.add.outer(weights, weights) * (1 - np.eye(len(cells))))
    from mobclip_core.grid import strings_to_cells

    graph = MobilityGraph(strings_to_cells(cells.to_numpy()), adj)
    dataset = types.SimpleNamespace(features={"demographics": demo, "poi": cat}, graph=graph)
    zones = describe_zones(functional_zones(x, k=2), cells, dataset=dataset)
    zone_a = int(zones.labels[0])
    assert zones.names[zone_a] == f"Zone {zone_a}: many supermarkets, young, busy"
    other = 3 - zone_a
    assert zones.names[other] == f"Zone {other}: many bakeries, older, quiet"
    assert zones.profiles.loc[zone_a, "mean_age"] < zones.profiles.loc[other, "mean_age"]
    assert {"demographics_distinctness", "poi_distinctness", "flow_vs_region"} <= set(zones.profiles.columns)
    assert describe_zones(functional_zones(x, k=2), cells).names[1].startswith("Zone 1 (")
    assert [plural(w) for w in ("bus", "library", "box", "university building", "day")] == [
        "bus", "libraries", "boxes", "university buildings", "days",
    ]  # fmt: skip


def test_zone_ages_read_ranged_bins_and_flows_rank_against_a_heavy_tailed_region():
    """Census-style bins (demo_age_5_17) give mean ages; a city centre's flows do not make every other zone quiet."""
    import scipy.sparse as sp

    from mobclip_core.analysis.describe import _mean_age, describe_zones
    from mobclip_core.analysis.zones import functional_zones
    from mobclip_core.grid import strings_to_cells
    from mobclip_core.modalities.mobility.graph import MobilityGraph

    census = pd.DataFrame(np.eye(4), columns=["demo_age_0_4", "demo_age_5_17", "demo_age_18_64", "demo_age_65"])
    np.testing.assert_allclose(_mean_age(census), [2.5, 11.5, 41.5, 70.0])
    bins = ["f_0", "f_1", "f_5", "m_0", "m_1", "m_5"]  # WorldPop: each bin's first age
    worldpop = pd.DataFrame([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1]], columns=bins)
    np.testing.assert_allclose(_mean_age(worldpop), [0.5, 10.0])
    assert _mean_age(pd.DataFrame(np.eye(3), columns=["white", "black", "other"])) is None

    x, labels = planted(n_per=40, k=3, spread=0.05)
    cells = cell_table(x).index
    zones = functional_zones(x, k=3)
    weights = np.select([labels == 0, labels == 1], [100.0, 5.0], 1.0)  # a centre, a middle ring, the outskirts
    adj = sp.csr_matrix(np.add.outer(weights, weights) * (1 - np.eye(len(cells))))
    graph = MobilityGraph(strings_to_cells(cells.to_numpy()), adj)
    names = describe_zones(zones, cells, dataset=types.SimpleNamespace(features={}, graph=graph)).names
    name_of = {planted_zone: names[int(zones.labels[labels == planted_zone][0])] for planted_zone in range(3)}
    assert name_of[0].endswith(": busy")
    assert name_of[1].endswith(": like the region overall")  # 5x the outskirts, a twentieth of the centre
    assert name_of[2].endswith(": quiet")
    # three of four zones carry no flow at all (75% of the cells): they are quiet, not middling by tied ranks
    x, labels = planted(n_per=30, k=4, spread=0.05)
    cells = cell_table(x).index
    zones = functional_zones(x, k=4)
    linked = labels == 3
    adj = sp.csr_matrix(np.outer(linked, linked) * (1.0 - np.eye(len(cells))))
    graph = MobilityGraph(strings_to_cells(cells.to_numpy()), adj)
    described = describe_zones(zones, cells, dataset=types.SimpleNamespace(features={}, graph=graph))
    label_of = {planted: described.names[int(zones.labels[labels == planted][0])] for planted in range(4)}
    assert [label_of[p].split(": ", 1)[1].split(" (")[0] for p in range(4)] == ["quiet", "quiet", "quiet", "busy"]


def test_zones_whose_traits_read_alike_get_the_numbers_that_tell_them_apart():
    """Two young and two older zones: each of those labels adds its mean age; a label no other zone has stays."""
    from mobclip_core.analysis.describe import describe_zones
    from mobclip_core.analysis.zones import functional_zones

    x, labels = planted(n_per=30, k=5, spread=0.05)
    cells = cell_table(x).index
    age = np.array([21.0, 27.0, 60.0, 70.0, 43.0])[labels]  # 43: about the region's mean age
    old = (age - 20.0) / 65.0  # share in the open bin 80+ (middle 85); the rest in 0-39 (middle 20)
    demo = pd.DataFrame({"demo_0": 1 - old, "demo_40": 0.0, "demo_80": old}, index=cells)
    dataset = types.SimpleNamespace(features={"demographics": demo})
    zones = describe_zones(functional_zones(x, k=5), cells, dataset=dataset)
    label_of = [zones.names[int(zones.labels[labels == planted][0])].split(": ", 1)[1] for planted in range(5)]
    assert label_of == [
        "young (mean age 21)", "young (mean age 27)", "older (mean age 60)", "older (mean age 70)",
        "like the region overall",
    ]  # fmt: skip


# --- a look inside ------------------------------------------------------------------------------------------------
def test_shared_colour_scale_reproduces_pca_rgb_and_colours_a_second_table_alike(tmp_path):
    from mobclip_core.rasterize import PcaColourScale, pca_rgb

    x, _ = planted(d=8)
    scale = PcaColourScale.fit(x)
    np.testing.assert_array_equal(scale.transform(x), pca_rgb(x))
    scale.save(tmp_path / "scale.json")
    again = PcaColourScale.load(tmp_path / "scale.json")
    other = np.r_[x[:20], x[:20] * 3.0]  # another table: a subset and far-off rows
    np.testing.assert_array_equal(again.transform(other)[:20], pca_rgb(x)[:20])  # same rows, same colours
    assert not np.array_equal(pca_rgb(other)[:20], pca_rgb(x)[:20])  # its own scale would recolour them
    with pytest.raises(InvalidInputError, match="fitted on 8-dimensional"):
        again.transform(np.ones((3, 5)))
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(InvalidInputError, match="not a MobCLIP PCA colour scale"):
        PcaColourScale.load(tmp_path / "bad.json")


def test_embedding_space_pca_separates_groups_and_keeps_missing_rows_empty():
    from mobclip_core.analysis.space import embedding_space, resolve_method, umap_available

    x, labels = planted(k=2)
    x[3] = np.nan
    xy, method = embedding_space(x, method="pca")
    assert method == "pca" and np.isnan(xy[3]).all()
    ok = np.isfinite(xy).all(axis=1)
    first = xy[ok & (labels == 0), 0]
    second = xy[ok & (labels == 1), 0]
    assert first.max() < second.min() or second.max() < first.min()  # PC1 splits the two groups
    assert resolve_method("auto") == ("umap" if umap_available() else "pca")


@pytest.mark.skipif(not __import__("mobclip_core.analysis.space").analysis.space.umap_available(), reason="no umap")
def test_embedding_space_umap_keeps_groups_apart():
    from sklearn.metrics import silhouette_score

    from mobclip_core.analysis.space import embedding_space

    x, labels = planted(k=3)
    xy, method = embedding_space(x, method="umap", seed=0)
    assert method == "umap" and silhouette_score(xy, labels) > 0.5
    few = x[:3]  # UMAP fails inside scipy below 4 places: automatic takes PCA, asking for UMAP says why
    assert embedding_space(few, method="auto")[1] == "pca"
    with pytest.raises(InvalidInputError, match="UMAP needs at least 10 places with complete embeddings, and 3 were"):
        embedding_space(few, method="umap")


# --- change -------------------------------------------------------------------------------------------------------
def test_change_is_zero_for_a_rotation_and_scaling_and_large_for_unrelated_tables():
    from mobclip_core.analysis.change import embedding_change

    x, _ = planted(d=12)
    a = cell_table(x)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(12, 12)))
    rotated = pd.DataFrame(2.5 * (x @ q) + 7.0, index=a.index).iloc[::-1]  # rotated, scaled, shifted, reordered
    same = embedding_change(a, rotated)
    assert same.summary()["median"] < 1e-5 and same.disparity < 1e-9
    noisy = pd.DataFrame(x @ q + 0.05 * np.random.default_rng(1).normal(size=x.shape), index=a.index)
    shuffled = pd.DataFrame(np.random.default_rng(2).permutation(x), index=a.index)
    small, large = embedding_change(a, noisy).summary(), embedding_change(a, shuffled).summary()
    assert small["median"] < 0.2 < 1.0 < large["median"]
    wider = pd.DataFrame(np.c_[x @ q, np.zeros((len(x), 4))], index=a.index)  # another dimension: zero-padded
    assert embedding_change(a, wider).summary()["median"] < 1e-5
    part = embedding_change(a, rotated.iloc[:50])
    assert part.summary()["cells"] == 50 and part.only_before == len(a) - 50
    holes = a.copy()
    holes.iloc[:7, 0] = np.nan  # common cells with a missing value: counted, not compared
    assert embedding_change(a, holes).summary() | {"median": 0, "p90": 0, "mean": 0, "disparity": 0} == {
        "cells": len(a) - 7, "incomplete": 7, "only_before": 0, "only_after": 0,
        "median": 0, "p90": 0, "mean": 0, "disparity": 0,
    }  # fmt: skip
    with pytest.raises(InvalidInputError, match="share 3 cells"):
        embedding_change(a, rotated.loc[a.index[:3]])


# --- CLI --------------------------------------------------------------------------------------------------------
def test_cli_similar_zones_change_and_shared_scale(tmp_path, capsys):
    import geopandas as gpd

    from mobclip_core.cli import main
    from mobclip_core.export import write_embeddings

    x, labels = planted(k=3, d=8)
    table = cell_table(x)
    write_embeddings(table, tmp_path / "a.parquet")
    write_embeddings(table.iloc[::-1] * 2.0, tmp_path / "b.gpkg")
    ref = table.index[0]
    assert main(["similar", str(tmp_path / "a.parquet"), "--cell", ref, "--top", "5", "--out", str(tmp_path / "s.gpkg"),
                 "--raster", str(tmp_path / "s.tif"), "--ranking", str(tmp_path / "top.csv")]) == 0  # fmt: skip
    sim = gpd.read_file(tmp_path / "s.gpkg").set_index("h3_cell")
    assert sim.loc[ref, "is_reference"] and (tmp_path / "s.tif").stat().st_size > 0
    top = pd.read_csv(tmp_path / "top.csv")
    assert len(top) == 5 and (labels[table.index.get_indexer(top.h3_cell)] == labels[0]).all()
    assert main(["zones", str(tmp_path / "a.parquet"), "--k", "3", "--out", str(tmp_path / "z.gpkg"),
                 "--profiles", str(tmp_path / "p.csv"), "--raster", str(tmp_path / "z.tif")]) == 0  # fmt: skip
    zones = gpd.read_file(tmp_path / "z.gpkg")
    assert zones.zone.nunique() == 3 and zones.zone_label.str.startswith("Zone ").all()
    assert (
        main(["change", str(tmp_path / "a.parquet"), str(tmp_path / "b.gpkg"), "--out", str(tmp_path / "c.gpkg")]) == 0
    )
    assert '"median": ' in capsys.readouterr().out
    assert gpd.read_file(tmp_path / "c.gpkg")["change"].max() < 1e-5
    scale = tmp_path / "scale.json"
    assert (
        main(["pca-rgb", str(tmp_path / "a.parquet"), "--save-scale", str(scale), "--out", str(tmp_path / "1.tif")])
        == 0
    )
    assert main(["space", str(tmp_path / "a.parquet"), "--method", "pca", "--scale", str(scale),
                 "--out", str(tmp_path / "space.gpkg")]) == 0  # fmt: skip
    space = gpd.read_file(tmp_path / "space.gpkg")
    assert set(space.h3_cell) == set(table.index) and space.colour.str.match(r"^#[0-9a-f]{6}$").all()
    assert main(["zones", str(tmp_path / "a.parquet"), "--k", "0", "--out", str(tmp_path / "never.gpkg")]) == 2
    assert "choose k between 1 and" in capsys.readouterr().err and not (tmp_path / "never.gpkg").exists()


def test_many_pois_means_more_per_place_not_only_a_larger_share():
    """Chicago's case: a zone of 360 cells with 2 supermarkets and 1 liquor store has a high supermarket share but
    fewer supermarkets per cell than the region: not "many supermarkets". A dense zone is."""
    from mobclip_core.analysis.describe import _poi_traits

    sizes = {1: 360, 2: 40, 3: 100}
    in_zone = pd.Series(np.repeat(list(sizes), list(sizes.values())), index=[f"c{i}" for i in range(500)])
    counts = pd.DataFrame(0.0, index=in_zone.index, columns=["supermarket", "liquor store"])
    counts.iloc[:2, 0], counts.iloc[2, 1] = 1.0, 1.0  # zone 1: 2 + 1 in 360 cells
    counts.iloc[360:400, 0], counts.iloc[360:400, 1] = 1.0, 2.0  # zone 2: dense in both
    counts.iloc[400:430, 1] = 1.0  # zone 3: liquor stores only, near the region's rate
    prof = pd.DataFrame({"places": pd.Series(sizes)})
    traits = {z: [] for z in sizes}
    _poi_traits(counts, in_zone, list(sizes), prof, traits)
    assert traits[1] == []
    assert traits[2] == ["many supermarkets and liquor stores"]  # 1.0 / 2.0 per cell: 11.9x / 9.0x the region
    assert traits[3] == []  # 0.30 liquor stores per cell against the region's 0.22, share 1.0 against 0.73
