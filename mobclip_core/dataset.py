"""The region dataset on disk: cell index + aligned modality features + mobility graph + metadata.

Layout of a dataset directory::

    cells.parquet            GeoParquet: h3_cell (index), lon, lat, geometry (cell polygon, EPSG:4326)
    graph.npz                full mobility graph over the cells in cells.parquet order
                             (keys data,row,col,shape as in the public MobCLIP code, plus cells)
    features/<modality>.parquet   one row per cell in the same order; NaN rows where a cell lacks the modality
    metadata.json            resolution, modalities with dimensions and coverage, graph statistics, config

This module holds, saves and loads a dataset; ``modalities.build.build_region_dataset`` builds one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .constants import REGION_INDEX
from .exceptions import InvalidInputError, ModalityMissingError
from .grid import cell_centroids, cells_to_polygons, cells_to_strings, strings_to_cells
from .io import atomic_dir
from .modalities.mobility.graph import MobilityGraph


@dataclass
class RegionDataset:
    """Cells, their mobility graph and aligned auxiliary features."""

    cells: np.ndarray  # uint64, the row order of everything
    graph: MobilityGraph
    features: dict[str, pd.DataFrame] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def cell_ids(self) -> pd.Index:
        return pd.Index(cells_to_strings(self.cells), name=REGION_INDEX)

    def feature_matrix(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(X[n_cells, d] float32 with zeros where missing, present[n_cells] bool)."""
        if modality not in self.features:
            raise ModalityMissingError(
                f"modality {modality!r} is not in this dataset (it has {sorted(self.features)}); "
                "add its input to the config or drop it from [train] modalities"
            )
        df = self.features[modality]
        present = df.notna().all(axis=1).to_numpy()
        if not present.any():
            raise ModalityMissingError(
                f"modality {modality!r} is missing for every cell: check its input covers the region"
            )
        return np.nan_to_num(df.to_numpy(dtype=np.float32)), present

    @classmethod
    def from_parts(
        cls, graph: MobilityGraph, features: dict[str, pd.DataFrame], metadata: dict | None = None
    ) -> RegionDataset:
        """Align feature tables (indexed by hex ``h3_cell``) to the graph's cells."""
        if graph.n_cells == 0:
            raise InvalidInputError("the mobility graph has no cells")
        index = pd.Index(cells_to_strings(graph.cells), name=REGION_INDEX)
        aligned = {}
        for name, df in features.items():
            if df is None:
                continue
            df = df.copy()
            df.index = df.index.astype(str)
            aligned[name] = df.reindex(index)
        return cls(graph.cells, graph, aligned, dict(metadata or {}))

    def describe(self) -> dict:
        mods = {}
        for name, df in self.features.items():
            present = df.notna().all(axis=1)
            mods[name] = {
                "dim": int(df.shape[1]),
                "cells_present": int(present.sum()),
                "coverage": float(present.mean()),
            }
        return {"cells": int(self.cells.size), "graph": self.graph.stats(), "modalities": mods}

    def save(self, directory: str | Path) -> Path:
        """Write the dataset atomically (a half-written dataset never appears)."""
        import geopandas as gpd

        from .geofile import write_geodataframe

        directory = Path(directory)
        # a dataset is a step of a run, not its result: a worker stopped after writing it has written nothing the
        # user asked for, and must not say its outputs are complete
        with atomic_dir(directory, record=False) as tmp:
            lon, lat = cell_centroids(self.cells)
            gdf = gpd.GeoDataFrame(
                {"lon": lon, "lat": lat}, geometry=cells_to_polygons(self.cells), index=self.cell_ids, crs="EPSG:4326"
            )
            write_geodataframe(gdf, tmp / "cells.parquet")
            self.graph.save(tmp / "graph.npz")
            (tmp / "features").mkdir()
            for name, df in self.features.items():
                df.to_parquet(tmp / "features" / f"{name}.parquet")
            meta = {**self.metadata, **self.describe(), "mobclip_version": __version__}
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> RegionDataset:
        directory = Path(directory)
        if not (directory / "metadata.json").exists():
            raise InvalidInputError(
                f"{directory} is not a region dataset (no metadata.json); build one with `mobclip build CONFIG`"
            )
        cells = pd.read_parquet(directory / "cells.parquet", columns=["lon"]).index
        cell_ids = strings_to_cells(cells.to_numpy())
        graph = MobilityGraph.load(directory / "graph.npz")
        if not np.array_equal(graph.cells, cell_ids):
            raise InvalidInputError(f"{directory}: graph.npz and cells.parquet disagree on the cells")
        features = {p.stem: pd.read_parquet(p) for p in sorted((directory / "features").glob("*.parquet"))}
        meta = json.loads((directory / "metadata.json").read_text())
        return cls(cell_ids, graph, features, meta)
