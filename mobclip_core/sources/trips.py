"""Trip tables (taxi, bike share, ride hailing): origin and destination coordinates per trip, streamed.

The column layouts of the common open trip tables are recognised by their header; any other table names its four
coordinate columns. A trip without both ends located (stations missing, zones suppressed for privacy) is skipped
and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError, UnknownTripLayoutError

TRIP_LAYOUTS: dict[str, tuple[str, str, str, str]] = {
    # name: (origin lon, origin lat, destination lon, destination lat)
    "bikeshare": ("start_lng", "start_lat", "end_lng", "end_lat"),  # Divvy, Citi Bike, Capital Bikeshare since 2020
    "bikeshare_legacy": (  # Citi Bike until 2021, Divvy stations
        "start station longitude",
        "start station latitude",
        "end station longitude",
        "end station latitude",
    ),
    "nyc_taxi_legacy": ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"),  # to 2016
    "chicago_taxi": (  # City of Chicago taxi and TNP trips (CSV export)
        "Pickup Centroid Longitude",
        "Pickup Centroid Latitude",
        "Dropoff Centroid Longitude",
        "Dropoff Centroid Latitude",
    ),
    "chicago_taxi_api": (  # the same tables through the Socrata API
        "pickup_centroid_longitude",
        "pickup_centroid_latitude",
        "dropoff_centroid_longitude",
        "dropoff_centroid_latitude",
    ),
}


@dataclass
class TripChunk:
    """Located trips of one chunk: origin and destination coordinates, and the rows skipped."""

    o_lon: np.ndarray
    o_lat: np.ndarray
    d_lon: np.ndarray
    d_lat: np.ndarray
    skipped: int


def detect_trip_columns(columns, layout: str = "auto") -> tuple[str, str, str, str]:
    """The four coordinate columns of a trip table: a named layout, or the first known layout the header has."""
    names = list(columns)
    if layout != "auto":
        if layout not in TRIP_LAYOUTS:
            raise InvalidInputError(f"unknown trip layout {layout!r}; known: {['auto', *TRIP_LAYOUTS]}")
        wanted = TRIP_LAYOUTS[layout]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise InvalidInputError(f"trip table lacks the {layout!r} columns {missing}; it has {names}")
        return wanted
    for wanted in TRIP_LAYOUTS.values():
        if all(c in names for c in wanted):
            return wanted
    raise UnknownTripLayoutError(
        f"no known trip layout in columns {names}. Name the coordinate columns in the source "
        "(origin_lon, origin_lat, destination_lon, destination_lat), or pick a layout: "
        f"{list(TRIP_LAYOUTS)}. Trip tables keyed by zones (e.g. NYC taxi PULocationID/DOLocationID) are OD "
        "tables: use kind = 'od' with the zone layer",
        names,
    )


def trip_table_columns(
    path: str | Path, *, layout: str = "auto", columns: tuple[str, str, str, str] | None = None
) -> tuple[tuple[str, str, str, str], str]:
    """The four coordinate columns a trip table's header gives (named, a layout, or detected) and its format
    ("csv" or "parquet"), from the header alone: a table that cannot be read is refused before any work."""
    import pyarrow.dataset as ds

    from ..io import reading
    from .records import _separator_fix

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"trip table {path} does not exist")
    fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") or path.is_dir() else "csv"
    fix = _separator_fix(path) if fmt == "csv" else None
    with reading(path, "trip table", fix=fix):  # empty, truncated, not gzip: one clear message
        names = ds.dataset(path, format=fmt).schema.names
    if fix and len(names) == 1:
        raise InvalidInputError(f"trip table {path.name} has one column, {names[0]!r}: {fix}")
    cols = tuple(columns) if columns else detect_trip_columns(names, layout)
    missing = [c for c in cols if c not in names]
    if missing:
        raise InvalidInputError(f"trip table {path.name} has no columns {missing}; it has {names}")
    return cols, fmt


def iter_trips(
    path: str | Path,
    *,
    layout: str = "auto",
    columns: tuple[str, str, str, str] | None = None,
    batch_rows: int = 1_000_000,
) -> Iterator[TripChunk]:
    """Yield the located trips of a CSV or Parquet trip table chunk by chunk (memory bounded by ``batch_rows``)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    path = Path(path)
    cols, fmt = trip_table_columns(path, layout=layout, columns=columns)
    if fmt == "parquet":
        dataset = ds.dataset(path, format=fmt)
    else:  # coordinates as numbers even where the first block of a column is empty
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(column_types={c: pa.float64() for c in cols})
        dataset = ds.dataset(path, format=ds.CsvFileFormat(convert_options=convert))
    for batch in dataset.to_batches(columns=list(cols), batch_size=batch_rows):
        o_lon, o_lat, d_lon, d_lat = (_as_float(batch.column(name)) for name in cols)
        located = np.isfinite(o_lon) & np.isfinite(o_lat) & np.isfinite(d_lon) & np.isfinite(d_lat)
        located &= ~((o_lon == 0) & (o_lat == 0)) & ~((d_lon == 0) & (d_lat == 0))  # taxi tables' "unknown"
        yield TripChunk(o_lon[located], o_lat[located], d_lon[located], d_lat[located], int((~located).sum()))


def _as_float(column) -> np.ndarray:
    """A coordinate column as float64 with NaN for missing or unreadable values."""
    import pyarrow as pa

    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        return column.to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)
