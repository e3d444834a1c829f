"""Modalities: each turns sources into a per-cell feature table aligned to one cell index."""

from .graph import MobilityGraph
from .mobility import CopresenceGraphBuilder, build_copresence_graph, build_od_graph, to_week, zones_to_cells

__all__ = [
    "CopresenceGraphBuilder",
    "MobilityGraph",
    "build_copresence_graph",
    "build_od_graph",
    "to_week",
    "zones_to_cells",
]
