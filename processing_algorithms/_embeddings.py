"""Loading embedding tables inside algorithms, with clear errors."""

from __future__ import annotations

import h3
import numpy as np
from qgis.core import QgsProcessingException


def load_embedding_table(path: str):
    """(table indexed by h3_cell, its resolution, column names)."""
    from mobclip_core.export import read_embeddings

    if not path:
        raise QgsProcessingException("No embedding table given: choose a .parquet or .gpkg written by mobclip")
    table = read_embeddings(path)
    if table.empty:
        raise QgsProcessingException(f"The embedding table {path} has no rows")
    resolutions = {h3.get_resolution(c) for c in table.index[:1000]}
    if len(resolutions) != 1:
        raise QgsProcessingException(f"The embedding table mixes H3 resolutions {sorted(resolutions)}")
    return table, resolutions.pop(), list(table.columns)


def lookup(table, cells: np.ndarray) -> np.ndarray:
    """Rows of the table for each cell (uint64), NaN where the table has no such cell."""
    from mobclip_core.grid import cells_to_strings

    pos = table.index.get_indexer(cells_to_strings(cells))
    values = table.to_numpy(dtype=np.float64)
    out = np.full((cells.size, values.shape[1]), np.nan)
    out[pos >= 0] = values[pos[pos >= 0]]
    return out
