"""Planted embeddings of the demo city: a stand-in "model" whose answers are known, so no training runs in a test.

Each zone type has a direction in a 16-d space; each cell gets its zone's direction plus noise that belongs to the
city's data (0.45 per dimension); a model seed then rotates the whole space at random and adds its own, smaller noise
(0.15). Used by tests/test_qgis_analysis.py and the desktop map-tool check (tests/test_desktop_map_tool.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DIM = 16


def planted_embeddings(city, city_seed: int, model_seed: int) -> pd.DataFrame:
    from mobclip_core.grid import cells_to_strings

    directions = np.random.default_rng(0).normal(size=(5, DIM))
    data_noise = 0.45 * np.random.default_rng(100 + city_seed).normal(size=(city.cells.size, DIM))
    rotation, _ = np.linalg.qr(np.random.default_rng(200 + model_seed).normal(size=(DIM, DIM)))
    seed_noise = 0.15 * np.random.default_rng(300 + model_seed).normal(size=(city.cells.size, DIM))
    values = (directions[city.zone] + data_noise) @ rotation + seed_noise
    return pd.DataFrame(
        values.astype(np.float32),
        index=pd.Index(cells_to_strings(city.cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(DIM)],
    )


def deep_cell(city, zone: str) -> str:
    """The cell of ``zone`` with the most neighbours of the same zone (the middle of a planted patch)."""
    from mobclip_core.demo import ZONES
    from mobclip_core.grid import cells_to_strings, neighbours

    pairs = neighbours(city.cells[city.zone == ZONES.index(zone)], k=1)
    same = city.zone_labels.reindex(cells_to_strings(pairs["neighbour"].to_numpy())).to_numpy() == zone
    counts = pd.Series(same, index=cells_to_strings(pairs["h3_cell"].to_numpy())).groupby(level=0).sum()
    return str(counts.idxmax())


def write_zone_embeddings(city, root):
    """A table whose first 5 dimensions are the one-hot zone (plus 3 noise dimensions), written by the library as
    ``emb.gpkg`` and ``emb.parquet``, and ``cells.gpkg``: the cells with ``target = 2 * emb_5 + noise``."""
    import geopandas as gpd

    from mobclip_core.export import embeddings_geodataframe, write_embeddings
    from mobclip_core.geofile import write_geodataframe
    from mobclip_core.grid import cells_to_strings

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        np.c_[np.eye(5)[city.zone], rng.normal(size=(city.cells.size, 3))].astype(np.float32),
        index=pd.Index(cells_to_strings(city.cells), name="h3_cell"),
        columns=[f"emb_{i}" for i in range(8)],
    )
    write_embeddings(table, root / "emb.gpkg")
    write_embeddings(table, root / "emb.parquet")
    cells = embeddings_geodataframe(table).reset_index()
    cells["target"] = 2.0 * cells["emb_5"] + rng.normal(scale=0.1, size=len(cells))
    write_geodataframe(gpd.GeoDataFrame(cells, crs=4326), root / "cells.gpkg")
    return table
