"""Cross-validated LightGBM as *Predict a field* runs it: folds one after another on LightGBM's own two threads (the
former way) against the folds and the refit side by side, one thread each (``cross_validate`` today); quiet and
beside one CPU-bound process that this benchmark starts (as QGIS drawing or a second job would be).

Side by side in one run, same data, same splits, the dialog's defaults (at most 1,000 trees, 20 features per leaf,
5 blocked folds, early stopping after 50 rounds): 800 rows (a city's census tracts) and 10,000 rows, 128 embedding
fields and a planted target. Writes benchmarks/results/regression.md.
Run: .venv/bin/python -m benchmarks.bench_regression
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_line import Competitor
from mobclip_core.evaluation.regression import cross_validate, fit_model, kfold_splits, make_model

RESULTS = Path(__file__).parent / "results" / "regression.md"
PARAMS = {"n_estimators": 1000, "min_child_samples": 20}
EARLY_STOPPING = 50


def folds_in_turn(x, y, groups, threads: int = 2) -> None:
    """The former ``cross_validate``: each fold, then the refit, on ``threads`` LightGBM threads."""
    trees = []
    for k, (tr, te) in enumerate(kfold_splits(len(y), 5, groups, 0)):
        kind, est = make_model("lightgbm", len(tr), PARAMS, 0, threads)
        trees.append(fit_model(est, kind, x, y, tr, EARLY_STOPPING, k))
        est.predict(x[te])
    kind, est = make_model("lightgbm", len(y), {**PARAMS, "n_estimators": int(np.mean(trees))}, 0, threads)
    est.fit(x, y)


def side_by_side(x, y, groups) -> None:
    cross_validate(x, y, groups=groups, model="lightgbm", params=PARAMS, early_stopping=EARLY_STOPPING)


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 128))
    y = 2 * x[:, 0] + np.sin(2 * x[:, 1]) + rng.normal(scale=0.3, size=n)
    return x, y, rng.integers(0, 40, n)


def seconds(fn, *args, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> list[tuple]:
    rows = []
    for n, repeat in ((800, 3), (10_000, 1)):
        x, y, groups = data(n)
        for busy in (False, True):
            competitor = Competitor() if busy else None
            if competitor:
                competitor.__enter__()
            try:
                before = seconds(folds_in_turn, x, y, groups, repeat=repeat)
                now = seconds(side_by_side, x, y, groups, repeat=repeat)
            finally:
                if competitor:
                    competitor.__exit__(None, None, None)
            rows.append((n, "beside one busy process" if busy else "quiet", before, now))
            print(f"{n:>6,} rows, {rows[-1][1]:<24} before {before:7.2f} s   now {now:7.2f} s   {before / now:4.1f}x")
    lines = [
        "# Predict a field: cross-validated LightGBM, folds in turn (two LightGBM threads) against side by side",
        "",
        f"`python -m benchmarks.bench_regression` on {os.cpu_count()} cores ({platform.machine()}); 128 fields, 5 "
        "blocked folds + the refit, at most 1,000 trees with early stopping after 50 rounds (the dialog's "
        "defaults); best of 3 runs at 800 rows, one run at 10,000.",
        "",
        "| rows | machine | folds in turn, LightGBM's two threads (before) | side by side, one thread each (now) | "
        "before / now |",
        "|---|---|---|---|---|",
        *(f"| {n:,} | {m} | {b:.2f} s | {a:.2f} s | {b / a:.1f}x |" for n, m, b, a in rows),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
