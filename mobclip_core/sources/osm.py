"""OpenStreetMap ``.osm.pbf`` extracts -> points of interest (location, name, readable category), streamed.

Read with pyosmium (libosmium, C++): a tag filter in C++ hands Python only the objects that carry a POI key, so a
country extract streams through with memory bounded by its POIs, not by its hundreds of millions of nodes. Two
passes: the first yields tagged nodes and remembers tagged ways with their node ids; the second reads just those
nodes (an id filter, also in C++) to place each way at the mean of its nodes. Multipolygon relations (a few large
sites such as campuses and parks) are not assembled: that would need every node location of the file.
"""

from __future__ import annotations

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
) -> Iterator[pd.DataFrame]:
    """Yield POI chunks (columns lon, lat, name, category, tag, osm_type, osm_id) of an ``.osm.pbf`` file.

    ``name`` is ``name:<language>`` where the object has it, else ``name`` (else empty); ``category`` is the
    readable form of the first of ``keys`` it carries, ``tag`` the raw ``key=value``.
    """
    osmium = import_optional("osmium")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"OSM extract {path} does not exist")
    name_keys = ([f"name:{language}"] if language else []) + ["name"]
    rows: list[tuple] = []
    way_rows: list[tuple] = []
    way_refs: list[np.ndarray] = []
    tracker = osmium.IdTracker()
    processor = osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY).with_filter(
        osmium.filter.KeyFilter(*keys)
    )
    try:
        for obj in processor:
            tag = _poi_tag(obj.tags, keys)
            if tag is None:
                continue
            name = next((obj.tags.get(k) for k in name_keys if obj.tags.get(k)), "")
            row = (name, readable_category(*tag), f"{tag[0]}={tag[1]}")
            if obj.is_node():
                if obj.location.valid():
                    rows.append((obj.location.lon, obj.location.lat, *row, "node", obj.id))
                    if len(rows) >= chunk_rows:
                        yield _inside(_frame(rows), bbox)
                        rows = []
            else:
                refs = np.fromiter((n.ref for n in obj.nodes), dtype=np.int64)
                if refs.size > 1 and refs[0] == refs[-1]:
                    refs = refs[:-1]  # a closed way repeats its first node
                way_rows.append((np.nan, np.nan, *row, "way", obj.id))
                way_refs.append(refs)
                tracker.add_references(obj)
    except RuntimeError as exc:
        raise InvalidInputError(f"{path.name} is not a readable OSM PBF file ({exc})") from exc
    if rows:
        yield _inside(_frame(rows), bbox)
    if way_rows:
        yield _inside(_place_ways(osmium, path, tracker, way_rows, way_refs), bbox)


def _place_ways(osmium, path: Path, tracker, way_rows: list[tuple], way_refs: list[np.ndarray]) -> pd.DataFrame:
    """Second pass: read only the nodes the POI ways use; each way sits at the mean of its nodes in the file."""
    ids, lons, lats = [], [], []
    for node in osmium.FileProcessor(str(path), osmium.osm.NODE).with_filter(tracker.id_filter()):
        if node.location.valid():
            ids.append(node.id)
            lons.append(node.location.lon)
            lats.append(node.location.lat)
    order = np.argsort(np.asarray(ids, dtype=np.int64))
    known = np.asarray(ids, dtype=np.int64)[order]
    lon, lat = np.asarray(lons)[order], np.asarray(lats)[order]
    refs = np.concatenate(way_refs)
    way_of_ref = np.repeat(np.arange(len(way_refs)), [r.size for r in way_refs])
    pos = np.searchsorted(known, refs)
    found = (pos < known.size) & (known[np.minimum(pos, known.size - 1)] == refs) if known.size else refs < 0
    count = np.bincount(way_of_ref[found], minlength=len(way_refs))
    sum_lon = np.bincount(way_of_ref[found], weights=lon[pos[found]], minlength=len(way_refs))
    sum_lat = np.bincount(way_of_ref[found], weights=lat[pos[found]], minlength=len(way_refs))
    df = _frame(way_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        df["lon"], df["lat"] = sum_lon / count, sum_lat / count
    return df[count > 0]  # ways whose nodes all lie outside the extract are dropped


def read_osm_pois(path: str | Path, **options) -> pd.DataFrame:
    """All POIs of an ``.osm.pbf`` file as one table (see ``iter_osm_pois``)."""
    chunks = list(iter_osm_pois(path, **options))
    if not chunks:
        return _frame([])
    return pd.concat(chunks, ignore_index=True)
