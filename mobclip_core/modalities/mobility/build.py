"""A ``[mobility]`` config section -> one graph: each source built alone, then combined by weight."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...config import GtfsSource, LodesSource, OdSource, RecordsSource, TripsSource
from ...exceptions import InvalidInputError
from .flows import FlowGraphBuilder, combine_graphs
from .graph import MobilityGraph


def build_mobility_graph(section, ctx) -> MobilityGraph:
    """The mobility graph of every source the section names (see ``flows.combine_graphs`` for the weights)."""
    parts = [(graph_from_source(src, ctx), float(src.weight)) for src in section.source_list()]
    if len(parts) > 1:
        ctx.say(f"mobility: {len(parts)} sources combined with weights {[w for _, w in parts]}")
    graph = combine_graphs(parts)
    if graph.n_edges == 0:
        raise InvalidInputError(
            f"the mobility graph has no edges: no flow links two different cells at H3 resolution {ctx.resolution} "
            "(all the data in one cell? records that never put one person in two cells in a week?)"
        )
    _say_extent(graph, ctx)
    return graph


def _say_extent(graph: MobilityGraph, ctx) -> None:
    """Where the graph's cells lie, in the log; a warning where no people live, which is where swapped longitude and
    latitude put the Americas (-87.6, 41.9 read as lat, lon lies at 87.6 degrees south)."""
    from ...grid import cell_centroids

    lon, lat = cell_centroids(graph.cells)
    ctx.say(f"mobility: cells from lon {lon.min():.4f} to {lon.max():.4f}, lat {lat.min():.4f} to {lat.max():.4f}")
    if (lat < -60.0).mean() > 0.5 or (abs(lat) > 84.0).mean() > 0.5:
        ctx.say(
            "mobility: WARNING most cells lie in Antarctica or beyond 84 degrees of latitude: are longitude and "
            "latitude swapped? Name the coordinate columns in the [mobility] section (lon and lat for records, "
            "origin_lon ... destination_lat for trips)"
        )


def graph_from_source(src, ctx) -> MobilityGraph:
    """The graph of one mobility source, by its kind."""
    builders = {
        RecordsSource: _records_graph,
        OdSource: _od_graph,
        TripsSource: _trips_graph,
        GtfsSource: _gtfs_graph,
        LodesSource: _lodes_graph,
    }
    return builders[type(src)](src, ctx)


def _records_graph(src: RecordsSource, ctx) -> MobilityGraph:
    from ...sources import iter_records
    from .engines import build_graph_from_records

    ctx.say(f"mobility: co-presence graph from {src.path} ({src.engine} engine)")
    return build_graph_from_records(
        iter_records(ctx.resolve(src.path)),
        ctx.resolution,
        engine=src.engine,
        memory_budget_mb=src.memory_budget_mb,
        person=src.person,
        time=src.time,
        cell=src.cell,
        lon=src.lon,
        lat=src.lat,
    )


def _od_graph(src: OdSource, ctx) -> MobilityGraph:
    from ...sources import read_layer
    from .od import build_od_graph, zones_to_cells

    ctx.say(f"mobility: OD graph from {src.path}")
    od_path = ctx.resolve(src.path)
    ids_as_text = {src.origin: str, src.destination: str}  # keep leading zeros of zone codes
    od = pd.read_parquet(od_path) if od_path.suffix == ".parquet" else pd.read_csv(od_path, dtype=ids_as_text)
    zones = (
        zones_to_cells(read_layer(ctx.resolve(src.zones)), ctx.resolution, zone_id=src.zone_id) if src.zones else None
    )
    return build_od_graph(
        od,
        origin=src.origin,
        destination=src.destination,
        flow=src.flow,
        zone_cells=zones,
        resolution=ctx.resolution,
        say=ctx.say,
    )


def _trips_graph(src: TripsSource, ctx) -> MobilityGraph:
    from ...sources.trips import iter_trips

    named = (src.origin_lon, src.origin_lat, src.destination_lon, src.destination_lat)
    builder, skipped = FlowGraphBuilder(ctx.resolution), 0
    for chunk in iter_trips(ctx.resolve(src.path), layout=src.layout, columns=named if all(named) else None):
        builder.add_points(chunk.o_lon, chunk.o_lat, chunk.d_lon, chunk.d_lat, what=f"trips {src.path}")
        skipped += chunk.skipped
    ctx.say(f"mobility: {builder.flows_seen} trips from {src.path} ({skipped} without both ends located, skipped)")
    if builder.flows_seen == 0:
        raise InvalidInputError(f"trip table {src.path} has no trip with both ends located")
    return builder.finish()


def _gtfs_graph(src: GtfsSource, ctx) -> MobilityGraph:
    from ...sources.gtfs import stop_links

    feeds = [src.path] if isinstance(src.path, str) else list(src.path)
    builder = FlowGraphBuilder(ctx.resolution)
    for feed in feeds:
        links = stop_links(ctx.resolve(feed), max_stops_apart=src.max_stops_apart, week=src.week)
        a = links.stops.loc[links.links["from_stop"]]
        b = links.stops.loc[links.links["to_stop"]]
        builder.add_points(
            a["lon"].to_numpy(),
            a["lat"].to_numpy(),
            b["lon"].to_numpy(),
            b["lat"].to_numpy(),
            links.links["weekly_trips"].to_numpy(),
            what=f"GTFS {Path(feed).name}",
        )
        ctx.say(
            f"mobility: GTFS {Path(feed).name}: {links.stop_events} stop events, {len(links.links)} stop links, "
            f"{links.links['weekly_trips'].sum():.0f} trips over links in the week of {links.week_start}"
        )
    return builder.finish()


def _lodes_graph(src: LodesSource, ctx) -> MobilityGraph:
    from ...sources.lodes import iter_lodes_flows

    builder = FlowGraphBuilder(ctx.resolution)
    unmatched = 0
    for chunk in iter_lodes_flows(ctx.resolve(src.path), ctx.resolve(src.crosswalk), jobs=src.jobs):
        builder.add_points(chunk.h_lon, chunk.h_lat, chunk.w_lon, chunk.w_lat, chunk.jobs, what=f"LODES {src.path}")
        unmatched += chunk.unmatched
    ctx.say(
        f"mobility: LODES {src.path}: {builder.weight_seen:.0f} jobs in {builder.flows_seen} block pairs"
        + (f" ({unmatched} rows with a block missing from the crosswalk, skipped)" if unmatched else "")
    )
    if builder.flows_seen == 0:
        raise InvalidInputError(f"no block of {src.path} is in the crosswalk {src.crosswalk}: is it the same state?")
    return builder.finish()
