"""The mobility anchor: every mobility source becomes one weighted, undirected graph between H3 cells.

- ``copresence``: activity records (check-ins, GPS fixes, payments) -> weekly co-presence graph, streamed
  (``_kernels`` holds its compiled kernels, ``engines`` the DuckDB and Spark versions);
- ``od``: origin-destination tables keyed by cells or zones;
- ``flows``: weighted flows between places (trips, transit links, commutes) and the combination of sources;
- ``build``: a ``[mobility]`` config section (one source or several, each with a weight) -> the graph;
- ``sampling``: the per-cell edge sampling applied before training;
- ``graph``: the ``MobilityGraph`` they all return.
"""

from __future__ import annotations

from .build import build_mobility_graph
from .copresence import CopresenceGraphBuilder, build_copresence_graph, to_week
from .flows import FlowGraphBuilder, combine_graphs
from .graph import MobilityGraph
from .od import build_od_graph, zones_to_cells

__all__ = [
    "CopresenceGraphBuilder",
    "FlowGraphBuilder",
    "MobilityGraph",
    "build_copresence_graph",
    "build_mobility_graph",
    "build_od_graph",
    "combine_graphs",
    "to_week",
    "zones_to_cells",
]
