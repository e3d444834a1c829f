"""LINE (Tang et al. 2015): first- and second-order proximity embeddings of a weighted graph.

Edges are drawn by weight with an alias table (O(1) per sample), negatives by degree^0.75. Two engines apply the SGD
steps of the original C implementation: "numba" (the default) compiles them as lock-free parallel SGD, one sample at
a time, as the C code does (``_line_kernels``); "torch" applies them in large vectorized batches with ``index_add_``
(kept for comparison, for a GPU and for torchrun process groups).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._optional import import_optional
from ..collectives import SINGLE_PROCESS, Collectives
from ..exceptions import InvalidInputError
from ..options import LineEngine, LineOrder, choices


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table for sampling indices proportionally to ``weights`` (vectorized in rounds)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or (w < 0).any() or w.sum() <= 0:
        raise InvalidInputError("alias table needs a non-empty vector of non-negative weights with a positive sum")
    n = w.size
    prob = w * (n / w.sum())
    alias = np.arange(n)
    small = np.flatnonzero(prob < 1.0)
    large = np.flatnonzero(prob >= 1.0)
    while small.size and large.size:
        k = min(small.size, large.size)
        s, big = small[:k], large[:k]
        alias[s] = big
        prob[big] -= 1.0 - prob[s]
        moved = prob[big] < 1.0
        small = np.concatenate([small[k:], big[moved]])
        large = np.concatenate([big[~moved], large[k:]])
    prob[small] = 1.0  # numerical leftovers
    prob[large] = 1.0
    return prob, alias


@dataclass
class LineResult:
    embedding: np.ndarray  # (n, dim) float32, rows L2-normalised
    samples: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


def _train_order(
    torch,
    src,
    dst,
    edge_prob,
    edge_alias,
    neg_prob,
    neg_alias,
    n,
    dim,
    order,
    total,
    negatives,
    lr0,
    batch,
    gen,
    bar,
    collectives,
):
    rank, world = collectives.rank, collectives.world
    device = gen.device  # the tables live where the generator draws
    emb = (torch.rand(n, dim, generator=gen, device=device) - 0.5) / dim  # same start on every rank
    if world > 1:  # own sample stream per rank
        gen = torch.Generator(device=device).manual_seed(int(gen.initial_seed()) + 7919 * rank)
        total = -(-total // world)  # each rank draws its share; tables are averaged after every block
    ctx = torch.zeros(n, dim, device=device) if order == "second" else emb  # first order: both ends share one table

    def tensor(a: np.ndarray):
        return torch.from_numpy(a).to(device)

    e_prob, e_alias = tensor(edge_prob).float(), tensor(edge_alias)
    v_prob, v_alias = tensor(neg_prob).float(), tensor(neg_alias)
    src_t, dst_t = tensor(src), tensor(dst)
    labels = torch.zeros(batch, 1 + negatives, device=device)
    labels[:, 0] = 1.0
    done = 0
    block = batch * 32  # draw samples for 32 batches at once: fewer, larger RNG and gather calls
    while done < total:
        nb = min(block, total - done)
        k = torch.randint(0, e_prob.numel(), (nb,), generator=gen, device=device)
        k = torch.where(torch.rand(nb, generator=gen, device=device) < e_prob[k], k, e_alias[k])
        m = torch.randint(0, v_prob.numel(), (nb * negatives,), generator=gen, device=device)
        neg = torch.where(torch.rand(nb * negatives, generator=gen, device=device) < v_prob[m], m, v_alias[m])
        src_block = src_t.index_select(0, k)
        tgt_block = torch.cat([dst_t.index_select(0, k)[:, None], neg.view(nb, negatives)], dim=1)
        for s in range(0, nb, batch):
            b = min(batch, nb - s)
            lr = lr0 * max(1e-4, 1.0 - (done + s) / total)
            i = src_block[s : s + b]
            targets = tgt_block[s : s + b].reshape(-1)
            u = emb.index_select(0, i)  # (b, d)
            c = ctx.index_select(0, targets).view(b, 1 + negatives, dim)
            g = torch.einsum("bd,bkd->bk", u, c).sigmoid_()  # (b, 1+K) scores
            g = torch.sub(labels[:b], g).mul_(lr)  # gradient scale per (edge, target)
            grad_u = torch.einsum("bk,bkd->bd", g, c)
            ctx.index_add_(0, targets, (g.unsqueeze(2) * u.unsqueeze(1)).view(-1, dim))
            emb.index_add_(0, i, grad_u)
        done += nb
        if world > 1:
            collectives.average_(emb)
            if ctx is not emb:
                collectives.average_(ctx)
        if bar is not None:
            bar(nb * world)
    return emb


def train_line(
    adjacency,
    *,
    dim: int = 128,
    order: str = "second",
    samples: int | None = None,
    samples_per_edge: float = 200.0,
    negatives: int = 5,
    lr: float = 0.025,
    batch_size: int = 1024,
    seed: int = 0,
    progress: bool = False,
    on_progress: Callable[[float], None] | None = None,
    collectives: Collectives = SINGLE_PROCESS,
    engine: str = LineEngine.NUMBA,
    threads: int = 0,
    device: str = "cpu",
) -> LineResult:
    """LINE embeddings of a symmetric weighted ``scipy.sparse`` adjacency.

    ``order`` is "first", "second" (the paper's choice) or "both" (each half of ``dim``, concatenated).
    ``on_progress(fraction)`` is called as samples are drawn (it may raise to cancel); under torchrun pass the
    group's ``collectives``. Cells without any edge get a zero row (LINE never samples them, so their vector would
    be noise). ``engine`` "numba" (default) runs compiled lock-free SGD on ``threads`` cores (0: every usable core),
    bitwise reproducible for a seed and thread count (see ``_line_kernels``; a graph under
    ``MIN_ROUND_SAMPLES / SAMPLES_PER_CELL_ROUND`` cells runs on one thread). It is single-process, so under a
    process group (``collectives.world > 1``) the "torch" engine runs instead, each rank drawing its share.
    ``batch_size`` and ``device`` ("cpu", "cuda", "cuda:1", ...) apply to the torch engine only. ``negatives``
    defaults to the original LINE's 5; the pipeline's ``[line] negatives`` defaults to 10 (chosen on Chicago's
    development targets).
    """
    import scipy.sparse as sp

    from ..threads import resolve_threads

    _check_line_options(order, engine)
    threads = resolve_threads(threads)
    if collectives.world > 1:
        engine = LineEngine.TORCH
    a = sp.csr_matrix(adjacency)
    if a.nnz == 0:
        raise InvalidInputError("LINE needs a graph with at least one edge")
    n = a.shape[0]
    batch_size = _safe_batch_size(batch_size, n)
    tables, degree = _sampling_tables(a)
    total = int(samples if samples is not None else max(100_000, samples_per_edge * a.nnz))
    bar = _SampleProgress(total * (2 if order == "both" else 1), progress, on_progress)
    orders = ["first", "second"] if order == "both" else [order]
    d_each = dim // len(orders)
    t0 = time.perf_counter()
    if engine == LineEngine.NUMBA:
        parts = _train_numba(tables, n, d_each, orders, total, negatives, lr, seed, threads, bar)
    else:
        parts = _train_torch(
            tables, n, d_each, orders, total, negatives, lr, batch_size, seed, threads, bar, collectives, device
        )
    seconds = time.perf_counter() - t0
    bar.close()
    isolated = degree == 0
    for part in parts:
        part[isolated] = 0.0
    return LineResult(np.concatenate(parts, axis=1).astype(np.float32), total * len(orders), seconds)


def _safe_batch_size(batch_size: int, n: int) -> int:
    """A torch batch below half the cells, so each row moves about once per batch.

    A batch applies its updates at once: on a small graph the same few rows would be hit many times per batch and
    the summed steps diverge (NaN).
    """
    return max(1, min(int(batch_size), n // 2))


def _check_line_options(order: str, engine: str) -> None:
    """Refuse an unknown order or engine before any work is done."""
    if order not in set(LineOrder):
        raise InvalidInputError(f"LINE order must be one of {choices(LineOrder)}, got {order!r}")
    if engine not in set(LineEngine):
        raise InvalidInputError(f"LINE engine must be one of {choices(LineEngine)}, got {engine!r}")


def _sampling_tables(a) -> tuple[_Tables, np.ndarray]:
    """The directed edges with their alias tables, and each cell's weighted degree (zero: an isolated cell)."""
    coo = a.tocoo()
    src, dst, w = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    edge_prob, edge_alias = alias_table(w)
    degree = np.asarray(a.sum(axis=1)).ravel()
    neg_prob, neg_alias = alias_table(np.power(degree, 0.75) + 1e-12)
    return _Tables(src, dst, edge_prob, edge_alias, neg_prob, neg_alias), degree


class _SampleProgress:
    """Counts the samples drawn for the tqdm bar and ``on_progress`` (which may raise to cancel)."""

    def __init__(self, grand_total: int, progress: bool, on_progress: Callable[[float], None] | None) -> None:
        self.grand_total, self.on_progress, self.seen = grand_total, on_progress, 0
        self.tqdm_bar = None
        if progress:
            from tqdm.auto import tqdm

            self.tqdm_bar = tqdm(total=grand_total, unit="edge", unit_scale=True, desc="LINE")

    def __call__(self, k: int) -> None:
        self.seen += k
        if self.tqdm_bar is not None:
            self.tqdm_bar.update(k)
        if self.on_progress is not None:
            self.on_progress(min(1.0, self.seen / self.grand_total))

    def close(self) -> None:
        if self.tqdm_bar is not None:
            self.tqdm_bar.close()


class _Tables(NamedTuple):
    """The directed edges and the two alias tables (edges by weight, negatives by degree^0.75)."""

    src: np.ndarray
    dst: np.ndarray
    edge_prob: np.ndarray
    edge_alias: np.ndarray
    neg_prob: np.ndarray
    neg_alias: np.ndarray


def _train_torch(
    t: _Tables, n, d_each, orders, total, negatives, lr, batch_size, seed, threads, bar, collectives, device
) -> list[np.ndarray]:
    from ..threads import torch_threads

    torch = import_optional("torch")
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = []
    with torch.no_grad(), torch_threads(threads):
        for o in orders:
            e = _train_order(torch, *t, n, d_each, o, total, negatives, lr, batch_size, gen, bar, collectives)
            parts.append(torch.nn.functional.normalize(e, dim=1).cpu().numpy())
    return parts


# one thread: at most this many samples, and about a twentieth of the run, between two progress callbacks
ROUND_SAMPLES = 2_000_000
# numba engine, T > 1: a thread sees the others' steps after at most this many of its own samples per cell...
SAMPLES_PER_CELL_ROUND = 16
# ...and a round gives each thread at least this many samples (a tenth of a second or so), so that rounds end, and
# threads wait for each other, rarely: a graph too small for both bounds runs on one thread (it is quick anyway)
MIN_ROUND_SAMPLES = 262_144
# take a sample's dot products before its steps when its rows are distinct (bitwise the same; False only in tests)
HOIST_DOT_PRODUCTS = True
# tables smaller than this stay on ordinary pages (they fit the caches' reach anyway)
HUGE_PAGE_MIN_BYTES = 4 << 20


def _huge_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Zeros on transparent huge pages where the system offers them (Linux with THP "always" or "madvise"), plain
    zeros elsewhere. LINE reads rows of tables of tens to hundreds of MB at random: with 4 kB pages nearly every
    read also misses the TLB (20,000 cells: 1.6 -> 2.2 M samples/s on one thread with huge pages)."""
    import mmap

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    advice, anonymous = getattr(mmap, "MADV_HUGEPAGE", None), getattr(mmap, "MAP_ANONYMOUS", None)
    if advice is None or anonymous is None or nbytes < HUGE_PAGE_MIN_BYTES:
        return np.zeros(shape, dtype)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | anonymous)  # zero-filled, private to this process
    try:
        buf.madvise(advice)
    except OSError:  # a kernel without THP: still zeros, on small pages
        pass
    return np.frombuffer(buf, dtype).reshape(shape)


def _train_numba(t: _Tables, n, d_each, orders, total, negatives, lr, seed, threads, bar) -> list[np.ndarray]:
    """Each order in rounds of whole chunks (progress, and cancellation through it, between rounds)."""
    from ..threads import PARALLEL_LOCK, numba_threads
    from ._line_kernels import CHUNK, line_round, pack_alias

    if max(n, t.src.size) >= 2**32:
        raise InvalidInputError("the numba LINE engine takes up to 2^32 - 1 cells and directed edges")
    # rows of 5 uint32: coin threshold, source, target, the alias's source and target (``pack_alias``)
    edges = pack_alias(t.edge_prob, t.edge_alias, t.src, t.dst, out=_huge_zeros((t.src.size, 5), np.uint32))
    cells = pack_alias(t.neg_prob, t.neg_alias)
    seed64 = np.uint64(seed % 2**64)
    n_chunks = -(-total // CHUNK)
    parts = []
    if SAMPLES_PER_CELL_ROUND * n < MIN_ROUND_SAMPLES:
        threads = 1
    with PARALLEL_LOCK, numba_threads(threads) as used:
        if used == 1:  # no merge: where a round ends does not change the result, only how often progress is told
            per_round = max(1, min(ROUND_SAMPLES, -(-total // 20)) // CHUNK)
        else:  # whole chunks per thread, fixed by (cells, threads) alone: where merges fall is part of the result
            per_round = used * max(1, -(-SAMPLES_PER_CELL_ROUND * n // CHUNK))
        for stream, o in enumerate(orders):
            first = o == LineOrder.FIRST
            rng = np.random.default_rng([seed % 2**63, stream])
            base = _huge_zeros((1 if first else 2, n, d_each), np.float32)  # vertex table, context table
            base[0] = (rng.random((n, d_each), dtype=np.float32) - 0.5) / d_each
            if used == 1:  # one thread: in place
                work = base[None]
            else:
                work = _huge_zeros((used, *base.shape), np.float32)
                work[:] = base
            for c0 in range(0, n_chunks, per_round):
                c1 = min(c0 + per_round, n_chunks)
                args = (negatives, lr, total, c0, c1, seed64, stream, HOIST_DOT_PRODUCTS)
                line_round(work, base, first, edges, cells, *args)
                bar(min(c1 * CHUNK, total) - c0 * CHUNK)
            del work
            norms = np.sqrt(np.einsum("ij,ij->i", base[0], base[0]))
            parts.append(base[0] / np.maximum(norms, 1e-12)[:, None])
    return parts
