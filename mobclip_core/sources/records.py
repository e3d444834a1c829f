"""Streaming readers for activity records and vector layers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..exceptions import InvalidInputError
from ..io import reading


def iter_records(
    path: str | Path, *, columns: list[str] | None = None, batch_rows: int = 1_000_000
) -> Iterator[pd.DataFrame]:
    """Yield DataFrame chunks of a Parquet file/directory or CSV file without loading it whole."""
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"records file {path} does not exist")
    fmt = "csv" if path.suffix.lower() in (".csv", ".txt") or path.name.endswith(".csv.gz") else "parquet"
    fix = _separator_fix(path) if fmt == "csv" else None
    with reading(path, "activity records", fix=fix):  # empty, truncated or malformed files: one clear message
        dataset = ds.dataset(path, format=fmt)
        names = dataset.schema.names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InvalidInputError(f"{path} has duplicate column names {duplicated}: rename them so each is unique")
        if columns:
            missing = set(columns) - set(names)
            if missing:
                raise InvalidInputError(f"{path} lacks columns {sorted(missing)}; it has {names}")
        for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
            yield batch.to_pandas()


def read_layer(path: str | Path, layer: str | None = None):
    """Read a vector layer (GeoPackage, GeoJSON, Shapefile, GeoParquet) as a GeoDataFrame.

    A file with several layers and none named is refused with their names: reading the first would silently use
    whichever layer GDAL lists first. Tables without geometry (QGIS's ``layer_styles``) do not count.
    """
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"layer {path} does not exist")
    if path.suffix.lower() == ".parquet":
        return gpd.read_parquet(path)
    if layer is None:
        layer = _only_layer(path)
    return gpd.read_file(path, layer=layer)


def _only_layer(path: Path) -> str | None:
    """The file's one layer with geometry (with none: its one table besides QGIS's layer_styles; None: let GDAL
    open the file as it is); several are an error naming them."""
    import pyogrio

    try:
        listed = pyogrio.list_layers(path)
    except Exception:  # not a format GDAL lists layers of: reading reports the problem
        return None
    spatial = [str(name) for name, geometry in listed if geometry is not None]
    # without any geometry layer, the tables other than QGIS's saved styles
    layers = spatial or [str(name) for name, _ in listed if str(name).lower() != "layer_styles"]
    if len(layers) > 1:
        raise InvalidInputError(
            f"{path.name} holds {len(layers)} layers ({', '.join(layers)}) and MobCLIP reads one: save the layer "
            "to use to a file of its own (QGIS: right-click the layer > Export > Save Features As)"
        )
    return layers[0] if layers else None


def _separator_fix(path: Path) -> str | None:
    """The fix for a CSV whose header is separated by semicolons or tabs (Arrow reads commas only), else None."""
    import gzip

    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return None
    if "," not in header and (";" in header or "\t" in header):
        return "The file looks semicolon- or tab-separated; save it as a comma-separated CSV"
    return None
