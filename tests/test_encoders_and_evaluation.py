"""Location encoders (SatCLIP SH convention), distillation round trips, evaluation harness."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mobclip_core.encoders import nerf_features, sphere2vec_sphere_c_plus, spherical_harmonics
from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder
from mobclip_core.exceptions import CheckpointError, InvalidInputError


def test_sh_known_values_satclip_convention():
    y = spherical_harmonics(np.array([0.0, 37.0]), np.array([0.0, -12.0]), 3)
    assert y.shape == (2, 9)
    assert y[0, 0] == pytest.approx(math.sqrt(math.pi) / 2, abs=1e-12)  # pi * 1/(2 sqrt(pi)): SatCLIP's Y00
    # l=1, m=0 at the equator: theta = 90 deg from the south pole -> cos(theta) = 0
    assert y[0, 2] == pytest.approx(0.0, abs=1e-12)
    # l=1, m=1: sqrt(2) N_11 P_1^1(cos theta) cos(phi), no Condon-Shortley phase, phi = lon + 180
    theta, phi = math.radians(-12 + 90), math.radians(37 + 180)
    n11 = math.sqrt(3 / (4 * math.pi) / 2)
    assert y[1, 3] == pytest.approx(math.sqrt(2) * n11 * math.sin(theta) * math.cos(phi), rel=1e-12)
    assert y[1, 1] == pytest.approx(math.sqrt(2) * n11 * math.sin(theta) * math.sin(phi), rel=1e-12)
    # m = 0 terms carry the pi factor: l=1, m=0 = pi * sqrt(3/4pi) cos(theta)
    assert y[1, 2] == pytest.approx(math.pi * math.sqrt(3 / (4 * math.pi)) * math.cos(theta), rel=1e-12)


def test_sh_matches_scipy_legendre_up_to_degree_20():
    from scipy.special import factorial, lpmv

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 40), rng.uniform(-89, 89, 40)
    L = 20
    ours = spherical_harmonics(lon, lat, L)
    x, phi = np.cos(np.radians(lat + 90)), np.radians(lon + 180)
    col = 0
    for l in range(L):  # noqa: E741
        for m in range(-l, l + 1):
            am = abs(m)
            n = math.sqrt((2 * l + 1) / (4 * math.pi) * factorial(l - am) / factorial(l + am))
            p = lpmv(am, l, x) * (-1) ** am
            ref = math.pi * n * p if m == 0 else math.sqrt(2) * n * p * (np.sin(am * phi) if m < 0 else np.cos(m * phi))
            np.testing.assert_allclose(ours[:, col], ref, atol=1e-10, rtol=1e-8)
            col += 1


def test_other_encoders_shapes_and_validation():
    lon, lat = np.array([10.0, -70.0]), np.array([45.0, -30.0])
    assert sphere2vec_sphere_c_plus(lon, lat).shape == (2, 96)
    assert nerf_features(lon, lat).shape == (2, 96)
    with pytest.raises(InvalidInputError, match="longitude"):
        nerf_features(np.array([200.0]), np.array([0.0]))


def test_geoclip_pretrained_encoder_runs_offline():
    from mobclip_core.encoders.baselines import geoclip_encoder

    enc = geoclip_encoder()
    a = enc(np.array([9.0, 9.01, 120.0]), np.array([45.0, 45.0, -30.0]))
    assert a.shape == (3, 512)
    cos = (a @ a.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(a, axis=1))
    assert cos[0, 1] > cos[0, 2]  # nearby places are more alike than distant ones: real weights


def _published_like_checkpoint(path, torch, degree=4, hidden=16, layers=8, out=8):
    """A checkpoint in the published MobCLIP layout: {'model_state_dict': network.{0,2,...,16}}, float64."""
    torch.manual_seed(0)
    dims = [degree * degree] + [hidden] * layers + [out]
    state = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        state[f"network.{2 * i}.weight"] = torch.randn(b, a, dtype=torch.float64) * 0.3
        state[f"network.{2 * i}.bias"] = torch.randn(b, dtype=torch.float64) * 0.1
    torch.save({"model_state_dict": state}, path)
    return state


def test_published_checkpoint_format_reproduces_forward_pass(tmp_path):
    import torch

    state = _published_like_checkpoint(tmp_path / "distilled.pth", torch)
    enc = DistilledEncoder.load(tmp_path / "distilled.pth")
    assert enc.config.float64 and enc.config.degree == 4 and enc.config.layers == 8
    lon, lat = np.array([104.057273, 113.286798]), np.array([30.665787, 23.134293])
    # the forward pass by hand: SH features, then Linear/ReLU x 8, then Linear
    h = torch.tensor(spherical_harmonics(lon, lat, 4))
    for i in range(9):
        h = h @ state[f"network.{2 * i}.weight"].T + state[f"network.{2 * i}.bias"]
        if i < 8:
            h = torch.relu(h)
    np.testing.assert_allclose(enc.embed(lon, lat), h.numpy(), rtol=1e-10, atol=1e-12)


def test_wrong_checkpoints_are_refused(tmp_path):
    import torch

    state = _published_like_checkpoint(tmp_path / "ok.pth", torch)
    state["network.4.weight"] = torch.zeros(3, 3, dtype=torch.float64)
    torch.save({"model_state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"wrong shape.*network.4.weight"):
        DistilledEncoder.load(tmp_path / "bad.pth")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a MobCLIP distilled checkpoint"):
        DistilledEncoder.load(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        DistilledEncoder.load(tmp_path / "missing.pth")


def test_distillation_fits_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(8.9, 9.1, 400), rng.uniform(44.9, 45.1, 400)
    teacher = np.c_[np.sin(40 * lon), np.cos(40 * lat), (lon - 9) * (lat - 45) * 100]  # smooth planted field
    enc = DistilledEncoder(DistilConfig(degree=8, hidden=64, layers=3, epochs=300, patience=50)).fit(lon, lat, teacher)
    pred = enc.embed(lon, lat)
    r2 = 1 - ((pred - teacher) ** 2).sum() / ((teacher - teacher.mean(0)) ** 2).sum()
    assert r2 > 0.5
    enc.save(tmp_path / "d")
    back = DistilledEncoder.load(tmp_path / "d")
    np.testing.assert_array_equal(back.embed(lon, lat), pred)


def test_distillation_of_a_small_region_takes_several_steps_per_epoch():
    """A region of a few hundred cells fits in one batch of 1,024, which would make an epoch a single optimiser
    step: under the same epoch budget the student then reproduces its teacher far less closely."""
    from mobclip_core.encoders.distilled import epoch_batch_size

    assert epoch_batch_size(DistilConfig(), 5_345) == 1024  # a city: batches as configured
    assert epoch_batch_size(DistilConfig(), 631) == 127  # the demo: five steps per epoch
    assert epoch_batch_size(DistilConfig(), 20) == 32  # a handful of cells: one batch, never under 32 points
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(8.9, 9.1, 400), rng.uniform(44.9, 45.1, 400)
    teacher = np.c_[np.sin(40 * lon), np.cos(40 * lat), (lon - 9) * (lat - 45) * 100]

    def unfitted(min_batches: int) -> float:
        cfg = DistilConfig(degree=8, hidden=64, layers=3, epochs=150, patience=150, min_batches=min_batches)
        pred = DistilledEncoder(cfg).fit(lon, lat, teacher).embed(lon, lat)
        return float(((pred - teacher) ** 2).sum() / ((teacher - teacher.mean(0)) ** 2).sum())

    one_step, default = unfitted(1), unfitted(DistilConfig.min_batches)
    print(f"unfitted share: one step per epoch {one_step:.4f}, default {default:.4f}")
    assert default < 0.5 * one_step


def test_harness_ranks_informative_source_above_noise(small_city, tmp_path):
    import geopandas as gpd

    from mobclip_core.evaluation.harness import EmbeddingSource, Task, evaluate, summary_table, write_report
    from mobclip_core.grid import cells_to_strings

    cells = cells_to_strings(small_city.cells)
    rng = np.random.default_rng(0)
    informative = pd.DataFrame(np.eye(5)[small_city.zone] + 0.05 * rng.normal(size=(len(cells), 5)), index=cells)
    noise = pd.DataFrame(rng.normal(size=(len(cells), 5)), index=cells)
    targets = pd.read_parquet(small_city.targets).set_index("h3_cell")
    districts = gpd.read_file(small_city.districts)
    tasks = [
        Task("night", "grid", targets["night_activity"], block_resolution=7),
        Task("district income", "admin", districts["income"], polygons=districts, block_resolution=7),
    ]
    res = evaluate(
        [EmbeddingSource("zones", informative), EmbeddingSource("noise", noise)], tasks, resolution=9, runs=3
    )
    grid = res[res.task == "night"].set_index(["split", "source"]).r2_mean
    assert grid["random", "zones"] > 0.6 and grid["random", "noise"] < 0.2
    assert list(res.split.unique()) == ["blocked", "random"]  # blocked first
    assert (res[res.task == "district income"].model == "ridge").all()  # few samples -> Ridge
    paths = write_report(res, tmp_path)
    assert paths["markdown"].read_text().startswith("| split | source |")
    assert len(summary_table(res)) == 4
    # early stopping: a faster protocol that must still separate signal from noise, deterministically
    fast = [
        evaluate(
            [EmbeddingSource("zones", informative), EmbeddingSource("noise", noise)],
            tasks[:1],
            resolution=9,
            runs=2,
            early_stopping=20,
        )
        for _ in range(2)
    ]
    g = fast[0].set_index(["split", "source"]).r2_mean
    assert g["random", "zones"] > 0.6 and g["random", "noise"] < 0.2
    assert fast[0].r2_mean.tolist() == fast[1].r2_mean.tolist()


def test_siren_baseline_and_siren_distillation(tmp_path):
    from mobclip_core.encoders.siren import siren_encoder

    enc = siren_encoder(degree=6, hidden=32, layers=2, out_dim=16, seed=0)
    lon, lat = np.array([9.0, 9.5, -70.0]), np.array([45.0, 45.0, -30.0])
    a, b = enc(lon, lat), siren_encoder(degree=6, hidden=32, layers=2, out_dim=16, seed=0)(lon, lat)
    np.testing.assert_array_equal(a, b)  # fixed seed: a deterministic feature map
    assert a.shape == (3, 16) and np.isfinite(a).all()
    rng = np.random.default_rng(1)
    x, y = rng.uniform(8.9, 9.1, 300), rng.uniform(44.9, 45.1, 300)
    teacher = np.c_[np.sin(30 * x), np.cos(30 * y)]
    cfg = DistilConfig(network="siren", degree=6, hidden=64, layers=2, epochs=200, patience=50)
    d = DistilledEncoder(cfg).fit(x, y, teacher)
    d.save(tmp_path / "s")
    np.testing.assert_allclose(DistilledEncoder.load(tmp_path / "s").embed(x, y), d.embed(x, y), rtol=1e-6)


def test_distillation_encodes_the_points_once_and_learns_the_same(monkeypatch):
    """The positional features are fixed: computed once for all points (not per batch and epoch) the fitted
    network is the same to the bit, and the SH kernel runs once instead of once per batch."""
    from mobclip_core.encoders import _sh_kernel, distilled

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(8.9, 9.1, 300), rng.uniform(44.9, 45.1, 300)
    teacher = np.c_[np.sin(40 * lon), np.cos(40 * lat)]
    kernel, calls = _sh_kernel.sh_features, []
    monkeypatch.setattr(_sh_kernel, "sh_features", lambda *a: calls.append(a[0].size) or kernel(*a))

    def fit() -> tuple[np.ndarray, int]:
        calls.clear()
        cfg = DistilConfig(degree=6, hidden=32, layers=2, epochs=20, patience=20)
        return DistilledEncoder(cfg).fit(lon, lat, teacher, device="cpu").embed(lon, lat, outside="ignore"), len(calls)

    once, n_once = fit()
    monkeypatch.setattr(distilled, "FEATURE_CACHE_BYTES", 0)  # too little room: features per batch, as before
    per_batch, n_per_batch = fit()
    np.testing.assert_array_equal(once, per_batch)
    assert n_once == 2  # the 300 training points, then the embed call
    assert n_per_batch == 20 * 5 + 1  # five batches an epoch, then the embed call


def test_distillation_refuses_a_device_it_cannot_use(capsys):
    import torch

    from mobclip_core.cli import main
    from mobclip_core.exceptions import ConfigError

    lon, lat, teacher = np.array([9.0, 9.01]), np.array([45.0, 45.01]), np.ones((2, 3))
    with pytest.raises(ConfigError, match='device must be "auto", "cpu", "cuda" or "cuda:N"'):
        DistilledEncoder().fit(lon, lat, teacher, device="gpu")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"device is 'cuda:{gpus}', but torch sees .* here: use \"auto\""):
        DistilledEncoder().fit(lon, lat, teacher, device=f"cuda:{gpus}")
    assert main(["distil", "no-such-run", "--out", "x", "--device", "gpu"]) == 2
    assert '--device must be "auto"' in capsys.readouterr().err  # said before the missing table


def test_distil_subcommand_writes_a_loadable_encoder(tmp_path, capsys):
    import pandas as pd

    from mobclip_core.cli import main
    from mobclip_core.encoders.distilled import DistilledEncoder
    from mobclip_core.export import write_embeddings
    from mobclip_core.grid import cell_centroids, cells_to_strings, points_to_cells

    rng = np.random.default_rng(0)
    cells = np.unique(points_to_cells(rng.uniform(9.0, 9.1, 400), rng.uniform(45.0, 45.1, 400), 8))
    lon, lat = cell_centroids(cells)
    values = np.c_[np.sin(40 * lon), np.cos(40 * lat), lon - lon.mean()].astype(np.float32)  # smooth in space
    table = pd.DataFrame(
        values, index=pd.Index(cells_to_strings(cells), name="h3_cell"), columns=["emb_0", "emb_1", "emb_2"]
    )
    write_embeddings(table, tmp_path / "embeddings.parquet")
    config_before = DistilledEncoder().config
    assert main(["distil", str(tmp_path), "--out", str(tmp_path / "distilled"), "--epochs", "100", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "distilled" in out and str(tmp_path / "distilled") in out
    enc = DistilledEncoder.load(tmp_path / "distilled")
    pred = enc.embed(lon, lat)
    assert pred.shape == values.shape
    for dim in (0, 1):  # it learned the teacher, not noise
        assert np.corrcoef(pred[:, dim], values[:, dim])[0, 1] > 0.8
    assert DistilledEncoder().config == config_before  # fitting did not change the defaults it started from


def test_ridge_chooses_its_penalty_inside_each_training_fold():
    """128 features on 60 rows: a fixed alpha of 1 fits the training rows and predicts new ones badly; the penalty
    chosen by leave-one-out on the training rows alone is larger and predicts better out of fold."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mobclip_core.evaluation.regression import cross_validate, r2_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 128))
    y = x[:, :3] @ np.array([1.0, -1.0, 0.5]) + rng.normal(scale=1.0, size=60)
    cv = cross_validate(x, y, model="ridge", n_folds=5, seed=0)
    assert "Ridge (alpha" in cv.description and "leave-one-out" in cv.description
    assert cv.model[-1].alpha_ > 1.0
    fixed = np.empty_like(y)
    for tr, te in KFold(5, shuffle=True, random_state=0).split(x):
        fixed[te] = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[tr], y[tr]).predict(x[te])
    assert cv.r2 > r2_score(y, fixed) + 0.1


def test_diagnostics_say_where_information_is_lost(small_dataset):
    import pandas as pd

    from mobclip_core.evaluation.diagnostics import diagnose, effective_rank, near_duplicates
    from mobclip_core.evaluation.input_baselines import input_features

    rng = np.random.default_rng(0)
    n = small_dataset.cells.size
    inputs = input_features(small_dataset, None)  # the inputs themselves: every modality fully recoverable
    noise = pd.DataFrame(rng.normal(size=(n, 16)), index=small_dataset.cell_ids)
    full = diagnose(inputs, small_dataset)
    none = diagnose(noise, small_dataset)
    assert full["recovery_r2_demographics"] > 0.95 and none["recovery_r2_demographics"] < 0.1
    assert full["recovery_r2_poi"] > none["recovery_r2_poi"] + 0.5
    tract_like = np.repeat(rng.normal(size=(n // 10 + 1, 8)), 10, axis=0)[:n]  # groups of 10 identical rows
    assert near_duplicates(tract_like) == 1.0 and near_duplicates(rng.normal(size=(n, 8))) == 0.0
    assert effective_rank(np.outer(rng.normal(size=n), rng.normal(size=8))) < 1.5
    assert effective_rank(rng.normal(size=(n, 8))) > 7


def test_torch_spherical_harmonics_match_the_reference_recurrence():
    # the torch layout (degree, order, point) used by the encoders against the numpy reference, float64 and float32
    import importlib

    import torch

    sh = importlib.import_module("mobclip_core.encoders.spherical_harmonics")
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, 500), rng.uniform(-90, 90, 500)
    ref = spherical_harmonics(lon, lat, 32)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 5e-4)):
        got = sh._sh_torch(torch.tensor(lon, dtype=dtype), torch.tensor(lat, dtype=dtype), 32)
        assert got.shape == (500, 1024) and got.dtype == dtype
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=tol)
    module = sh.SphericalHarmonics(5)
    coords = torch.tensor(np.c_[lon, lat])
    np.testing.assert_allclose(module(coords).numpy(), spherical_harmonics(lon, lat, 5), rtol=0, atol=1e-12)


def test_compiled_spherical_harmonics_match_the_reference_in_both_precisions():
    """The encoders' CPU path (compiled, float64 inside) against the numpy reference: float32 features exact to
    float32 rounding, which the tensor recurrence in float32 is not."""
    import torch

    from mobclip_core.encoders._sh_kernel import sh_features
    from mobclip_core.encoders.spherical_harmonics import SphericalHarmonics

    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(-180, 180, 700), rng.uniform(-90, 90, 700)
    lon[:4], lat[:4] = [-180.0, 180.0, 0.0, 12.5], [-90.0, 90.0, 0.0, 41.9]  # poles and the antimeridian
    ref = spherical_harmonics(lon, lat, 32)
    np.testing.assert_allclose(sh_features(lon, lat, 32, np.float64), ref, rtol=0, atol=1e-12)
    got32 = SphericalHarmonics(32)(torch.tensor(np.c_[lon, lat], dtype=torch.float32))
    assert got32.dtype == torch.float32 and got32.shape == (700, 1024)
    np.testing.assert_allclose(got32.numpy(), ref, rtol=0, atol=1e-5)


def test_input_baselines_hold_what_their_names_say(small_dataset):
    """'LINE alone' is the mobility block only; 'inputs' adds every modality (reduced, with a presence column)."""
    from mobclip_core.evaluation.input_baselines import input_features

    mobility = np.random.default_rng(0).normal(size=(small_dataset.cells.size, 8)).astype(np.float32)
    alone = input_features(small_dataset, mobility, modalities=[])
    np.testing.assert_array_equal(alone.to_numpy(), mobility)
    full = input_features(small_dataset, mobility, modality_dim=4)
    widths = {m: min(df.shape[1], 4) + 1 for m, df in small_dataset.features.items()}
    assert full.shape[1] == 8 + sum(widths.values())
    np.testing.assert_array_equal(full.to_numpy()[:, :8], mobility)


def test_flow_svd_spends_its_components_on_the_linked_city_not_on_islands():
    """A normalised adjacency gives every connected component singular value 1: each island of two linked cells
    would take a component nonzero in two cells only (a Ridge on areas then explodes where it is held out)."""
    import scipy.sparse as sp

    from mobclip_core.evaluation.input_baselines import flow_svd
    from mobclip_core.modalities.mobility.graph import MobilityGraph

    rng = np.random.default_rng(0)
    n_city, n_islands = 200, 12
    dense = sp.random(n_city, n_city, density=0.1, random_state=rng, data_rvs=lambda m: rng.integers(1, 50, m))
    city = (dense + dense.T).tocsr()
    pairs = sp.block_diag([sp.csr_matrix([[0.0, 30.0], [30.0, 0.0]])] * n_islands)
    adjacency = sp.block_diag([city, pairs]).tocsr()
    cells = np.arange(1, n_city + 2 * n_islands + 1, dtype=np.uint64)
    f = flow_svd(MobilityGraph(cells, adjacency), k=8)
    assert f.shape == (cells.size, 8)
    assert np.abs(f[n_city:]).max() < 1e-6  # islands: zeros, not components of their own
    support = (np.abs(f[:n_city]) > 1e-6).sum(axis=0)
    assert support.min() > n_city // 2  # every component spreads over the linked city


def test_neighbourhood_means_average_over_the_rings_within_the_table():
    import h3

    from mobclip_core.evaluation.input_baselines import with_neighbourhood

    centre = h3.latlng_to_cell(41.88, -87.63, 9)
    disk = sorted(h3.grid_disk(centre, 6))
    spike = pd.DataFrame({"v": [1.0 if c == centre else 0.0 for c in disk], "one": 1.0}, index=disk)
    out = with_neighbourhood(spike, rings=(2, 4))
    assert list(out.columns) == ["v", "one", "ring2_v", "ring2_one", "ring4_v", "ring4_one"]
    distance = pd.Series([h3.grid_distance(centre, c) for c in disk], index=disk)
    np.testing.assert_allclose(out.loc[distance <= 2, "ring2_v"], 1 / 19, rtol=1e-6)  # 19 cells within 2 steps
    assert (out.loc[distance > 2, "ring2_v"] == 0).all()
    np.testing.assert_allclose(out.loc[centre, "ring4_v"], 1 / 61, rtol=1e-6)
    # cells near the table's edge average over the cells the table has: a constant stays that constant
    np.testing.assert_allclose(out[["ring2_one", "ring4_one"]], 1.0, rtol=1e-6)


def test_coordinates_appended_raw_or_as_a_location_encoders_code():
    import h3

    from mobclip_core.encoders.baselines import sphere2vec_sphere_c_plus
    from mobclip_core.evaluation.input_baselines import with_coordinates

    cells = sorted(h3.grid_disk(h3.latlng_to_cell(41.88, -87.63, 9), 2))
    table = pd.DataFrame({"e0": np.arange(len(cells), dtype=np.float32)}, index=cells)
    lat, lon = np.array([h3.cell_to_latlng(c) for c in cells]).T
    raw = with_coordinates(table)
    assert list(raw.columns) == ["e0", "lon", "lat"]
    np.testing.assert_allclose(raw[["lon", "lat"]].to_numpy(), np.c_[lon, lat], atol=1e-4)
    coded = with_coordinates(table, sphere2vec_sphere_c_plus)
    code = sphere2vec_sphere_c_plus(lon, lat)
    assert coded.shape == (len(cells), 1 + code.shape[1])
    pd.testing.assert_series_equal(coded["e0"], table["e0"])  # the table's own columns first, unchanged
    np.testing.assert_allclose(coded.iloc[:, 1:].to_numpy(), code, rtol=1e-4, atol=1e-5)


def test_zone_probe_holds_out_whole_blocks_and_keeps_coordinates_as_positions():
    """Contiguous zones along a line: under random folds a place's neighbours are in training and its position alone
    tells its zone; with each zone's block held out it cannot. Unit-normalising coordinates would keep only their
    direction: they are standardised instead."""
    from mobclip_core.evaluation.probe import probe_accuracy

    position = np.linspace(1.0, 2.0, 200)[:, None]
    zone = np.repeat(np.arange(10) % 2, 20)  # ten stretches of 20 places, two zone types alternating
    coords = np.c_[position, np.full(200, 1.5)]
    assert probe_accuracy(coords, zone, normalise=False)["knn10"] > 0.9
    assert probe_accuracy(coords, zone, normalise=False, groups=np.repeat(np.arange(10), 20))["knn10"] < 0.2
    assert probe_accuracy(coords, zone)["knn10"] < probe_accuracy(coords, zone, normalise=False)["knn10"]


def test_cross_validation_is_the_same_however_many_fits_run_at_once():
    """The folds and the refit run side by side, one thread each: the result must not depend on how many at once."""
    from mobclip_core.evaluation.regression import cross_validate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    y = x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=600)
    common = dict(groups=np.arange(600) % 6, model="lightgbm", params={"n_estimators": 150}, seed=3)
    one, three = cross_validate(x, y, n_jobs=1, **common), cross_validate(x, y, n_jobs=3, **common)
    np.testing.assert_array_equal(one.oof, three.oof)
    np.testing.assert_array_equal(one.predict(x), three.predict(x))
    assert one.fold_r2 == three.fold_r2 and one.r2 > 0.8
    # with early stopping the refit runs beside the last folds and keeps the folds' mean best number of trees: the
    # same model as a refit of that many trees started after them
    from mobclip_core.evaluation.regression import make_model

    for jobs in (1, 2):
        stopped = cross_validate(x, y, n_jobs=jobs, early_stopping=20, **common)
        k = stopped.model.n_estimators
        assert k < 150 and stopped.description == f"LightGBM ({k} trees)"
        _, alone = make_model("lightgbm", len(y), {"n_estimators": k}, 3, 1)
        np.testing.assert_array_equal(stopped.predict(x), alone.fit(x, y).predict(x))


def test_cancel_stops_a_long_fit_within_seconds():
    """Cancel is heard inside a fit (at its next tree), not only between folds: a fold of 200,000 trees would
    otherwise run for minutes after the user pressed Cancel."""
    import time

    from mobclip_core.evaluation.regression import cross_validate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    y = x[:, 0] + 0.1 * rng.normal(size=600)
    start = time.perf_counter()
    told = []

    def feedback(fraction: float) -> bool:
        told.append(fraction)
        return time.perf_counter() - start > 0.5

    params = {"n_estimators": 20_000, "learning_rate": 1e-4, "min_child_samples": 2}  # about 15 s a fit
    with pytest.raises(InterruptedError, match="cancelled"):
        cross_validate(x, y, groups=np.arange(600) % 6, model="lightgbm", params=params, feedback=feedback)
    assert time.perf_counter() - start < 5.0
    assert told and told[-1] == 0.0  # asked while the first fits were still running

    def broken(fraction: float) -> bool:  # the caller's own error (or Ctrl-C) ends the fits too
        if time.perf_counter() - start > 0.5:
            raise RuntimeError("the caller's progress bar broke")
        return False

    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="progress bar broke"):
        cross_validate(x, y, groups=np.arange(600) % 6, model="lightgbm", params=params, feedback=broken)
    assert time.perf_counter() - start < 5.0


def test_cross_validation_fits_one_kind_of_model_and_may_skip_the_refit():
    """'auto' picks Ridge or LightGBM once, from all the rows: with 350 rows the 280-row folds used to be Ridge and
    the refit LightGBM (a score of one model reported for another). Without a refit, early stopping still works."""
    from mobclip_core.evaluation.regression import cross_validate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(350, 6))
    y = x[:, 0] + 0.1 * rng.normal(size=350)
    cv = cross_validate(x, y, model="auto", params={"n_estimators": 100}, early_stopping=10)
    assert cv.model_kind == "lightgbm" and cv.description.startswith("LightGBM (")
    assert cv.model.n_estimators < 100  # the folds' early stopping reached the refit
    small = cross_validate(x[:250], y[:250], model="auto")
    assert small.model_kind == "ridge" and small.description.startswith("Ridge (")
    alone = cross_validate(x, y, model="lightgbm", params={"n_estimators": 50}, early_stopping=10, refit=False)
    assert alone.model is None and np.isfinite(alone.oof).all() and alone.r2 > 0.5
