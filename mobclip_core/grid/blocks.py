"""Spatial blocks for cross-validation: coarse H3 parents, so neighbouring samples are held out together."""

from __future__ import annotations

import numpy as np

from .cells import parent_cells, points_to_cells, validate_resolution


def point_blocks(lon: np.ndarray, lat: np.ndarray, block_resolution: int, resolution: int | None = None) -> np.ndarray:
    """Block (an H3 cell id, ``uint64``) of each point: the resolution-``block_resolution`` parent of the point's
    cell at ``resolution`` (by default the block resolution itself, i.e. the coarse cell holding the point)."""
    block_res = validate_resolution(block_resolution)
    res = block_res if resolution is None else max(validate_resolution(resolution), block_res)
    return parent_cells(points_to_cells(lon, lat, res), block_res)


def cell_blocks(cells: np.ndarray, block_resolution: int) -> np.ndarray:
    """Block of each cell: its parent at ``block_resolution``."""
    return parent_cells(cells, block_resolution)
