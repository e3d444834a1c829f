"""Training and LINE on a CUDA GPU: the model the CPU would train, and usable on a machine without a GPU.

Skipped where torch sees no GPU (CI, most laptops). On a GPU machine: ``pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from mobclip_core.config import LineConfig, TrainConfig  # noqa: E402
from mobclip_core.evaluation.probe import probe_accuracy  # noqa: E402
from mobclip_core.models.line import train_line  # noqa: E402
from mobclip_core.synthetic import synthetic_region  # noqa: E402
from mobclip_core.training import train_mobclip  # noqa: E402

QUICK = dict(batch_size=256, epochs=6, patience=0, context_m=[])
LINE = LineConfig(samples_per_edge=20)
REGION = dict(n_cells=1500, degree=30, n_communities=10, poi_dim=32, seed=1)  # rebuilt by a process without the GPU


@pytest.fixture(scope="module")
def region():
    return synthetic_region(**REGION)


@pytest.fixture(scope="module")
def on_both(region, tmp_path_factory):
    ds, _ = region
    out = tmp_path_factory.mktemp("gpu")
    cpu = train_mobclip(ds, TrainConfig(device="cpu", **QUICK), LINE)
    gpu = train_mobclip(ds, TrainConfig(device="auto", **QUICK), LINE, checkpoint_dir=out)  # auto: the GPU
    return cpu, gpu, out


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_training_runs_on_the_gpu_and_learns_what_the_cpu_learns(on_both, region):
    cpu, gpu, _ = on_both
    _, communities = region
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert gpu.model.connected.device.type == "cuda"
    # the same LINE start (computed on the CPU) and the same batches: the runs differ only by float rounding
    print("train loss cpu", cpu.history.train_loss.round(5).tolist(), "gpu", gpu.history.train_loss.round(5).tolist())
    np.testing.assert_allclose(gpu.history.train_loss.iloc[0], cpu.history.train_loss.iloc[0], rtol=1e-4)
    np.testing.assert_allclose(gpu.history.train_loss, cpu.history.train_loss, rtol=1e-4)  # measured: 5 decimals
    np.testing.assert_allclose(gpu.history.val_loss, cpu.history.val_loss, rtol=1e-4)
    cos = _row_cosines(gpu.embeddings.to_numpy(), cpu.embeddings.to_numpy())
    print("row cosine gpu / cpu: median", np.median(cos), "min", cos.min())
    assert cos.min() > 0.999  # measured: 0.9999995
    acc = {k: probe_accuracy(r.embeddings.to_numpy(), communities) for k, r in (("cpu", cpu), ("gpu", gpu))}
    print("planted communities", acc)
    assert acc["gpu"]["linear_probe"] > 0.5  # ten communities: chance is about 0.1
    assert abs(acc["gpu"]["linear_probe"] - acc["cpu"]["linear_probe"]) < 0.05


def test_a_model_trained_on_the_gpu_embeds_on_a_machine_without_one(on_both, region, tmp_path):
    _, gpu, _ = on_both
    ds, _ = region
    gpu.model.save(tmp_path / "model")
    expected = gpu.model.embed_dataset(ds, "mobility")
    script = (  # a process that sees no GPU: the analyst's laptop
        "import sys, numpy as np, torch\n"
        "from mobclip_core.models.mobclip import MobCLIP\n"
        "from mobclip_core.synthetic import synthetic_region\n"
        "assert not torch.cuda.is_available()\n"
        f"ds, _ = synthetic_region(**{REGION!r})\n"
        "np.save(sys.argv[2], MobCLIP.load(sys.argv[1]).embed_dataset(ds, 'mobility'))\n"
    )
    out = tmp_path / "cpu.npy"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model"), str(out)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), expected, atol=1e-4)
    from mobclip_core.models.mobclip import MobCLIP

    on_gpu = MobCLIP.load(tmp_path / "model", map_location="cuda")  # every part on the GPU, none left behind
    assert {p.device.type for p in on_gpu.parameters()} | {b.device.type for b in on_gpu.buffers()} == {"cuda"}
    np.testing.assert_allclose(on_gpu.embed_dataset(ds, "mobility"), expected, atol=1e-4)


def test_a_gpu_run_resumes_on_the_cpu(on_both, region):
    _, gpu, checkpoint = on_both
    ds, _ = region
    more = train_mobclip(
        ds, TrainConfig(device="cpu", **{**QUICK, "epochs": 8}), LINE, checkpoint_dir=checkpoint, resume=True
    )
    assert list(more.history.epoch) == list(range(8))
    np.testing.assert_array_equal(more.history.train_loss.iloc[:6], gpu.history.train_loss)
    assert next(more.model.parameters()).device.type == "cpu"


def test_a_gpu_run_resumes_on_the_gpu(region, tmp_path):
    """``last.pt`` holds the CPU generators' states: resuming on the GPU must keep them on the CPU."""
    ds, _ = region
    first = train_mobclip(ds, TrainConfig(device="cuda", **{**QUICK, "epochs": 3}), LINE, checkpoint_dir=tmp_path)
    more = TrainConfig(device="cuda", **{**QUICK, "epochs": 5})
    res = train_mobclip(ds, more, LINE, checkpoint_dir=tmp_path, resume=True)
    assert list(res.history.epoch) == list(range(5))
    np.testing.assert_array_equal(res.history.train_loss.iloc[:3], first.history.train_loss)
    straight = train_mobclip(ds, more, LINE)
    np.testing.assert_allclose(res.history.train_loss, straight.history.train_loss, rtol=1e-5)


def test_line_torch_engine_runs_on_the_gpu(region):
    ds, communities = region
    runs = {
        device: train_line(ds.graph.adjacency, dim=32, samples=2_000_000, engine="torch", device=device, seed=0)
        for device in ("cpu", "cuda")
    }
    acc = {device: probe_accuracy(r.embedding, communities)["linear_probe"] for device, r in runs.items()}
    rate = {device: round(r.samples_per_second) for device, r in runs.items()}
    print("LINE torch engine: probe", acc, "samples/s", rate)
    assert runs["cuda"].embedding.dtype == np.float32 and np.isfinite(runs["cuda"].embedding).all()
    assert acc["cuda"] > 0.5
    assert abs(acc["cuda"] - acc["cpu"]) < 0.05


def test_distillation_runs_on_the_gpu_and_fits_what_the_cpu_fits(tmp_path):
    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-87.9, -87.5, 3000), rng.uniform(41.65, 42.0, 3000)
    teacher = np.sin(np.c_[lon, lat] @ rng.normal(0, 40, (2, 16)) + rng.uniform(0, 6, 16))  # smooth, 16-d
    cfg = DistilConfig(hidden=128, layers=3, epochs=40, patience=40)
    fits = {"cpu": DistilledEncoder(cfg).fit(lon, lat, teacher, device="cpu")}
    torch.cuda.reset_peak_memory_stats()
    fits["cuda"] = DistilledEncoder(cfg).fit(lon, lat, teacher, device="cuda")
    assert torch.cuda.max_memory_allocated() > 3000 * 16 * 4  # the points and targets were on the GPU at least
    loss = {device: [h["train_loss"] for h in enc.history] for device, enc in fits.items()}
    print("distillation loss, epochs 1 / 10 / 40:", {d: [round(v[i], 6) for i in (0, 9, 39)] for d, v in loss.items()})
    # the same start and the same batches: the runs differ by float rounding, which grows over 40 epochs of Adam
    np.testing.assert_allclose(loss["cuda"][0], loss["cpu"][0], rtol=1e-4)
    np.testing.assert_allclose(loss["cuda"], loss["cpu"], rtol=0.05)
    assert loss["cuda"][-1] < 0.5 * loss["cuda"][0]  # it learned
    gpu = fits["cuda"]
    assert {p.device.type for p in gpu.net.parameters()} == {"cpu"}  # back on the CPU: embed, save, load work there
    pred = {d: enc.embed(lon, lat) for d, enc in fits.items()}
    cos = _row_cosines(pred["cuda"], pred["cpu"])
    print("distilled embeddings, row cosine gpu / cpu: median", np.median(cos), "min", cos.min())
    assert np.median(cos) > 0.99
    gpu.save(tmp_path / "d")
    np.testing.assert_array_equal(DistilledEncoder.load(tmp_path / "d").embed(lon, lat), pred["cuda"])


def test_out_of_core_training_on_the_gpu_matches_in_memory(region):
    """``disk_block_rows``: the adjacency's row blocks are read from disk on the CPU and moved to the GPU."""
    ds, _ = region
    runs = {
        rows: train_mobclip(ds, TrainConfig(device="cuda", disk_block_rows=rows, **{**QUICK, "epochs": 2}), LINE)
        for rows in (0, 400)  # 0: in memory; 400: four blocks of rows
    }
    assert next(runs[400].model.parameters()).device.type == "cuda"
    np.testing.assert_allclose(runs[400].history.train_loss, runs[0].history.train_loss, rtol=1e-4)
    assert _row_cosines(runs[400].embeddings.to_numpy(), runs[0].embeddings.to_numpy()).min() > 0.999
