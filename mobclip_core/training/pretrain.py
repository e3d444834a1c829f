"""LINE pre-encoding of the mobility graph for a run, cached on disk by the graph and the LINE settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..collectives import SINGLE_PROCESS, Collectives
from ..config import LineConfig
from ..io import atomic_path
from ..modalities.mobility.graph import MobilityGraph


def line_cache_key(graph: MobilityGraph, line: LineConfig) -> str:
    """The LINE settings and the whole graph (every cell, edge and weight), by the library's fingerprint rule."""
    from ..modalities.cache import fingerprint

    return fingerprint("line", asdict(line), graph)


def line_embeddings(
    graph: MobilityGraph,
    line: LineConfig,
    cache: Path | None = None,
    *,
    progress: bool = False,
    on_progress: Callable[[float], None] | None = None,
    collectives: Collectives = SINGLE_PROCESS,
    threads: int = 0,
    device: str = "cpu",
):
    """LINE on the full graph; with ``cache`` (a folder) the result is reused while graph and settings are equal.

    ``threads`` (0: every usable core) and ``device`` (where the torch engine runs) are not part of the cache key:
    they change the speed, not the quality.
    """
    from ..models.line import LineResult, train_line

    path = Path(cache) / f"line-{line_cache_key(graph, line)}.npy" if cache is not None else None
    if path is not None and path.exists():
        try:
            return LineResult(np.load(path), 0, 0.0)
        except (OSError, ValueError):  # a damaged cache file is recomputed
            pass
    res = train_line(
        graph.adjacency,
        dim=line.dim,
        order=line.order,
        samples_per_edge=line.samples_per_edge,
        negatives=line.negatives,
        lr=line.lr,
        batch_size=line.batch_size,
        seed=line.seed,
        progress=progress,
        on_progress=on_progress,
        collectives=collectives,
        engine=line.engine,
        threads=threads,
        device=device,
    )
    if path is not None and collectives.is_main:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, res.embedding)
    return res
