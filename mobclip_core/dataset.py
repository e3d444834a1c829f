"""The region dataset on disk: cell index + aligned modality features + mobility graph + metadata.

Layout of a dataset directory::

    cells.parquet            GeoParquet: h3_cell (index), lon, lat, geometry (cell polygon, EPSG:4326)
    graph.npz                full mobility graph over the cells in cells.parquet order
                             (keys data,row,col,shape as in the public MobCLIP code, plus cells)
    features/<modality>.parquet   one row per cell in the same order; NaN rows where a cell lacks the modality
    metadata.json            resolution, modalities with dimensions and coverage, graph statistics, config
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
from .modalities.graph import MobilityGraph


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
        with atomic_dir(directory) as tmp:
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


def _model_ref(cfg, model: str) -> str | Path:
    """The packaged default model stays a name; anything else is a path relative to the config."""
    from .modalities.poi import DEFAULT_TEXT_MODEL

    return model if model == DEFAULT_TEXT_MODEL else cfg.path(model)


def _demographics_table(cfg, d, res: int) -> pd.DataFrame:
    from .modalities import zones_to_cells
    from .modalities.demographics import demographics_from_table
    from .sources import read_layer

    path = cfg.path(d.table)
    if path.suffix.lower() in (".csv", ".parquet"):
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        if not d.zones:
            raise InvalidInputError("[demographics] a CSV/Parquet table needs 'zones' (polygons with zone_id)")
        zones = read_layer(cfg.path(d.zones))
    else:
        zones = read_layer(path)
        table = pd.DataFrame(zones.drop(columns=zones.geometry.name))
    for col in [d.zone_id, *d.columns]:
        if col not in table.columns:
            raise InvalidInputError(f"[demographics] table has no column {col!r}; it has {list(table.columns)}")
    counts = table[[d.zone_id, *(d.columns or list(table.select_dtypes("number").columns))]]
    zone_cells = zones_to_cells(zones, res, zone_id=d.zone_id)
    return demographics_from_table(counts.rename(columns={d.zone_id: "zone"}), zone_cells=zone_cells)


def build_region_dataset(cfg, *, progress=None) -> RegionDataset:
    """Run sources -> cells -> modality features for a RunConfig; returns the (unsaved) dataset."""
    from .modalities import build_od_graph, zones_to_cells
    from .modalities.demographics import demographics_from_rasters
    from .modalities.imagery import image_features, image_stats_features
    from .modalities.poi import poi_category_counts, poi_text_features
    from .sources import iter_records, read_layer

    say = progress or (lambda msg: None)
    res = cfg.resolution
    cache = cfg.path(cfg.cache_dir) if cfg.cache_dir else None
    m = cfg.mobility
    if m.records:
        say(f"mobility: co-presence graph from {m.records} ({m.engine} engine)")
        from .modalities.engines import build_graph_from_records

        graph = build_graph_from_records(
            iter_records(cfg.path(m.records)),
            res,
            engine=m.engine,
            memory_budget_mb=m.memory_budget_mb,
            person=m.person,
            time=m.time,
            cell=m.cell,
            lon=m.lon,
            lat=m.lat,
        )
    else:
        say(f"mobility: OD graph from {m.od}")
        od_path = cfg.path(m.od)
        ids_as_text = {m.origin: str, m.destination: str}  # keep leading zeros of zone codes
        od = pd.read_parquet(od_path) if od_path.suffix == ".parquet" else pd.read_csv(od_path, dtype=ids_as_text)
        zone_cells = zones_to_cells(read_layer(cfg.path(m.zones)), res, zone_id=m.zone_id) if m.zones else None
        graph = build_od_graph(od, origin=m.origin, destination=m.destination, flow=m.flow, zone_cells=zone_cells)
    if graph.n_edges == 0:
        raise InvalidInputError("the mobility graph has no edges: records never put one person in two cells in a week")
    cells = cells_to_strings(graph.cells)
    features: dict[str, pd.DataFrame] = {}
    if cfg.poi.path:
        say(f"poi: {cfg.poi.encoder} features from {cfg.poi.path}")
        pois = read_layer(cfg.path(cfg.poi.path))
        if cfg.poi.encoder == "text":
            features["poi"] = poi_text_features(
                pois,
                res,
                name=cfg.poi.name,
                category=cfg.poi.category,
                model=_model_ref(cfg, cfg.poi.model),
                cache_dir=cache,
            )
        else:
            features["poi"] = poi_category_counts(pois, res, category=cfg.poi.category)
    if cfg.image.path:
        say(f"image: {cfg.image.encoder} features from {cfg.image.path}")
        if cfg.image.encoder == "open_clip":
            features["image"] = image_features(
                cfg.path(cfg.image.path),
                cells,
                checkpoint=cfg.path(cfg.image.checkpoint),
                model_name=cfg.image.model_name,
                cache_dir=cache,
            )
        else:
            features["image"] = image_stats_features(cfg.path(cfg.image.path), cells)
    d = cfg.demographics
    if d.raster or d.rasters:
        say("demographics: age/sex histograms from rasters")
        src = cfg.path(d.raster) if d.raster else {k: cfg.path(v) for k, v in d.rasters.items()}
        features["demographics"] = demographics_from_rasters(src, res, cache_dir=cache)
    elif d.table:
        say(f"demographics: histograms from zone table {d.table}")
        features["demographics"] = _demographics_table(cfg, d, res)
    ds = RegionDataset.from_parts(graph, features, {"name": cfg.name, "resolution": res, "config": cfg.to_dict()})
    for name in list(ds.features):
        if not ds.features[name].notna().all(axis=1).any():
            raise ModalityMissingError(
                f"modality {name!r} covers none of the {ds.cells.size} graph cells: "
                "check that its input overlaps the mobility data and uses the right CRS"
            )
    return ds
