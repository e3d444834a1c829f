"""Compiled LINE: parallel SGD over edge samples without locks, reproducible for a seed and a thread count.

Every sample draws one edge by weight and ``negatives`` cells by degree^0.75 (alias tables, O(1) each) and applies
one SGD step to the source row and the 1 + K target rows at once, as the original C implementation does (Tang et
al. 2015). The C code runs its threads Hogwild on shared tables; the order in which their writes land is then up to
the scheduler and no two runs agree. Here each thread owns a copy of the tables for a round of about sixteen samples per
cell, and at the end of the round the copies' changes are summed into the shared tables in a fixed order
(``line_round``): the same lock-free steps, with the other threads' steps seen at round ends. Rounds are long (a
merge costs one pass over the tables) and waits are few, so a busy machine slows the kernel down in proportion,
without the collapse of a thread pool that meets at a barrier every few milliseconds.

Memory. At 20,000 cells and more the tables no longer fit the caches and a sample's eight random rows (the edge's
alias-table row, the source's vertex row, 1 + K context rows) would each wait for memory in turn. So a thread
works as a three-stage pipeline over its chunk: it draws the alias-table columns of sample ``s + 2 LEAD`` (and
prefetches those rows), resolves the cells of sample ``s + LEAD`` (and prefetches their table rows), and trains on
sample ``s``, whose rows have arrived meanwhile. The samples, the order of the steps and so the result are those of
a plain loop, to the bit; an edge's alias row carries its alias's endpoints so a draw reads one row, not two.

Compute. The C code takes a target's dot product, steps, then takes the next target's: each dot product waits for
the step before it in case they share a row. When a sample's 1 + K rows are distinct (and, first order, none is the
source) no step changes a row a later product reads, so the kernel takes all 1 + K products first (independent
chains the CPU overlaps) and then the steps: the same arithmetic, bitwise. A sample that repeats a row runs the
plain loop.

Determinism. Samples are cut into fixed chunks of ``CHUNK`` samples, and chunk ``c`` draws from its own random stream
seeded by (seed, order, c) -- so *which* samples are drawn depends on the seed only, never on the thread count.
Thread ``t`` of ``T`` runs chunks t, t + T, t + 2T, ... in that order, so the learning rate, which decays linearly
with the global sample index, stays in step across threads. The result is bitwise the same for the same seed and
thread count (and machine: the compiled float32 code may differ between CPUs); different thread counts give
different, equally good, embeddings. One thread is plain sequential SGD.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

CHUNK = 8192  # samples per random stream: fixed, so the samples drawn do not depend on the thread count
LEAD = 8  # samples between prefetching a sample's rows and using them (a few memory latencies' worth of work)
_RING = 2 * LEAD  # slots of the pipeline's buffers: samples s .. s + 2 LEAD - 1 are in flight
_LINE = 16  # float32 values per 64-byte cache line

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


def pack_alias(prob: np.ndarray, alias: np.ndarray, *columns: np.ndarray, out=None) -> np.ndarray:
    """An alias table as rows of uint32: (coin threshold, alias) alone, or with ``columns`` (coin threshold,
    *columns, *the alias's columns) -- the alias's values in place of its index, so a draw reads one row, not one
    per array and not the alias's row too, which is what a draw costs on a graph of millions of edges. A full column
    (prob 1) is its own alias. ``out``: an empty uint32 array of that shape to fill (e.g. one on huge pages)."""
    width = 1 + 2 * len(columns) if columns else 2
    packed = np.empty((prob.size, width), dtype=np.uint32) if out is None else out
    packed[:, 0] = np.minimum(np.floor(np.asarray(prob, dtype=np.float64) * 2.0**32), 2.0**32 - 1)
    if not columns:
        packed[:, 1] = alias
    for i, col in enumerate(columns):
        packed[:, 1 + i] = col
        packed[:, 1 + len(columns) + i] = col[alias]
    return packed


@intrinsic
def prefetch(typingctx, array, index):
    """Ask the CPU to bring the cache line holding ``array[index, 0, ...]`` into every cache level, for writing
    (``llvm.prefetch``): a hint, never a fault, so an index still being decided costs nothing if it is wrong."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        first = context.cast(builder, args[1], signature.args[1], types.intp)
        idx = [first] + [context.get_constant(types.intp, 0)] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        name = "llvm.prefetch.p0i8" if str(i8p) == "i8*" else "llvm.prefetch.p0"  # typed or opaque pointers
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])  # write, keep everywhere, data
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(cache=True, inline="always")
def _mix(z):
    """splitmix64's finaliser: a bijection of 64-bit words that passes BigCrush as a counter-based generator."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _column(r, n):
    """The alias-table column picked by the high half of a random word."""
    return np.int64(((r >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _draw(state, table):
    """One row of a packed alias table from one 64-bit word: high half picks the column, low half the coin."""
    r = _mix(state)
    k = _column(r, table.shape[0])
    if (r & _LOW32) >= np.uint64(table[k, 0]):
        k = np.int64(table[k, 1])
    return k


@njit(cache=True, inline="always")
def _step_scale(f, positive, lr):
    """The SGD step size of one (source, target) pair with score ``f``: lr x (label - sigmoid(f)), clipped at |f| 6."""
    label = np.float32(1.0) if positive else np.float32(0.0)
    if f > 6.0:
        return (label - np.float32(1.0)) * lr
    if f < -6.0:
        return label * lr
    return (label - np.float32(1.0) / (np.float32(1.0) + np.exp(-f))) * lr


@njit(cache=True, inline="always")
def _distinct(rows, source):
    """No row index repeats among ``rows`` and none is ``source`` (-1 when the source lives in another table)."""
    for j in range(rows.size):
        if rows[j] == source:
            return False
        for i in range(j):
            if rows[i] == rows[j]:
                return False
    return True


@njit(cache=True, parallel=True, fastmath=True)
def line_round(work, base, first, edges, cells, negatives, lr0, total, c0, c1, seed, stream, hoist=True):
    """Run chunks ``c0..c1-1`` of ``total`` samples, thread t on its table set ``work[t]``, then merge.

    ``edges`` is the packed alias table of the directed edges by weight, with (source, target) columns;
    ``cells`` the packed alias table of negatives by degree^0.75. ``hoist``: take a sample's dot products before
    its steps when its rows are distinct (bitwise the same result; False only to check that).

    A table set is (vertex table, context table) for the second order, the vertex table alone for the first. With
    one thread ``work[0]`` is ``base`` itself: plain sequential SGD. With T > 1 every thread starts the round from
    ``base`` and sees only its own steps; at the end ``base`` gains the sum of the T threads' changes, in thread
    order, and every copy restarts from it -- the same steps as Hogwild, with the other threads' steps visible at
    round ends instead of at a random moment, so the result is a function of (seed, T) alone.
    """
    n_threads = work.shape[0]
    d = work.shape[3]
    w = 0 if first else 1
    targets = negatives + 1
    n_edges, n_cells = edges.shape[0], cells.shape[0]
    last = edges.shape[1] - 1  # an edge row: threshold, source, target, the alias's source and target
    mix_seed = _mix(np.uint64(seed) ^ _mix(np.uint64(stream) + _GOLDEN))
    for t in prange(n_threads):
        tab = work[t]
        err = np.empty(d, dtype=np.float32)
        scale = np.empty(targets, dtype=np.float32)  # a sample's step sizes, one per target
        column = np.empty((_RING, targets), dtype=np.int64)  # stage 1: the alias-table columns drawn
        coin = np.empty((_RING, targets), dtype=np.uint64)
        source = np.empty(_RING, dtype=np.int64)  # stage 2: the sample's cells
        target = np.empty((_RING, targets), dtype=np.int64)
        for c in range(c0 + t, c1, n_threads):
            state = _mix(mix_seed + np.uint64(c) * _GOLDEN)
            lo = c * CHUNK
            m = min(lo + CHUNK, total) - lo
            for step in range(m + 2 * LEAD):
                if step < m:  # stage 1: draw sample `step`'s columns, prefetch their alias-table rows
                    slot = step % _RING
                    for j in range(targets):
                        state += _GOLDEN
                        r = _mix(state)
                        coin[slot, j] = r & _LOW32
                        if j == 0:
                            k = _column(r, n_edges)
                            prefetch(edges, k)
                            prefetch(edges[k], last)  # a 20-byte row may straddle two cache lines
                        else:
                            k = _column(r, n_cells)
                            prefetch(cells, k)
                        column[slot, j] = k
                s = step - LEAD
                if 0 <= s < m:  # stage 2: resolve sample s's cells, prefetch their table rows
                    slot = s % _RING
                    k = column[slot, 0]
                    end = 3 if coin[slot, 0] >= np.uint64(edges[k, 0]) else 1
                    source[slot] = np.int64(edges[k, end])
                    target[slot, 0] = np.int64(edges[k, end + 1])
                    for j in range(1, targets):
                        k = column[slot, j]
                        if coin[slot, j] >= np.uint64(cells[k, 0]):
                            k = np.int64(cells[k, 1])
                        target[slot, j] = k
                    row = tab[0, source[slot]]
                    for q in range(0, d, _LINE):
                        prefetch(row, q)
                    for j in range(targets):
                        row = tab[w, target[slot, j]]
                        for q in range(0, d, _LINE):
                            prefetch(row, q)
                s = step - 2 * LEAD
                if 0 <= s < m:  # stage 3: the SGD step of sample s
                    slot = s % _RING
                    lr = np.float32(lr0 * max(1e-4, 1.0 - (lo + s) / total))
                    u = source[slot]
                    for q in range(d):
                        err[q] = 0.0
                    if hoist and _distinct(target[slot], u if first else -1):
                        # no step changes a row that a later dot product of this sample reads: every dot product
                        # first (independent, so the CPU overlaps them), then the steps -- the same arithmetic
                        for j in range(targets):
                            v = target[slot, j]
                            f = np.float32(0.0)
                            for q in range(d):
                                f += tab[0, u, q] * tab[w, v, q]
                            scale[j] = _step_scale(f, j == 0, lr)
                        for j in range(targets):
                            v, g = target[slot, j], scale[j]
                            for q in range(d):
                                err[q] += g * tab[w, v, q]
                                tab[w, v, q] += g * tab[0, u, q]
                    else:  # a repeated row: each dot product sees the steps before it, as in the C code
                        for j in range(targets):
                            v = target[slot, j]
                            f = np.float32(0.0)
                            for q in range(d):
                                f += tab[0, u, q] * tab[w, v, q]
                            g = _step_scale(f, j == 0, lr)
                            for q in range(d):
                                err[q] += g * tab[w, v, q]
                                tab[w, v, q] += g * tab[0, u, q]
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
