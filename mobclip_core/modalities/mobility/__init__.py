"""The mobility anchor: every mobility source becomes one weighted, undirected graph between H3 cells.

- ``copresence``: activity records (check-ins, GPS fixes, payments) -> weekly co-presence graph, streamed
  (``_kernels`` holds its compiled kernels, ``engines`` the DuckDB and Spark versions);
- ``od``: origin-destination tables keyed by cells or zones;
- ``sampling``: the per-cell edge sampling applied before training;
- ``graph``: the ``MobilityGraph`` they all return.
"""

from __future__ import annotations

from .copresence import CopresenceGraphBuilder, build_copresence_graph, to_week
from .graph import MobilityGraph
from .od import build_od_graph, zones_to_cells

__all__ = [
    "CopresenceGraphBuilder",
    "MobilityGraph",
    "build_copresence_graph",
    "build_mobility_graph",
    "build_od_graph",
    "to_week",
    "zones_to_cells",
]


def build_mobility_graph(section, ctx) -> MobilityGraph:
    """The mobility graph named by a ``[mobility]`` config section."""
    import pandas as pd

    from ...exceptions import InvalidInputError
    from ...sources import iter_records, read_layer

    m, res = section, ctx.resolution
    if m.records:
        ctx.say(f"mobility: co-presence graph from {m.records} ({m.engine} engine)")
        from .engines import build_graph_from_records

        graph = build_graph_from_records(
            iter_records(ctx.resolve(m.records)),
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
        ctx.say(f"mobility: OD graph from {m.od}")
        od_path = ctx.resolve(m.od)
        ids_as_text = {m.origin: str, m.destination: str}  # keep leading zeros of zone codes
        od = pd.read_parquet(od_path) if od_path.suffix == ".parquet" else pd.read_csv(od_path, dtype=ids_as_text)
        zone_cells = zones_to_cells(read_layer(ctx.resolve(m.zones)), res, zone_id=m.zone_id) if m.zones else None
        graph = build_od_graph(od, origin=m.origin, destination=m.destination, flow=m.flow, zone_cells=zone_cells)
    if graph.n_edges == 0:
        raise InvalidInputError("the mobility graph has no edges: records never put one person in two cells in a week")
    return graph
