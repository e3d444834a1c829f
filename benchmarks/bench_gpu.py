"""The GPU against the CPU, side by side in one run: MobCLIP training epochs, distillation and LINE's torch engine.

Needs a CUDA GPU (it says so and stops without one). Training: epochs of the defaults (batch 20,480, 4 LightGCN
layers, blocked InfoNCE) on planted-community regions of 5,000 and 20,000 cells, on the CPU (every core) and on the
GPU; then on the national dry run's graph (``bench_national``: ~206,000 res-6 cells, 1e7 synthetic records) on the
GPU alone (one CPU epoch of it takes 18 min on 2 cores, ``results/national.md``). No neighbourhood context is
exported (``context_m = []``: not part of an epoch). An epoch's time is the fastest of
epochs 2-3 (the first pays for CUDA's start). LINE: the torch engine on the GPU against the compiled engine on every
CPU core, 128-d second order, 5 negatives, at 20,000 and 200,000 cells (``bench_line``'s planted graphs).
Distillation: epochs of the default coordinate encoder on 5,345 points (Chicago's cell count) and 50,000, CPU against
GPU, and one whole default distillation on the GPU.
Run: python -m benchmarks.bench_gpu [--out FILE.md] [--records 1e7] [--parts training distil line national]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

EPOCHS = 3
LINE_SAMPLES = 20_000_000


def _epoch(ds, device: str) -> dict:
    """Fastest epoch of ``EPOCHS`` on ``device`` and the GPU memory it peaked at."""
    import torch

    from mobclip_core.config import LineConfig, TrainConfig
    from mobclip_core.training import train_mobclip

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    res = train_mobclip(
        ds,
        TrainConfig(epochs=EPOCHS, patience=0, device=device, context_m=[]),
        LineConfig(samples_per_edge=1e-3, negatives=5),
    )
    gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return {"epoch_s": float(res.history.seconds.iloc[1:].min()), "gpu_mib": gpu_mib}


def training_rows() -> list[str]:
    from mobclip_core.synthetic import synthetic_region

    rows = []
    for n in (5_000, 20_000):
        ds, _ = synthetic_region(n)
        cpu, gpu = _epoch(ds, "cpu"), _epoch(ds, "cuda")
        rows.append(
            f"| training epoch, {n:,} cells, {ds.graph.n_edges:,} edges | {cpu['epoch_s']:.2f} s | "
            f"{gpu['epoch_s']:.3f} s | {cpu['epoch_s'] / gpu['epoch_s']:.0f}x | {gpu['gpu_mib']:,.0f} MiB |"
        )
        print(rows[-1], flush=True)
    return rows


def national_row(records: float) -> str:
    from benchmarks import bench_national
    from mobclip_core.modalities import MobilityGraph

    work = Path(tempfile.mkdtemp(prefix="mobclip-gpu-"))
    graph_info = bench_national.stage_graph(work, int(records))
    graph = MobilityGraph.load(work / "graph.npz")
    gpu = _epoch(bench_national._dataset(graph), "cuda")
    row = (
        f"| training epoch, {graph_info['cells']:,} res-6 cells (national dry run), {graph_info['edges']:,} edges | "
        f"not run here (18.3 min on 2 cores, results/national.md) | {gpu['epoch_s']:.2f} s | - | "
        f"{gpu['gpu_mib']:,.0f} MiB |"
    )
    print(row, flush=True)
    return row


def line_rows() -> list[str]:
    from benchmarks.bench_line import planted_graph
    from mobclip_core.models.line import train_line

    rows = []
    for n, degree in ((20_000, 60), (200_000, 30)):
        adj = planted_graph(n, degree)
        rate = {}
        for name, kw in (
            ("numba", dict(engine="numba")),
            ("torch gpu", dict(engine="torch", device="cuda")),
            ("torch gpu, batch 16384", dict(engine="torch", device="cuda", batch_size=16384)),
        ):
            train_line(adj, samples=200_000, seed=0, **kw)  # compile / warm up
            rate[name] = train_line(adj, samples=LINE_SAMPLES, seed=0, **kw).samples_per_second
        rows.append(
            f"| LINE, {n:,} cells, {adj.nnz:,} directed edges | {rate['numba'] / 1e6:.2f} M samples/s (compiled, "
            f"{os.cpu_count()} threads) | {rate['torch gpu'] / 1e6:.2f} M samples/s (batch 1,024); "
            f"{rate['torch gpu, batch 16384'] / 1e6:.2f} M (batch 16,384) | "
            f"{rate['torch gpu'] / rate['numba']:.1f}x | |"
        )
        print(rows[-1], flush=True)
    return rows


def _city_teacher(n: int, seed: int = 0):
    """``n`` points over Chicago's extent and a smooth 128-d field on them (random Fourier features of position),
    a stand-in teacher of a city embedding's shape."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-87.94, -87.52, n), rng.uniform(41.64, 42.02, n)
    freq = rng.normal(0.0, 40.0, (2, 128))  # wavelengths of a few km
    return lon, lat, np.sin(np.c_[lon, lat] @ freq + rng.uniform(0, 2 * np.pi, 128)).astype(np.float32)


def distil_rows() -> list[str]:
    """Distillation epochs (the default network: SH L=32 + Fourier -> 8 x 512 -> 128), CPU against GPU, and one
    whole default distillation of a city on the GPU (early stopping as configured)."""
    import torch

    from mobclip_core.encoders.distilled import DistilConfig, DistilledEncoder

    rows = []
    for n in (5_345, 50_000):
        lon, lat, y = _city_teacher(n)
        epoch = {}
        for device in ("cpu", "cuda"):
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            enc = DistilledEncoder(DistilConfig(epochs=EPOCHS + 1, patience=EPOCHS + 1)).fit(lon, lat, y, device=device)
            epoch[device] = min(h["seconds"] for h in enc.history[1:])
        mib = torch.cuda.max_memory_allocated() / 2**20
        rows.append(
            f"| distillation epoch, {n:,} points (default network, batch 1,024) | {epoch['cpu']:.2f} s | "
            f"{epoch['cuda']:.3f} s | {epoch['cpu'] / epoch['cuda']:.0f}x | {mib:,.0f} MiB |"
        )
        print(rows[-1], flush=True)
    from mobclip_core.encoders import distilled

    lon, lat, y = _city_teacher(5_345)
    cache, distilled.FEATURE_CACHE_BYTES = distilled.FEATURE_CACHE_BYTES, 0  # features per batch, as before
    try:
        enc = DistilledEncoder(DistilConfig(epochs=EPOCHS + 1, patience=EPOCHS + 1)).fit(lon, lat, y, device="cuda")
    finally:
        distilled.FEATURE_CACHE_BYTES = cache
    rows.append(
        f"| the same epoch, 5,345 points, positional features computed per batch (before this release) | | "
        f"{min(h['seconds'] for h in enc.history[1:]):.3f} s | | |"
    )
    print(rows[-1], flush=True)
    t0 = time.perf_counter()
    enc = DistilledEncoder().fit(lon, lat, y, device="cuda")
    total = time.perf_counter() - t0
    rows.append(
        f"| whole default distillation, 5,345 points (early stopping after {len(enc.history)} epochs) | "
        f"not run here | {total:.1f} s | - | |"
    )
    print(rows[-1], flush=True)
    return rows


PARTS = {"training": training_rows, "distil": distil_rows, "line": line_rows}


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path)
    p.add_argument("--records", type=float, default=1e7)
    p.add_argument("--parts", nargs="+", choices=[*PARTS, "national"], default=[*PARTS, "national"])
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA GPU: torch sees none here")
    head = [
        "# The GPU against the CPU: training epochs and LINE",
        "",
        f"`python -m benchmarks.bench_gpu` on {torch.cuda.get_device_name()} and {os.cpu_count()} CPU cores, "
        f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}.",
        "",
        "| workload | CPU | GPU | GPU / CPU | GPU memory (peak) |",
        "|---|---|---|---|---|",
    ]
    rows = [row for part in args.parts if part in PARTS for row in PARTS[part]()]
    if "national" in args.parts:  # the longest last
        rows.append(national_row(args.records))
    text = "\n".join(head + rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
