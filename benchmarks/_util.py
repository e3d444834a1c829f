"""Small helpers shared by the benchmarks: best-of timing and peak memory of a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import time


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_child(module: str, *args: str) -> dict:
    """Run ``python -m module args`` and return its last stdout line as JSON plus the child's peak RSS (MiB)."""
    code = (
        f"import json, resource, runpy, sys; sys.argv = [{module!r}] + {list(args)!r}; "
        f"out = runpy.run_module({module!r}, run_name='__bench__')['main'](); "
        "out['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(out))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])
