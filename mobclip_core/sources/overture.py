"""Overture Maps places (GeoParquet) -> points of interest with Overture's category taxonomy, streamed.

A places file (or a folder of them, as Overture releases it) is read in record batches of the few columns needed;
with a ``bbox`` the row groups outside it are skipped through Overture's ``bbox`` column statistics, so a country
or the whole release is filtered without loading it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError

_COLUMNS = ("lon", "lat", "name", "category", "confidence", "id")


def _struct_field(column, name: str):
    """A child of a struct column, or None when the struct lacks it (schemas differ between releases)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column is None or not pa.types.is_struct(column.type) or column.type.get_field_index(name) < 0:
        return None
    return pc.struct_field(column, name)


def _names(names, language: str | None) -> np.ndarray:
    """names.common[<language>] where present (a map in Overture releases), else names.primary."""
    import pyarrow as pa
    import pyarrow.compute as pc

    primary = _struct_field(names, "primary")
    out = primary.to_numpy(zero_copy_only=False) if primary is not None else np.full(len(names), None, object)
    common = _struct_field(names, "common")
    if language and common is not None and pa.types.is_map(common.type):
        local = pc.map_lookup(common, pa.scalar(language), "first").to_numpy(zero_copy_only=False)
        out = np.where(pd.isna(local), out, local)
    return np.where(pd.isna(out), "", out).astype(object)


def _categories(batch) -> np.ndarray:
    """categories.primary (Overture's taxonomy, e.g. 'gas_station') as readable text ('gas station')."""
    cats = batch.column("categories") if "categories" in batch.schema.names else None
    primary = _struct_field(cats, "primary")
    if primary is None and "basic_category" in batch.schema.names:  # later releases' coarse level
        primary = batch.column("basic_category")
    if primary is None:
        raise InvalidInputError("Overture places need a 'categories' (primary) or 'basic_category' column")
    values = pd.Series(primary.to_numpy(zero_copy_only=False), dtype=object).fillna("")
    return values.str.replace("_", " ", regex=False).to_numpy(dtype=object)


def _points(batch) -> tuple[np.ndarray, np.ndarray]:
    import shapely

    geoms = shapely.from_wkb(batch.column("geometry").to_numpy(zero_copy_only=False))
    not_points = shapely.get_type_id(geoms) != 0
    if not_points.any():
        geoms[not_points] = shapely.point_on_surface(geoms[not_points])
    return shapely.get_x(geoms), shapely.get_y(geoms)


def iter_overture_places(
    path: str | Path,
    *,
    language: str | None = None,
    bbox: list[float] | None = None,
    min_confidence: float = 0.0,
    batch_rows: int = 200_000,
) -> Iterator[pd.DataFrame]:
    """Yield place chunks (columns lon, lat, name, category, confidence, id) of Overture places GeoParquet."""
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"Overture places {path} do not exist")
    dataset = ds.dataset(path, format="parquet")
    names = set(dataset.schema.names)
    if "geometry" not in names or not ({"categories", "basic_category"} & names):
        raise InvalidInputError(
            f"{path.name} is not Overture places GeoParquet: it needs 'geometry' and 'categories'; it has "
            f"{sorted(names)[:15]}"
        )
    columns = [c for c in ("id", "geometry", "names", "categories", "basic_category", "confidence") if c in names]
    expr = None
    if bbox and "bbox" in names:
        w, s, e, n = bbox
        f = ds.field
        expr = (f("bbox", "xmax") >= w) & (f("bbox", "xmin") <= e) & (f("bbox", "ymax") >= s) & (f("bbox", "ymin") <= n)
    for batch in dataset.to_batches(columns=columns, filter=expr, batch_size=batch_rows):
        if batch.num_rows == 0:
            continue
        lon, lat = _points(batch)
        conf = (
            batch.column("confidence").to_numpy(zero_copy_only=False).astype(np.float64)
            if "confidence" in columns
            else np.ones(batch.num_rows)
        )
        df = pd.DataFrame(
            {
                "lon": lon,
                "lat": lat,
                "name": _names(batch.column("names") if "names" in columns else None, language),
                "category": _categories(batch),
                "confidence": conf,
                "id": batch.column("id").to_numpy(zero_copy_only=False) if "id" in columns else "",
            }
        )
        keep = (
            np.isfinite(df["lon"])
            & np.isfinite(df["lat"])
            & (np.nan_to_num(df["confidence"], nan=1.0) >= min_confidence)
        )
        if bbox:
            w, s, e, n = bbox
            keep &= df["lon"].between(w, e) & df["lat"].between(s, n)
        yield df[keep.to_numpy()].reset_index(drop=True)


def read_overture_places(path: str | Path, **options) -> pd.DataFrame:
    """All places of an Overture file or folder as one table (see ``iter_overture_places``)."""
    chunks = list(iter_overture_places(path, **options))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=list(_COLUMNS))
