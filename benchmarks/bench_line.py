"""LINE edge samples per second: the compiled (numba) engine against the torch engine, quiet and beside a competitor.

Side by side in one run, at 1k, 20k and 200k cells (planted-community graphs, average degree ~60 at 1k and 20k,
~30 at 200k), 128-d second order, 5 negatives: each engine quiet, then with one CPU-bound competing process that
this benchmark starts and stops (a pure Python loop: exactly one busy core). The kept share of throughput is the
ratio of the two. Also one MobCLIP training epoch (5,000 cells) quiet and beside the competitor, and the compiled
kernel with and without its hoisted dot products (``line.HOIST_DOT_PRODUCTS``), alternating in this process.

No reference LINE implementation was found that installs from the package registries here: PyPI's ``graphvite`` and
``graph-embedding`` do not exist, ``ge`` is an unrelated package, ``karateclub`` has no LINE, ``cogdl`` (0.6, 2023)
has one but drags in a stack of pinned dependencies. Run: .venv/bin/python -m benchmarks.bench_line
Writes benchmarks/results/line.md (the tables; a "## Notes" section already there is kept).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SIZES = {1_000: 60, 20_000: 60, 200_000: 30}  # cells -> average degree
SAMPLES = {"numba": 8_000_000, "numba 1 thread": 8_000_000, "torch": 500_000}
RESULTS = Path(__file__).parent / "results" / "line.md"
NOTES = "\n## Notes\n"  # hand-written reading of the tables, kept when the script rewrites them


def planted_graph(n: int, degree: int, seed: int = 0) -> sp.csr_matrix:
    """Symmetric weighted graph: 70% of edges inside one of n/50 communities, the rest uniform."""
    rng = np.random.default_rng(seed)
    comm = rng.integers(0, max(2, n // 50), n)
    m = n * degree // 2
    a = rng.integers(0, n, m)
    order = np.argsort(comm, kind="stable")
    start = np.searchsorted(comm[order], np.arange(comm.max() + 1))
    count = np.bincount(comm)
    mate = order[start[comm[a]] + (rng.random(m) * count[comm[a]]).astype(int)]
    b = np.where(rng.random(m) < 0.7, mate, rng.integers(0, n, m))
    adj = sp.coo_matrix((rng.integers(1, 20, m).astype(float), (a, b)), shape=(n, n)).tocsr()
    adj = adj + adj.T
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x += i * i


class Competitor:
    """One CPU-bound process (a pure Python loop) for the duration of a ``with`` block."""

    def __enter__(self) -> Competitor:
        self.stop = mp.Event()
        self.proc = mp.Process(target=_spin, args=(self.stop,), daemon=True)
        self.proc.start()
        time.sleep(0.5)  # let it reach full speed
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()


def line_rate(adj, engine: str) -> float:
    from mobclip_core.models.line import train_line

    threads = 1 if engine == "numba 1 thread" else 0
    res = train_line(adj, dim=128, samples=SAMPLES[engine], engine=engine.split()[0], threads=threads, seed=0)
    return res.samples_per_second


def hoist_rates(adj, reps: int = 3) -> tuple[float, float]:
    """Median samples/s of the compiled kernel (all threads) with and without hoisted dot products, alternating."""
    from mobclip_core.models import line

    rates: dict[bool, list[float]] = {True: [], False: []}
    try:
        for rep in range(reps):
            for hoist in (True, False) if rep % 2 == 0 else (False, True):
                line.HOIST_DOT_PRODUCTS = hoist
                rates[hoist].append(line_rate(adj, "numba"))
    finally:
        line.HOIST_DOT_PRODUCTS = True
    return float(np.median(rates[True])), float(np.median(rates[False]))


def epoch_seconds(ds) -> float:
    from mobclip_core.config import LineConfig, TrainConfig
    from mobclip_core.training import train_mobclip

    res = train_mobclip(ds, TrainConfig(epochs=2, patience=0, batch_size=4096), LineConfig(samples_per_edge=1))
    return float(res.history.seconds.min())


def main() -> dict:
    from benchmarks.bench_model import synthetic_dataset

    small = planted_graph(500, 20)
    for engine in SAMPLES:  # compile / warm up
        from mobclip_core.models.line import train_line

        train_line(small, dim=128, samples=50_000, engine=engine.split()[0], threads=1 if "1" in engine else 0)
    rows, hoisting = [], []
    for n, degree in SIZES.items():
        adj = planted_graph(n, degree)
        hoisting.append((f"LINE {n:,} cells", *hoist_rates(adj)))
        print(hoisting[-1], flush=True)
        for engine in SAMPLES:
            load = os.getloadavg()[0]
            quiet = line_rate(adj, engine)
            with Competitor():
                busy = line_rate(adj, engine)
            rows.append((f"LINE {n:,} cells, {adj.nnz:,} directed edges", engine, quiet, busy, "samples/s", load))
            print(rows[-1], flush=True)
    ds = synthetic_dataset(5_000)
    load = os.getloadavg()[0]
    quiet = epoch_seconds(ds)
    with Competitor():
        busy = epoch_seconds(ds)
    rows.append(("MobCLIP training, 5,000 cells (epochs per 100 s)", "torch", 100 / quiet, 100 / busy, "", load))
    by = {(r[0], r[1]): r for r in rows}
    lines = [
        "# LINE and training throughput, quiet and beside one CPU-bound process",
        "",
        f"Measured side by side by `python -m benchmarks.bench_line` on {os.cpu_count()} cores ({CPU}), "
        f"load average before the run {LOAD[0]:.2f} / after {os.getloadavg()[0]:.2f}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}. 128-d second-order LINE, 5 negatives.",
        "",
        "| workload | engine | load before | alone | with 1 competitor | kept | numba / torch (alone) |",
        "|---|---|---|---|---|---|---|",
    ]
    for what, engine, quiet, busy, unit, load in rows:
        torch_row = by.get((what, "torch"))
        vs = f"{quiet / torch_row[2]:.1f}x" if torch_row and engine != "torch" else ""
        lines.append(
            f"| {what} | {engine} | {load:.1f} | {quiet:,.1f} {unit} | {busy:,.1f} {unit} | {busy / quiet:.0%} | {vs} |"
        )
    lines += [
        "",
        "The compiled kernel (all threads, quiet) with a sample's dot products taken before its steps when its rows "
        "are distinct, against the plain step-by-step loop (bitwise the same result); medians of 3 runs each, "
        "alternating:",
        "",
        "| workload | hoisted | plain loop | hoisted / plain |",
        "|---|---|---|---|",
    ]
    for what, hoisted, plain in hoisting:
        lines.append(f"| {what} | {hoisted:,.0f} samples/s | {plain:,.0f} samples/s | {hoisted / plain:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    old = RESULTS.read_text() if RESULTS.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    RESULTS.write_text(text + notes)
    return {f"{r[0]} | {r[1]}": {"quiet": r[2], "busy": r[3]} for r in rows}


LOAD = os.getloadavg()
CPU = platform.processor() or platform.machine()

if __name__ == "__main__":
    main()
