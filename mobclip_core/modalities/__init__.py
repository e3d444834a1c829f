"""Modalities: each turns its config section and the cell index into a per-cell feature table.

``registry`` names them (one line per modality), ``base`` holds the one interface, ``build`` runs them all into a
region dataset. Mobility is the anchor: its sources build the cell graph that fixes the cell index
(``modalities.mobility``). Names below are imported on first use, so importing a submodule stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MobilityGraph": ".mobility.graph",
    "CopresenceGraphBuilder": ".mobility.copresence",
    "build_copresence_graph": ".mobility.copresence",
    "to_week": ".mobility.copresence",
    "build_od_graph": ".mobility.od",
    "zones_to_cells": ".mobility.od",
    "build_region_dataset": ".build",
    "BuildContext": ".base",
    "FeatureModality": ".base",
    "feature_modalities": ".registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
