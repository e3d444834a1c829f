"""Co-presence graph build: records/second and peak memory at 1e6 and 1e7 synthetic records.

Ways records can be located: by H3 cell, by place id (the H3 step runs once per distinct place), by raw coordinates
that repeat (records at venues: the builder locates each distinct coordinate pair once) and by raw coordinates that
are all distinct (GPS fixes: jittered by up to 1 m, so the H3 step runs per record). ``h3only`` times the H3 step
alone, ``points_to_cells`` on every record's coordinates, for comparison. Each case runs in a fresh child process so
its peak RSS is its own; records are generated chunk by chunk and generation is not timed. The compiled kernels are
loaded (or compiled, the first time after install) by a small warm-up build first; that one-time cost is printed
apart. Run: .venv/bin/python -m benchmarks.bench_graph [--sizes 1e6 1e7]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

CHUNK = 1_000_000
N_PLACES = 50_000
WEEKS = 8


def _places(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"lon": rng.uniform(8.8, 9.2, N_PLACES), "lat": rng.uniform(44.8, 45.2, N_PLACES)},
        index=pd.RangeIndex(N_PLACES, name="place"),
    )


def _chunk(i: int, n: int, n_persons: int):
    rng = np.random.default_rng(1000 + i)
    person = rng.integers(0, n_persons, n)
    ts = 1704067200 + rng.integers(0, WEEKS * 7 * 86400, n)
    # each person visits places near a personal centre: realistic, bounded co-presence sets
    home = (person * 2654435761) % N_PLACES
    place = (home + rng.integers(0, 200, n)) % N_PLACES
    return person, ts, place


def _case(kind: str, n: int) -> dict:
    from mobclip_core.grid import points_to_cells
    from mobclip_core.modalities import CopresenceGraphBuilder

    places = _places()
    place_cells = points_to_cells(places.lon.to_numpy(), places.lat.to_numpy(), 9)
    lon, lat = places.lon.to_numpy(), places.lat.to_numpy()
    t0 = time.perf_counter()
    warm = CopresenceGraphBuilder(9)
    warm.add_points(np.arange(4), np.zeros(4, np.int64), lon[:4], lat[:4])
    warm.finish()
    load_s = time.perf_counter() - t0
    builder = CopresenceGraphBuilder(9, memory_budget_mb=1024)
    n_persons = max(1, n // 40)
    spent = 0.0
    staged: list[pd.DataFrame] = []
    for i, start in enumerate(range(0, n, CHUNK)):
        person, ts, place = _chunk(i, min(CHUNK, n - start), n_persons)
        if kind == "coords":
            x, y = lon[place], lat[place]
        elif kind == "coords_unique":
            jitter = np.random.default_rng(i).uniform(-1e-5, 1e-5, (2, place.size))
            x, y = lon[place] + jitter[0], lat[place] + jitter[1]
        elif kind == "cells":
            c = place_cells[place]
        t0 = time.perf_counter()
        if kind == "cells":
            builder.add_cells(person, ts, c)
        elif kind == "places":
            builder.add_places(person, ts, place, places)
        elif kind in ("coords", "coords_unique"):
            builder.add_points(person, ts, x, y)
        elif kind == "h3only":
            points_to_cells(lon[place], lat[place], 9)
        elif kind == "duckdb":
            staged.append(pd.DataFrame({"person_id": person, "timestamp": ts, "cell": place_cells[place]}))
        spent += time.perf_counter() - t0
    if kind == "duckdb":
        from mobclip_core.modalities.mobility.engines import build_copresence_graph_duckdb

        t0 = time.perf_counter()
        g = build_copresence_graph_duckdb(iter(staged), 9, cell="cell", memory_limit="2GB")
        return {"kind": kind, "n": n, "seconds": spent + time.perf_counter() - t0, "edges": g.n_edges, "load_s": 0.0}
    if kind != "h3only":
        t0 = time.perf_counter()
        g = builder.finish()
        spent += time.perf_counter() - t0
        edges = g.n_edges
    else:
        edges = 0
    return {"kind": kind, "n": n, "seconds": spent, "edges": edges, "load_s": load_s}


def main() -> dict:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _case(sys.argv[2], int(float(sys.argv[3])))
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["1e6", "1e7"])
    p.add_argument(
        "--kinds",
        nargs="+",
        default=["cells", "places", "coords", "coords_unique", "h3only"],
        help="also: duckdb (same records through the DuckDB engine)",
    )
    args = p.parse_args()
    from benchmarks._util import run_child

    rows = []
    for size in args.sizes:
        for kind in args.kinds:
            rows.append(run_child("benchmarks.bench_graph", "--child", kind, size))
    df = pd.DataFrame(rows)
    df["M_records_per_s"] = df.n / df.seconds / 1e6
    print(
        df[["kind", "n", "seconds", "M_records_per_s", "edges", "peak_rss_mib"]].to_string(
            index=False, float_format="%.2f"
        )
    )
    for size in sorted(df.n.unique()):
        d = df[df.n == size].set_index("kind")
        if not {"coords", "h3only", "cells"} <= set(d.index):
            continue
        line = (
            f"n={size:.0e}: cells {d.M_records_per_s['cells']:.1f} M rec/s (target >= 5); "
            f"coords build / H3 step alone = {d.seconds['coords'] / d.seconds['h3only']:.2f}x time (target <= 1)"
        )
        if "coords_unique" in d.index:
            line += f"; all-distinct coords {d.seconds['coords_unique'] / d.seconds['h3only']:.2f}x"
        print(line)
    print(f"one-time kernel load per process (not in the times above): {df.load_s.max():.2f} s")
    if len(df.n.unique()) > 1:
        small, big = sorted(df.n.unique())[:2]
        ratio = df[df.n == big].set_index("kind").seconds / df[df.n == small].set_index("kind").seconds
        print(
            f"cost growth {small:.0e} -> {big:.0e} ({big / small:.0f}x records): "
            + ", ".join(f"{k} {v:.1f}x" for k, v in ratio.items())
        )
    return {"rows": rows}


if __name__ in ("__main__", "__bench__"):
    if __name__ == "__main__":
        main()
