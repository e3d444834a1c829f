"""LINE edge samples per second and MobCLIP training seconds per epoch at three graph sizes.

Synthetic graphs with planted communities (avg degree ~60) and random POI-like (384-d) and demographic (16-d)
features; shows how cost grows with cells and edges. Run: .venv/bin/python -m benchmarks.bench_model
"""

from __future__ import annotations

import time

import pandas as pd

SIZES = (1_000, 5_000, 20_000)
BATCH = 4096  # InfoNCE cost per epoch grows as cells x batch; the paper's 20480 suits a GPU


def synthetic_dataset(n: int, degree: int = 60, seed: int = 0):
    """A planted-community region of ``n`` cells (``mobclip_core.synthetic.synthetic_region``)."""
    from mobclip_core.synthetic import synthetic_region

    return synthetic_region(n, degree=degree, seed=seed)[0]


def main() -> dict:
    from mobclip_core.config import LineConfig, TrainConfig
    from mobclip_core.models.line import train_line
    from mobclip_core.training import train_mobclip

    rows = []
    for n in SIZES:
        ds = synthetic_dataset(n)
        line = train_line(ds.graph.adjacency, samples=3_000_000, seed=0)
        t0 = time.perf_counter()
        res = train_mobclip(ds, TrainConfig(epochs=3, patience=0, batch_size=BATCH), LineConfig(samples_per_edge=1))
        epoch_s = float(res.history.seconds.mean())
        rows.append(
            {
                "cells": n,
                "edges": ds.graph.n_edges,
                "line_M_samples_per_s": line.samples_per_second / 1e6,
                "train_s_per_epoch": epoch_s,
                "total_s": time.perf_counter() - t0,
            }
        )
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format="%.3f"))
    first, last = df.iloc[0], df.iloc[-1]
    print(
        f"cells x{last.cells / first.cells:.0f}, edges x{last.edges / first.edges:.0f} -> "
        f"epoch time x{last.train_s_per_epoch / first.train_s_per_epoch:.1f}; "
        f"LINE throughput {df.line_M_samples_per_s.min():.2f}-{df.line_M_samples_per_s.max():.2f} M/s (target >= 1)"
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
