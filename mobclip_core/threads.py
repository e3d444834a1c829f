"""Thread counts for the compiled and torch kernels, set for one call and restored after it.

A library call must not leave process-wide state changed: ``numba_threads`` and ``torch_threads`` set the count
for the duration of a ``with`` block and put the previous value back. ``threads = 0`` means every core this process
may run on (``os.sched_getaffinity``, which honours taskset, cgroups' cpusets and QGIS's own affinity).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .exceptions import InvalidInputError

# numba's default threading layer (workqueue) must not launch parallel kernels from two threads at once, which a
# host application such as QGIS (algorithms on worker threads) could do: parallel entry points take this lock.
PARALLEL_LOCK = threading.RLock()


def serialized(fn):
    """``fn`` under ``PARALLEL_LOCK``: for entry points that launch parallel numba kernels."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with PARALLEL_LOCK:
            return fn(*args, **kwargs)

    return wrapper


def usable_cores() -> int:
    """Cores this process may run on (not the machine's count: a container or taskset may allow fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int) -> int:
    """``threads`` itself, or the usable cores for 0 (auto)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InvalidInputError(f"threads must be a whole number >= 0 (0 = every usable core), got {threads!r}")
    return threads if threads > 0 else usable_cores()


@contextmanager
def numba_threads(threads: int) -> Iterator[int]:
    """numba's thread count for this block (capped at the pool numba started with); yields the count used."""
    import numba

    n = min(resolve_threads(threads), numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """torch's intra-op thread count for this block; yields the count used."""
    from ._optional import import_optional

    torch = import_optional("torch")
    n = resolve_threads(threads)
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
