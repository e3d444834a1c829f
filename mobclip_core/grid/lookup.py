"""Rows of a per-cell table for given cells: the one cell lookup of the library, evaluation and QGIS algorithms."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cells import cells_to_strings


def lookup_rows(table: pd.DataFrame, cells: np.ndarray) -> np.ndarray:
    """Values (float64) of the table's row for each cell (``uint64``), NaN where the table has no such cell.

    ``table`` is indexed by hex ``h3_cell`` strings, as every per-cell table of the library is.
    """
    cells = np.asarray(cells, dtype=np.uint64)
    values = table.to_numpy(dtype=np.float64)
    pos = table.index.get_indexer(cells_to_strings(cells))
    out = np.full((cells.size, values.shape[1]), np.nan)
    found = pos >= 0
    out[found] = values[pos[found]]
    return out
