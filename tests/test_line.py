"""The compiled LINE engine against the torch one: planted blocks recovered, seeds, threads, progress, errors."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from mobclip_core.exceptions import InvalidInputError
from mobclip_core.models.line import train_line

BLOCKS, SIZE, ISOLATED = 4, 50, 3


@pytest.fixture(scope="module")
def planted():
    """4 blocks of 50 cells, dense inside, sparse between, weighted; the last 3 cells have no edge."""
    rng = np.random.default_rng(0)
    n = BLOCKS * SIZE + ISOLATED
    label = np.repeat(np.arange(BLOCKS), SIZE)
    same = label[:, None] == label[None, :]
    linked = np.where(same, rng.random((n - ISOLATED,) * 2) < 0.25, rng.random((n - ISOLATED,) * 2) < 0.02)
    a = np.zeros((n, n))
    a[: n - ISOLATED, : n - ISOLATED] = np.triu(linked * rng.integers(1, 5, linked.shape), 1)
    return sp.csr_matrix(a + a.T), label


def block_accuracy(emb: np.ndarray, label: np.ndarray) -> float:
    """Share of cells whose nearest other cell (cosine) lies in the same block."""
    e = emb[: label.size]
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return float((label[sim.argmax(axis=1)] == label).mean())


@pytest.mark.parametrize("engine", ["numba", "torch"])
@pytest.mark.parametrize("order", ["second", "first", "both"])
def test_engines_recover_planted_blocks(planted, engine, order):
    a, label = planted
    res = train_line(a, dim=16, order=order, samples=100_000, lr=0.05, seed=0, engine=engine)
    assert res.embedding.shape == (a.shape[0], 16) and res.embedding.dtype == np.float32
    assert block_accuracy(res.embedding, label) >= 0.9
    assert not res.embedding[-ISOLATED:].any()  # cells without an edge: zero rows
    norms = np.linalg.norm(res.embedding[:-ISOLATED], axis=1)
    assert np.allclose(norms, np.sqrt(2.0) if order == "both" else 1.0, atol=1e-5)


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_edges_are_drawn_by_weight_not_by_count(engine):
    """Blocks held together by few heavy links and crossed by many light ones: only sampling edges by weight (the
    alias table, an alias's endpoints included) finds them; drawn by count the light links would dominate."""
    rng = np.random.default_rng(1)
    n = BLOCKS * SIZE
    label = np.repeat(np.arange(BLOCKS), SIZE)
    same = label[:, None] == label[None, :]
    heavy = same & (rng.random((n, n)) < 0.08)
    light = ~same & (rng.random((n, n)) < 0.3)
    a = np.triu(np.where(heavy, 40.0, 0.0) + np.where(light, 1.0, 0.0), 1)
    a = sp.csr_matrix(a + a.T)
    assert (a.multiply(same) > 0).sum() < 0.2 * (a.multiply(~same) > 0).sum()  # far fewer links inside blocks
    res = train_line(a, dim=16, samples=150_000, lr=0.05, seed=0, engine=engine)
    assert block_accuracy(res.embedding, label) >= 0.9


@pytest.mark.parametrize("threads", [1, 2])
def test_numba_engine_is_reproducible_for_a_seed_and_thread_count(planted, threads, monkeypatch):
    from mobclip_core.models import line

    monkeypatch.setattr(line, "MIN_ROUND_SAMPLES", 0)  # this small graph would otherwise run on one thread
    a, label = planted
    run = lambda seed: train_line(a, dim=16, samples=100_000, lr=0.05, seed=seed, threads=threads).embedding  # noqa: E731
    first = run(0)
    assert np.array_equal(first, run(0))  # bitwise
    assert not np.allclose(first, run(1), atol=1e-3)  # another seed, another embedding
    assert block_accuracy(first, label) >= 0.9


@pytest.mark.parametrize("order", ["second", "first"])
@pytest.mark.parametrize("threads", [1, 2])
def test_hoisted_dot_products_change_nothing(order, threads, monkeypatch):
    """The kernel takes a sample's dot products before its steps only when no step changes a row a later product
    reads. On 12 cells with 4 negatives most samples repeat a row (or, first order, meet their source) and about a
    third (second order) or a fifth (first order) do not, so both paths run; the result must be bitwise that of the
    plain step-by-step loop."""
    from mobclip_core.models import line

    monkeypatch.setattr(line, "MIN_ROUND_SAMPLES", 0)
    rng = np.random.default_rng(2)
    w = np.triu(rng.integers(0, 4, (12, 12)), 1).astype(float)
    a = sp.csr_matrix(w + w.T)
    run = lambda: train_line(a, dim=32, order=order, samples=50_000, negatives=4, threads=threads).embedding  # noqa: E731
    hoisted = run()
    monkeypatch.setattr(line, "HOIST_DOT_PRODUCTS", False)
    assert np.array_equal(hoisted, run())


def test_progress_is_reported_and_a_raising_callback_cancels(planted, monkeypatch):
    from mobclip_core.models import line

    a, _ = planted
    default = train_line(a, dim=8, samples=100_000, threads=1).embedding
    monkeypatch.setattr(line, "ROUND_SAMPLES", 16_384)  # more, shorter rounds
    seen: list[float] = []
    assert np.array_equal(train_line(a, dim=8, samples=100_000, threads=1, on_progress=seen.append).embedding, default)
    assert len(seen) > 2 and seen == sorted(seen) and seen[-1] == 1.0

    class Stop(Exception):
        pass

    def stop(fraction: float) -> None:
        if fraction > 0.3:
            raise Stop

    with pytest.raises(Stop):
        train_line(a, dim=8, samples=100_000, on_progress=stop)


def test_thread_counts_are_restored(planted):
    import torch

    a, _ = planted
    before = numba.get_num_threads(), torch.get_num_threads()
    for engine in ("numba", "torch"):
        train_line(a, dim=8, samples=20_000, engine=engine, threads=1)
    assert (numba.get_num_threads(), torch.get_num_threads()) == before


def test_bad_engine_and_threads_are_refused(planted):
    a, _ = planted
    with pytest.raises(InvalidInputError, match="engine"):
        train_line(a, samples=1000, engine="gpu")
    with pytest.raises(InvalidInputError, match="threads"):
        train_line(a, samples=1000, threads=-1)


def test_kernel_draws_follow_the_alias_table():
    from mobclip_core.models._line_kernels import alias_draws, pack_alias
    from mobclip_core.models.line import alias_table

    degree = np.random.default_rng(0).random(500) ** 3 * 100  # skewed, as cell degrees are
    want = degree**0.75 / (degree**0.75).sum()
    prob, alias = alias_table(degree**0.75)
    draws = alias_draws(pack_alias(prob, alias), 2_000_000, np.uint64(7))
    assert np.abs(np.bincount(draws, minlength=degree.size) / draws.size - want).max() < 3e-4


def test_cli_train_takes_a_thread_count():
    from mobclip_core.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "run.toml", "--threads", "1"]).threads == 1
    assert parser.parse_args(["train", "run.toml"]).threads is None  # the config's [train] threads
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "run.toml", "--threads", "-2"])


def test_usable_cores_and_thread_resolution():
    from mobclip_core.threads import resolve_threads, usable_cores

    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert resolve_threads(0) == usable_cores() and resolve_threads(3) == 3
    with pytest.raises(InvalidInputError):
        resolve_threads(True)


def test_line_tables_are_zeroed_writable_and_on_huge_pages_where_offered():
    """Tables of a few MB and more are allocated on transparent huge pages (Linux, THP "always" or "madvise"):
    zero-filled, writable, the shape and type asked for; small ones are plain arrays."""
    import mmap

    from mobclip_core.models.line import HUGE_PAGE_MIN_BYTES, _huge_zeros

    def owner(a):
        while isinstance(a, np.ndarray) and a.base is not None:
            a = a.base
        return a.obj if isinstance(a, memoryview) else a

    small = _huge_zeros((4, 8), np.float32)
    assert isinstance(owner(small), np.ndarray) and not small.any()
    shape = (2, HUGE_PAGE_MIN_BYTES // 4 // 64 + 1, 64)
    big = _huge_zeros(shape, np.float32)
    assert big.shape == shape and big.dtype == np.float32 and not big.any()
    big[1, -1, -1] = 3.0
    assert big.sum() == 3.0
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert isinstance(owner(big), mmap.mmap)  # the mapping the madvise went to
