"""GeoDataFrames to GeoParquet and GeoPackage files, with the geometries encoded as 2D WKB by us.

``write_geofile`` is the one way a command writes a layer a user named: atomically, and into a GeoPackage that
already exists as GIS users keep them, with many layers to a file: the named layer is added or replaced and the
file's other layers stay (as QGIS's "Save to GeoPackage" and geopandas' ``to_file`` do).

Every geometry write of the library goes through here, for two reasons:

- geopandas lets shapely pick the WKB dimension, and where an older GEOS is already loaded in the process (QGIS's)
  shapely's default is refused ("WKB output dimension must be 2 or 3"); we ask for 2D explicitly;
- GDAL >= 3.8 stamps GeoPackages as version 1.4, and the GDAL of QGIS 3.22-3.28 logs a warning for every such
  file it opens ("user_version ... may only be partially supported"); we write version 1.3, which every GDAL since
  2.2 reads without a word.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import InvalidInputError

GPKG_VERSION = "1.3"
_TYPE_NAMES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon"}


def write_geofile(gdf, path: str | Path, *, layer: str | None = None) -> list[str]:
    """Write ``gdf`` to ``path`` (as ``write_geodataframe``) so that the file is all new or all old; returns the
    names of the other layers an existing GeoPackage kept.

    An existing GeoPackage is copied beside itself, ``layer`` (default: the file's stem) written into the copy
    (replacing a layer of that name) and the copy renamed onto the file: its other layers are kept, at the cost of
    one copy of the file (a GeoPackage holding only ``layer``, or an empty file, is written anew). Refused while a
    ``-wal`` or ``-journal`` file lies beside it (open in another program, or left by a crash: the copy would miss
    changes), and when the file is not a GeoPackage. Parquet files are replaced.
    """
    from .io import atomic_path

    path = Path(path)
    layer = layer or path.stem
    kept = _other_layers(path, layer) if path.suffix.lower() == ".gpkg" and path.exists() else None
    with atomic_path(path) as tmp:
        if kept:
            shutil.copyfile(path, tmp)
        write_geodataframe(gdf, tmp, layer=layer)
    return kept or []


def _other_layers(path: Path, layer: str) -> list[str] | None:
    """The layers of the GeoPackage ``path`` besides ``layer`` (names compare without case, as SQLite's do), once
    it is known that a copy of it can be taken; None for an empty file (a placeholder, replaced as before)."""
    import pyogrio

    if path.stat().st_size == 0:
        return None
    sidecars = [path.with_name(path.name + end) for end in ("-wal", "-journal")]
    journal = [p.name for p in sidecars if p.exists()]
    if journal:
        raise InvalidInputError(
            f"{path} is open in another program, or was left unfinished by one ({journal[0]} is beside it): close "
            "it there (in QGIS, remove its layers from the project; a file left by a crash is repaired by opening "
            "it once in QGIS) and run again, or write to another file"
        )
    try:
        names = [str(n) for n, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # noqa: BLE001 - GDAL's error types vary; any of them means the same here
        raise InvalidInputError(
            f"{path} exists but is not a GeoPackage GDAL can read: choose another output file name, or delete it"
        ) from exc
    return [n for n in names if n.casefold() != layer.casefold()]


def write_geodataframe(gdf, path: str | Path, *, layer: str | None = None) -> Path:
    """Write ``gdf`` to ``path`` (``.parquet``: GeoParquet 1.0; ``.gpkg``: GeoPackage 1.3, layer ``layer``).

    A named index is written as a column (the way ``h3_cell`` indexes travel); an unnamed one is dropped for
    GeoPackage and kept as pandas metadata in Parquet, as geopandas does.
    """
    import shapely

    path = Path(path)
    name = gdf.geometry.name
    geoms = gdf.geometry.values
    wkb = shapely.to_wkb(np.asarray(geoms, dtype=object), output_dimension=2)
    types = sorted({_TYPE_NAMES.get(int(t), "Unknown") for t in shapely.get_type_id(np.asarray(geoms)) if t >= 0})
    attributes = pd.DataFrame(gdf.drop(columns=name))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        _write_geoparquet(attributes, wkb, name, types, gdf, path)
    elif suffix == ".gpkg":
        _write_geopackage(attributes, wkb, types, gdf, path, layer)
    else:
        raise InvalidInputError(f"unknown geo file type {suffix!r}: use .parquet or .gpkg")
    return path


def _write_geoparquet(attributes: pd.DataFrame, wkb, name: str, types: list[str], gdf, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = {"encoding": "WKB", "geometry_types": types}
    if gdf.crs is not None:
        column["crs"] = gdf.crs.to_json_dict()
    if len(gdf):
        column["bbox"] = [float(v) for v in gdf.total_bounds]
    frame = attributes.copy()
    frame[name] = wkb
    table = pa.Table.from_pandas(frame)
    geo = {"version": "1.0.0", "primary_column": name, "columns": {name: column}}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()})
    pq.write_table(table, path)


def _write_geopackage(attributes: pd.DataFrame, wkb, types: list[str], gdf, path: Path, layer: str | None) -> None:
    from pyogrio.raw import write

    if attributes.index.name is not None:
        attributes = attributes.reset_index()
    promote = set(types) in ({"Polygon", "MultiPolygon"}, {"Point", "MultiPoint"})
    if promote:
        geometry_type = "Multi" + types[0].removeprefix("Multi")
    else:
        geometry_type = types[0] if len(types) == 1 else "Unknown"
    write(
        str(path),
        np.asarray(wkb, dtype=object),
        [attributes[c].to_numpy() for c in attributes.columns],
        [str(c) for c in attributes.columns],
        layer=layer or path.stem,
        driver="GPKG",
        geometry_type=geometry_type,
        crs=gdf.crs.to_wkt() if gdf.crs is not None else None,
        promote_to_multi=promote,
        dataset_options={"VERSION": GPKG_VERSION},
        layer_options={"OVERWRITE": "YES"},  # a layer of that name in another case is replaced, not an error
    )
