"""Compiled LINE: parallel SGD over edge samples without locks, reproducible for a seed and a thread count.

Every sample draws one edge by weight and ``negatives`` cells by degree^0.75 (alias tables, O(1) each) and applies
one SGD step to the source row and the 1 + K target rows at once, as the original C implementation does (Tang et
al. 2015). The C code runs its threads Hogwild on shared tables; the order in which their writes land is then up to
the scheduler and no two runs agree. Here each thread owns a copy of the tables for a round of about sixteen samples per
cell, and at the end of the round the copies' changes are summed into the shared tables in a fixed order
(``line_round``): the same lock-free steps, with the other threads' steps seen at round ends. Rounds are long (a
merge costs one pass over the tables) and waits are few, so a busy machine slows the kernel down in proportion,
without the collapse of a thread pool that meets at a barrier every few milliseconds.

Determinism. Samples are cut into fixed chunks of ``CHUNK`` samples, and chunk ``c`` draws from its own random stream
seeded by (seed, order, c) -- so *which* samples are drawn depends on the seed only, never on the thread count.
Thread ``t`` of ``T`` runs chunks t, t + T, t + 2T, ... in that order, so the learning rate, which decays linearly
with the global sample index, stays in step across threads. The result is bitwise the same for the same seed and
thread count (and machine: the compiled float32 code may differ between CPUs); different thread counts give
different, equally good, embeddings. One thread is plain sequential SGD.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CHUNK = 8192  # samples per random stream: fixed, so the samples drawn do not depend on the thread count

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


def pack_alias(prob: np.ndarray, alias: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    """An alias table as rows of uint32 (coin threshold, alias, *columns): one cache line per draw, not one per
    array, which is what a draw costs on a graph of millions of edges. A full column (prob 1) is its own alias."""
    packed = np.empty((prob.size, 2 + len(columns)), dtype=np.uint32)
    packed[:, 0] = np.minimum(np.floor(np.asarray(prob, dtype=np.float64) * 2.0**32), 2.0**32 - 1)
    packed[:, 1] = alias
    for i, col in enumerate(columns):
        packed[:, 2 + i] = col
    return packed


@njit(cache=True, inline="always")
def _mix(z):
    """splitmix64's finaliser: a bijection of 64-bit words that passes BigCrush as a counter-based generator."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _draw(state, table):
    """One row of a packed alias table from one 64-bit word: high half picks the column, low half the coin."""
    r = _mix(state)
    k = np.int64(((r >> np.uint64(32)) * np.uint64(table.shape[0])) >> np.uint64(32))
    if (r & _LOW32) >= np.uint64(table[k, 0]):
        k = np.int64(table[k, 1])
    return k


@njit(cache=True, parallel=True, fastmath=True)
def line_round(work, base, first, edges, cells, negatives, lr0, total, c0, c1, seed, stream):
    """Run chunks ``c0..c1-1`` of ``total`` samples, thread t on its table set ``work[t]``, then merge.

    ``edges`` is the packed alias table of the directed edges by weight, with (source, target) columns;
    ``cells`` the packed alias table of negatives by degree^0.75.

    A table set is (vertex table, context table) for the second order, the vertex table alone for the first. With
    one thread ``work[0]`` is ``base`` itself: plain sequential SGD. With T > 1 every thread starts the round from
    ``base`` and sees only its own steps; at the end ``base`` gains the sum of the T threads' changes, in thread
    order, and every copy restarts from it -- the same steps as Hogwild, with the other threads' steps visible at
    round ends instead of at a random moment, so the result is a function of (seed, T) alone.
    """
    n_threads = work.shape[0]
    d = work.shape[3]
    w = 0 if first else 1
    mix_seed = _mix(np.uint64(seed) ^ _mix(np.uint64(stream) + _GOLDEN))
    for t in prange(n_threads):
        tab = work[t]
        err = np.empty(d, dtype=np.float32)
        for c in range(c0 + t, c1, n_threads):
            state = _mix(mix_seed + np.uint64(c) * _GOLDEN)
            lo = c * CHUNK
            hi = min(lo + CHUNK, total)
            for i in range(lo, hi):
                lr = np.float32(lr0 * max(1e-4, 1.0 - i / total))
                state += _GOLDEN
                k = _draw(state, edges)
                u = np.int64(edges[k, 2])
                for q in range(d):
                    err[q] = 0.0
                for j in range(negatives + 1):
                    if j == 0:
                        target = np.int64(edges[k, 3])
                        label = np.float32(1.0)
                    else:
                        state += _GOLDEN
                        target = _draw(state, cells)
                        label = np.float32(0.0)
                    f = np.float32(0.0)
                    for q in range(d):
                        f += tab[0, u, q] * tab[w, target, q]
                    if f > 6.0:
                        g = (label - np.float32(1.0)) * lr
                    elif f < -6.0:
                        g = label * lr
                    else:
                        g = (label - np.float32(1.0) / (np.float32(1.0) + np.exp(-f))) * lr
                    for q in range(d):
                        err[q] += g * tab[w, target, q]
                        tab[w, target, q] += g * tab[0, u, q]
                for q in range(d):
                    tab[0, u, q] += err[q]
    if n_threads > 1:
        n_tab, n = base.shape[0], base.shape[1]
        for r in prange(n_tab * n):
            a, i = r // n, r % n
            for q in range(d):
                s = base[a, i, q]
                acc = s
                for t in range(n_threads):
                    acc += work[t, a, i, q] - s
                base[a, i, q] = acc
                for t in range(n_threads):
                    work[t, a, i, q] = acc
    return 0


@njit(cache=True)
def alias_draws(table, count, seed):
    """``count`` indices drawn as the kernel draws them (for checking the generator and the tables)."""
    out = np.empty(count, dtype=np.int64)
    state = _mix(np.uint64(seed))
    for i in range(count):
        state += _GOLDEN
        out[i] = _draw(state, table)
    return out
