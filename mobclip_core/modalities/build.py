"""Build a region dataset from a config: the mobility graph fixes the cells, every modality adds its table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..dataset import RegionDataset
from ..exceptions import ModalityMissingError
from ..grid import cells_to_strings
from .base import BuildContext
from .registry import feature_modalities


def build_features(cfg, cells, ctx: BuildContext) -> dict[str, pd.DataFrame]:
    """Per-cell tables of every modality the config asks for, by name."""
    features: dict[str, pd.DataFrame] = {}
    for name, modality in feature_modalities().items():
        section = getattr(cfg, name)
        if modality.configured(section):
            ctx.say(modality.describe(section))
            features[name] = modality.build(section, cells, ctx)
    return features


# below this share of the graph's cells a modality is reported as sparse (its alignment has few pairs to learn from)
SPARSE_COVERAGE = 0.1


def build_region_dataset(cfg, *, progress: Callable[[str], None] | None = None) -> RegionDataset:
    """Run sources -> cells -> modality features for a RunConfig; returns the (unsaved) dataset."""
    from .mobility import build_mobility_graph

    ctx = BuildContext.from_config(cfg, progress)
    graph = build_mobility_graph(cfg.mobility, ctx)
    features = build_features(cfg, cells_to_strings(graph.cells), ctx)
    meta = {"name": cfg.name, "resolution": cfg.resolution, "config": cfg.to_dict()}
    ds = RegionDataset.from_parts(graph, features, meta)
    for name, df in ds.features.items():
        present = df.notna().all(axis=1)
        if not present.any():
            few = (
                f"; only {ds.cells.size} cells have mobility links at all: more mobility data (trips, records) or "
                f"a coarser resolution than {cfg.resolution} gives the region more cells"
                if ds.cells.size < 100
                else ""
            )
            raise ModalityMissingError(
                f"modality {name!r} covers none of the {ds.cells.size} cells the mobility data reaches (the region "
                f"is those cells): check that its input overlaps the mobility data and uses the right CRS{few}"
            )
        if present.mean() >= SPARSE_COVERAGE:
            ctx.say(f"{name} covers {int(present.sum()):,} of {ds.cells.size:,} cells ({present.mean():.0%})")
        else:
            ctx.say(
                f"WARNING {name} covers only {int(present.sum())} of {ds.cells.size} cells ({present.mean():.0%}): "
                f"the model learns little from it; at H3 resolution {cfg.resolution} cells may be too small for "
                f"these inputs (a coarser resolution, {cfg.resolution - 1}, gives each cell about 7x the area)"
            )
    return ds


def build_dataset(config: str | Path, out: str | Path | None = None, *, progress=None) -> dict:
    """``mobclip build``: read a config file, build its region dataset, save it (default ``<output>/dataset``).

    Returns the dataset folder and its summary; ``progress`` gets one line per source and modality.
    """
    from ..config import load_config

    cfg = load_config(config)
    ds = build_region_dataset(cfg, progress=progress)
    folder = Path(out) if out else cfg.path(cfg.output) / "dataset"
    ds.save(folder)
    return {"name": cfg.name, "dataset": str(folder), "summary": ds.describe()}
