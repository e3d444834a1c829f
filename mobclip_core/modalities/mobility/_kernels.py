"""Compiled kernels for the co-presence graph (numba).

The graph of a set of (group, cell) pairs -- a group is one person-week -- is B^T B without its diagonal, B the binary
(group x cell) incidence matrix. Rather than a general sparse product, the kernels here exploit its structure:

1. counting-sort the records by group key (keys are dense integers), then sort and dedupe each group's cells and drop
   groups with fewer than two distinct cells (they add no edge);
2. for each cell i, copy the cells j > i of every group containing i into one contiguous list (the sorted suffix
   after i), in rounds of rows small enough for the memory budget;
3. turn each list into a sorted row of distinct columns and counts with a dense accumulator, in place (Gustavson's
   algorithm on the strict upper triangle), in parallel over row blocks balanced by work;
4. mirror the upper triangle into a symmetric CSR matrix with sorted columns (a parallel transpose).

Records reach these kernels with cells already numbered by ``CellIndex`` (an incremental hash, cache-resident
for any city or country) and, for raw coordinates, deduped per chunk by ``unique_coordinates``. From there every
step is linear in records plus pair work, with no hashing and no global sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import get_num_threads, njit, prange

from ...threads import serialized

_INSERTION_SORT_MAX = 24


_EMPTY = np.uint64(0)  # no H3 cell has id 0: it marks a free hash slot


# -- incremental cell index -------------------------------------------------------------------------------------------
@njit(cache=True)
def _hash_slot(key, mask):
    return ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@njit(cache=True)
def _lookup_or_insert(keys, table_keys, table_vals, order, n_known):
    """Dense id of each key in first-seen order; new keys are inserted (table at most half full on entry)."""
    mask = np.uint64(table_keys.size - 1)
    out = np.empty(keys.size, dtype=np.int32)
    n = n_known
    last_key = _EMPTY
    last_val = -1
    for r in range(keys.size):
        k = keys[r]
        if k == last_key:  # consecutive records often share a cell
            out[r] = last_val
            continue
        s = _hash_slot(k, mask)
        while True:
            tk = table_keys[s]
            if tk == k:
                v = table_vals[s]
                break
            if tk == _EMPTY:
                if 2 * (n + 1) > table_keys.size:
                    return out[:r], n  # caller grows the table and resumes at row r
                table_keys[s] = k
                table_vals[s] = n
                order[n] = k
                v = n
                n += 1
                break
            s = (s + np.uint64(1)) & mask
        out[r] = v
        last_key, last_val = k, v
    return out, n


class CellIndex:
    """H3 cell id -> dense id (first-seen order), grown across chunks; an open-addressing hash table."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._keys = np.zeros(capacity, dtype=np.uint64)
        self._vals = np.zeros(capacity, dtype=np.int32)
        self._order = np.zeros(capacity // 2 + 1, dtype=np.uint64)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def cells(self) -> np.ndarray:
        """Cells in first-seen order (position = dense id)."""
        return self._order[: self.size].copy()

    def cells_since(self, start: int) -> np.ndarray:
        """Cells whose dense ids are ``start`` and above."""
        return self._order[start : self.size].copy()

    def ids(self, cells: np.ndarray) -> np.ndarray:
        """Dense ids of ``cells`` (``uint64``), adding unseen cells."""
        cells = np.ascontiguousarray(cells, dtype=np.uint64)
        if (cells == _EMPTY).any():
            from ...exceptions import InvalidInputError

            raise InvalidInputError("0 is not an H3 cell id: drop records without a location")
        parts = []
        done = 0
        while True:
            out, self.size = _lookup_or_insert(cells[done:], self._keys, self._vals, self._order, self.size)
            parts.append(out)
            done += out.size
            if done == cells.size:
                return parts[0] if len(parts) == 1 else np.concatenate(parts)
            self._grow()

    def _grow(self) -> None:
        old = self._order[: self.size]
        cap = self._keys.size * 2
        self._keys = np.zeros(cap, dtype=np.uint64)
        self._vals = np.zeros(cap, dtype=np.int32)
        self._order = np.zeros(cap // 2 + 1, dtype=np.uint64)
        n = self.size
        self.size = 0
        _lookup_or_insert(old, self._keys, self._vals, self._order, 0)
        self.size = n


@njit(cache=True)
def unique_coordinates(lon, lat):
    """Exact (lon, lat) pairs numbered in first-seen order: (code of each row, first row of each code)."""
    n = lon.size
    size = 1
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    slot_code = np.full(size, -1, dtype=np.int64)
    x_bits = lon.view(np.uint64)
    y_bits = lat.view(np.uint64)
    codes = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    n_unique = 0
    for r in range(n):
        kx, ky = x_bits[r], y_bits[r]
        s = ((kx * np.uint64(0x9E3779B97F4A7C15)) ^ (ky * np.uint64(0xC2B2AE3D27D4EB4F))) >> np.uint64(20) & mask
        while True:
            c = slot_code[s]
            if c < 0:
                slot_code[s] = n_unique
                first[n_unique] = r
                codes[r] = n_unique
                n_unique += 1
                break
            f = first[c]
            if x_bits[f] == kx and y_bits[f] == ky:
                codes[r] = c
                break
            s = (s + np.uint64(1)) & mask
    return codes, first[:n_unique].copy()


@njit(cache=True)
def partition_by_person(person, n_parts):
    """Stable order of rows grouped by ``person % n_parts`` and the bounds of each part."""
    part = np.empty(person.size, dtype=np.int64)
    bounds = np.zeros(n_parts + 1, dtype=np.int64)
    for i in range(person.size):
        k = np.int64(person[i] % n_parts)
        if k < 0:
            k += n_parts
        part[i] = k
        bounds[k + 1] += 1
    for k in range(n_parts):
        bounds[k + 1] += bounds[k]
    fill = bounds[:-1].copy()
    order = np.empty(person.size, dtype=np.int64)
    for i in range(person.size):
        order[fill[part[i]]] = i
        fill[part[i]] += 1
    return order, bounds


# -- records -> groups -------------------------------------------------------------------------------------------------
@njit(cache=True)
def week_numbers(seconds, shift, week):
    """Floor((seconds + shift) / week) as int32."""
    out = np.empty(seconds.size, dtype=np.int32)
    for i in range(seconds.size):
        out[i] = (seconds[i] + shift) // week
    return out


@njit(cache=True)
def _count_groups(person, week, pmin, wmin, span, counts):
    for i in range(person.size):
        counts[np.int64(person[i] - pmin) * span + (week[i] - wmin) + 1] += 1


@njit(cache=True, parallel=True)
def _scatter_groups(person, week, cells, pmin, wmin, span, fill, out, bounds):
    """``out[fill[key]++] = cell``; each thread owns a key range and scans all records."""
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        for i in range(person.size):
            k = np.int64(person[i] - pmin) * span + (week[i] - wmin)
            if lo <= k < hi:
                out[fill[k]] = cells[i]
                fill[k] += 1


@njit(cache=True)
def _sort_small(a):
    n = a.size
    if n > _INSERTION_SORT_MAX:
        a.sort()
        return
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@njit(cache=True, parallel=True)
def _dedupe_groups(indptr, cells, n_blocks):
    """Sort and dedupe each group's cells; keep only groups with two or more distinct cells."""
    n_groups = indptr.size - 1
    length = np.zeros(n_groups, dtype=np.int64)
    step = (n_groups + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        for g in range(b * step, min(n_groups, (b + 1) * step)):
            a, e = indptr[g], indptr[g + 1]
            if e - a < 2:
                continue
            _sort_small(cells[a:e])
            w = a + 1
            for q in range(a + 1, e):
                if cells[q] != cells[w - 1]:
                    cells[w] = cells[q]
                    w += 1
            if w - a >= 2:
                length[g] = w - a
    kept = np.flatnonzero(length)
    new_ptr = np.zeros(kept.size + 1, dtype=np.int64)
    for k in range(kept.size):
        new_ptr[k + 1] = new_ptr[k] + length[kept[k]]
    out = np.empty(new_ptr[-1], dtype=np.int32)
    step = (kept.size + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        for k in range(b * step, min(kept.size, (b + 1) * step)):
            a = indptr[kept[k]]
            out[new_ptr[k] : new_ptr[k + 1]] = cells[a : a + length[kept[k]]]
    return new_ptr, out


# -- groups -> strict upper triangle -----------------------------------------------------------------------------------
@njit(cache=True)
def _pair_work(indptr, cells, n_cells):
    """Number of (i, j > i) pair visits of each row i."""
    work = np.zeros(n_cells, dtype=np.int64)
    for g in range(indptr.size - 1):
        e = indptr[g + 1]
        for q in range(indptr[g], e - 1):
            work[cells[q]] += e - 1 - q
    return work


@njit(cache=True, parallel=True)
def _upper_rows(indptr, cells, n_cells, bounds, offsets):
    """Rows bounds[0]..bounds[-1] of the strict upper triangle; thread t builds rows bounds[t]..bounds[t+1].

    ``offsets[i]`` is where row i's pair list starts (relative to bounds[0]); each row's distinct columns (sorted)
    and counts are left at the start of its slot and their number in ``row_nnz``.
    """
    base = offsets[bounds[0]]
    pairs = np.empty(offsets[bounds[-1]] - base, dtype=np.int32)
    counts = np.empty(pairs.size, dtype=np.float64)
    row_nnz = np.zeros(n_cells, dtype=np.int64)
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        if lo == hi:
            continue
        fill = offsets[lo:hi] - base
        for g in range(indptr.size - 1):
            a, e = indptr[g], indptr[g + 1]
            if cells[a] >= hi or cells[e - 2] < lo:
                continue
            for q in range(a, e - 1):
                c = cells[q]
                if c >= hi:
                    break
                if c >= lo:
                    f = fill[c - lo]
                    for r in range(q + 1, e):
                        pairs[f] = cells[r]
                        f += 1
                    fill[c - lo] = f
        acc = np.zeros(n_cells, dtype=np.int64)
        for i in range(lo, hi):
            start, end = offsets[i] - base, offsets[i + 1] - base
            w = start
            jmax = i
            for k in range(start, end):  # distinct columns overwrite the list in place: w <= k
                j = pairs[k]
                if acc[j] == 0:
                    pairs[w] = j
                    w += 1
                    jmax = max(jmax, j)
                acc[j] += 1
            if 4 * (w - start) >= jmax - i:  # dense row: read the accumulator in order instead of sorting
                w = start
                for j in range(i + 1, jmax + 1):
                    if acc[j]:
                        pairs[w] = j
                        counts[w] = acc[j]
                        acc[j] = 0
                        w += 1
            else:
                _sort_small(pairs[start:w])
                for k in range(start, w):
                    counts[k] = acc[pairs[k]]
                    acc[pairs[k]] = 0
            row_nnz[i] = w - start
    return pairs, counts, row_nnz


@njit(cache=True, parallel=True)
def _gather_rows(src_cols, src_vals, starts, lens, ptr, cols, vals):
    for i in prange(starts.size):
        n = lens[i]
        cols[ptr[i] : ptr[i] + n] = src_cols[starts[i] : starts[i] + n]
        vals[ptr[i] : ptr[i] + n] = src_vals[starts[i] : starts[i] + n]


@dataclass
class UpperRows:
    """A strict upper triangle as row slots: row i is ``cols[starts[i] : starts[i] + lens[i]]`` (sorted), with
    ``vals`` alongside. The row-wise product leaves its rows this way, so no compaction pass is needed."""

    starts: np.ndarray
    lens: np.ndarray
    cols: np.ndarray
    vals: np.ndarray

    @classmethod
    def from_csr(cls, m: sp.csr_matrix) -> UpperRows:
        m.sort_indices()
        ptr = m.indptr.astype(np.int64, copy=False)
        cols = m.indices.astype(np.int32, copy=False)
        return cls(ptr[:-1], np.diff(ptr), cols, m.data.astype(np.float64, copy=False))

    @property
    def n(self) -> int:
        return self.starts.size

    def to_csr(self, n_cols: int | None = None) -> sp.csr_matrix:
        """CSR with these rows (``n_cols`` columns, square by default)."""
        ptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.lens, out=ptr[1:])
        cols = np.empty(ptr[-1], dtype=np.int32)
        vals = np.empty(ptr[-1], dtype=np.float64)
        _gather_rows(self.cols, self.vals, self.starts, self.lens, ptr, cols, vals)
        return _csr(vals, cols, ptr, self.n, n_cols)


def _balanced_bounds(work: np.ndarray, lo: int, hi: int, n_parts: int) -> np.ndarray:
    """Row boundaries splitting rows lo..hi into ``n_parts`` ranges of about equal work."""
    cum = np.cumsum(work[lo:hi], dtype=np.float64)
    if cum.size == 0 or cum[-1] == 0:
        return np.array([lo, hi], dtype=np.int64)
    cuts = lo + np.searchsorted(cum, np.linspace(0, cum[-1], n_parts + 1)[1:-1], side="right")
    return np.concatenate([[lo], cuts, [hi]]).astype(np.int64)


@serialized
def upper_from_groups(indptr: np.ndarray, cells: np.ndarray, n_cells: int, *, max_pairs: int) -> UpperRows:
    """Strict upper triangle of B^T B for deduped, sorted groups; at most ``max_pairs`` pair slots at a time."""
    work = _pair_work(indptr, cells, n_cells)
    offsets = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(work, out=offsets[1:])
    # rounds of rows whose pair lists fit the budget (a single row larger than the budget gets a round of its own)
    rounds = [0]
    while rounds[-1] < n_cells:
        lo = rounds[-1]
        hi = int(np.searchsorted(offsets, offsets[lo] + max_pairs, side="right")) - 1
        rounds.append(min(n_cells, max(hi, lo + 1)))
    n_threads = get_num_threads()
    parts = []
    for lo, hi in zip(rounds[:-1], rounds[1:]):
        pairs, counts, nnz = _upper_rows(indptr, cells, n_cells, _balanced_bounds(work, lo, hi, n_threads), offsets)
        parts.append(UpperRows(offsets[lo:hi] - offsets[lo], nnz[lo:hi], pairs, counts))
    if len(parts) == 1:
        return parts[0]
    return UpperRows.from_csr(sp.vstack([part.to_csr(n_cells) for part in parts], format="csr"))


@serialized
def upper_from_records(
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    pmin: int,
    wmin: int,
    span: int,
    n_keys: int,
    n_cells: int,
    *,
    max_pairs: int,
) -> UpperRows:
    """Strict upper triangle of the co-presence matrix of (person code, week, cell) records given in chunks.

    The group of a record is ``(person - pmin) * span + (week - wmin)``, an integer below ``n_keys``.
    """
    counts = np.zeros(n_keys + 1, dtype=np.int64)
    for p, w, _ in chunks:
        _count_groups(p, w, p.dtype.type(pmin), np.int32(wmin), span, counts)
    np.cumsum(counts, out=counts)
    n_threads = get_num_threads()
    bounds = np.searchsorted(counts, np.linspace(0, counts[-1], n_threads + 1)).astype(np.int64)
    bounds[0], bounds[-1] = 0, n_keys
    fill = counts[:-1].copy()
    grouped = np.empty(int(counts[-1]), dtype=np.int32)
    for p, w, c in chunks:
        _scatter_groups(p, w, c, p.dtype.type(pmin), np.int32(wmin), span, fill, grouped, bounds)
    del fill
    indptr, grouped = _dedupe_groups(counts, grouped, 8 * n_threads)
    del counts
    return upper_from_groups(indptr, grouped, n_cells, max_pairs=max_pairs)


# -- strict upper triangle -> symmetric matrix -------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _mirror(starts, lens, u_cols, u_vals, bounds):
    n = starts.size
    n_threads = bounds.size - 1
    lower = np.zeros((n_threads, n), dtype=np.int64)  # lower-part entries of each row, by the thread that finds them
    for t in prange(n_threads):
        for r in range(bounds[t], bounds[t + 1]):
            for k in range(starts[r], starts[r] + lens[r]):
                lower[t, u_cols[k]] += 1
    ptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        s = 0
        for t in range(n_threads):
            s += lower[t, i]
        ptr[i + 1] = ptr[i] + s + lens[i]
    for i in range(n):  # turn counts into each thread's write position in row i
        o = ptr[i]
        for t in range(n_threads):
            c = lower[t, i]
            lower[t, i] = o
            o += c
    cols = np.empty(ptr[n], dtype=np.int32)
    vals = np.empty(ptr[n], dtype=np.float64)
    for t in prange(n_threads):  # row j of the lower part gets column r; rows r ascending keep it sorted
        for r in range(bounds[t], bounds[t + 1]):
            for k in range(starts[r], starts[r] + lens[r]):
                j = u_cols[k]
                o = lower[t, j]
                cols[o] = r
                vals[o] = u_vals[k]
                lower[t, j] = o + 1
    for i in prange(n):  # the upper part follows the lower part of each row
        o = ptr[i + 1] - lens[i]
        for k in range(starts[i], starts[i] + lens[i]):
            cols[o] = u_cols[k]
            vals[o] = u_vals[k]
            o += 1
    return ptr, cols, vals


@serialized
def mirror_upper(upper: UpperRows | sp.csr_matrix) -> sp.csr_matrix:
    """U + U^T for a strict upper triangle (row slots or CSR) with sorted rows; sorted indices out."""
    if sp.issparse(upper):
        upper = UpperRows.from_csr(upper)
    bounds = _balanced_bounds(upper.lens, 0, upper.n, get_num_threads())
    ptr, cols, vals = _mirror(upper.starts, upper.lens, upper.cols, upper.vals, bounds)
    return _csr(vals, cols, ptr, upper.n)


def _csr(vals: np.ndarray, cols: np.ndarray, ptr: np.ndarray, n: int, n_cols: int | None = None) -> sp.csr_matrix:
    m = sp.csr_matrix((vals, cols, ptr), shape=(n, n if n_cols is None else n_cols), copy=False)
    m.has_sorted_indices = True
    return m
