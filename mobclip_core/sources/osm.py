"""OpenStreetMap ``.osm.pbf`` extracts -> points of interest (location, name, readable category), streamed.

Read with pyosmium (libosmium, C++) in one pass: a tag filter in C++ hands Python only the objects that carry a POI
key, so Python never sees the hundreds of millions of plain nodes of a country extract. Ways (shops and amenities
mapped as building outlines) are placed at the mean of their nodes, looked up in libosmium's node-location index:
in memory (16 bytes per node of the file) for extracts below ``DISK_INDEX_FROM_BYTES``, in a temporary file above
it, so a country extract needs little more memory than its POIs. Multipolygon relations (a few large sites such as
campuses and parks) are not assembled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..exceptions import InvalidInputError

OSM_POI_KEYS = ("amenity", "shop", "tourism", "leisure", "office", "craft", "healthcare", "historic")
"""Keys that make an object a POI, in the order that picks its category when it has several."""

STREET_FURNITURE = frozenset(
    {"bench", "waste_basket", "waste_disposal", "grit_bin", "parking_space", "parking_entrance", "clock",
     "vending_machine", "post_box", "bicycle_parking", "drinking_water", "hunting_stand", "letter_box"}
)  # fmt: skip
"""amenity values left out: objects on every street corner that say nothing about a place's function."""

DISK_INDEX_FROM_BYTES = 256 * 2**20
"""Extracts at least this large keep their node-location index in a temporary file instead of memory."""

_SUFFIXED = ("shop", "office", "craft", "healthcare")  # "clothes" -> "clothes shop", "lawyer" -> "lawyer office"
_COLUMNS = ("lon", "lat", "name", "category", "tag", "osm_type", "osm_id")


def readable_category(key: str, value: str) -> str:
    """A short English phrase for a POI tag: amenity=place_of_worship -> 'place of worship', shop=car -> 'car shop'."""
    value = value.split(";")[0].strip().replace("_", " ")
    if not value or value == "yes":
        return key
    if key in _SUFFIXED and key not in value:
        return f"{value} {key}"
    return value


def _poi_tag(tags, keys) -> tuple[str, str] | None:
    for key in keys:
        value = tags.get(key)
        if value and value != "no" and not (key == "amenity" and value in STREET_FURNITURE):
            return key, value
    return None


def _frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows, columns=list(_COLUMNS))
    return df.astype({"lon": np.float64, "lat": np.float64, "osm_id": np.int64})


def _inside(df: pd.DataFrame, bbox) -> pd.DataFrame:
    if not bbox:
        return df
    west, south, east, north = bbox
    keep = (df["lon"] >= west) & (df["lon"] <= east) & (df["lat"] >= south) & (df["lat"] <= north)
    return df[keep.to_numpy()]


def iter_osm_pois(
    path: str | Path,
    *,
    keys: tuple[str, ...] = OSM_POI_KEYS,
    language: str | None = None,
    bbox: list[float] | None = None,
    chunk_rows: int = 200_000,
    node_index: str = "auto",
) -> Iterator[pd.DataFrame]:
    """Yield POI chunks (columns lon, lat, name, category, tag, osm_type, osm_id) of an ``.osm.pbf`` file.

    ``name`` is ``name:<language>`` where the object has it, else ``name`` (else empty); ``category`` is the
    readable form of the first of ``keys`` it carries, ``tag`` the raw ``key=value``. ``node_index``: "memory",
    "disk" or "auto" (by file size, see ``DISK_INDEX_FROM_BYTES``).
    """
    osmium = import_optional("osmium")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"OSM extract {path} does not exist")
    if node_index not in ("auto", "memory", "disk"):
        raise InvalidInputError(f"node_index must be 'auto', 'memory' or 'disk', got {node_index!r}")
    on_disk = node_index == "disk" or (node_index == "auto" and path.stat().st_size >= DISK_INDEX_FROM_BYTES)
    name_keys = ([f"name:{language}"] if language else []) + ["name"]
    with tempfile.TemporaryDirectory(prefix="mobclip-osm-") as tmp:
        storage = f"sparse_file_array,{Path(tmp) / 'nodes.idx'}" if on_disk else "flex_mem"
        processor = (
            osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
            .with_locations(storage)
            .with_filter(osmium.filter.KeyFilter(*keys))
        )
        rows: list[tuple] = []
        try:
            for obj in processor:
                tag = _poi_tag(obj.tags, keys)
                if tag is None:
                    continue
                lon, lat = _location(obj)
                if lon is None:
                    continue
                name = next((obj.tags.get(k) for k in name_keys if obj.tags.get(k)), "")
                kind = "node" if obj.is_node() else "way"
                rows.append((lon, lat, name, readable_category(*tag), f"{tag[0]}={tag[1]}", kind, obj.id))
                if len(rows) >= chunk_rows:
                    yield _inside(_frame(rows), bbox)
                    rows = []
        except RuntimeError as exc:
            raise InvalidInputError(f"{path.name} is not a readable OSM PBF file ({exc})") from exc
        if rows:
            yield _inside(_frame(rows), bbox)


def _location(obj) -> tuple[float | None, float | None]:
    """A node's location; a way's mean node location (a closed way's repeated first node counted once)."""
    if obj.is_node():
        loc = obj.location
        return (loc.lon, loc.lat) if loc.valid() else (None, None)
    nodes = obj.nodes
    count = len(nodes) - (1 if len(nodes) > 1 and nodes[0].ref == nodes[len(nodes) - 1].ref else 0)
    xs = [(n.lon, n.lat) for n in (nodes[i] for i in range(count)) if n.location.valid()]
    if not xs:
        return None, None  # every node of the way lies outside the extract
    lon, lat = np.mean(xs, axis=0)
    return float(lon), float(lat)


def read_osm_pois(path: str | Path, **options) -> pd.DataFrame:
    """All POIs of an ``.osm.pbf`` file as one table (see ``iter_osm_pois``)."""
    chunks = list(iter_osm_pois(path, **options))
    if not chunks:
        return _frame([])
    return pd.concat(chunks, ignore_index=True)
