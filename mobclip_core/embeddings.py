"""Embedding tables on maps: read them, look cells and points up in them, average them over polygons.

An embedding table is indexed by hex ``h3_cell`` (one resolution) with float columns ``emb_0, emb_1, ...``. These
functions are what the QGIS algorithms call, so they run inside QGIS: they need numpy, pandas, pyarrow and h3-py
only. A GeoParquet file is read with pyarrow and a GeoPackage with sqlite3 (a GeoPackage is an SQLite database), so
reading never loads a second GDAL into QGIS.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import EMBEDDING_PREFIX, REGION_INDEX
from .exceptions import InvalidInputError
from .grid import cell_resolution, lookup_rows, parent_cells, points_to_cells, strings_to_cells
from .grid.polygons import PreparedPolygons, polygons_to_cells, prepare_polygons, representative_points


def embedding_columns(columns, prefix: str = EMBEDDING_PREFIX) -> list[str]:
    """The ``emb_<i>`` columns among ``columns``, in numeric order."""
    cols = [c for c in columns if str(c).startswith(prefix) and str(c)[len(prefix) :].isdigit()]
    if not cols:
        raise InvalidInputError(
            f"no embedding columns named {prefix}0, {prefix}1, ... among {list(columns)[:8]}: is this an embedding "
            "table written by mobclip (train or export)?"
        )
    return sorted(cols, key=lambda c: int(str(c)[len(prefix) :]))


def embedding_frame(cell_ids, values, columns, *, source: str = "the embedding table") -> pd.DataFrame:
    """A validated embedding table: unique valid cells of one resolution, float32 values (NaN rows allowed)."""
    ids = pd.Series(np.asarray(cell_ids, dtype=object))
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    if missing.all():
        raise InvalidInputError(f"{source} has no rows with an h3_cell id")
    values = np.asarray(values, dtype=np.float32)[~missing.to_numpy()]
    ids = ids[~missing].astype(str).to_numpy()
    try:
        cells = strings_to_cells(ids)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}") from exc
    resolutions = np.unique(cell_resolution(cells))
    if resolutions.size != 1:
        raise InvalidInputError(f"{source} mixes H3 resolutions {resolutions.tolist()}: keep one resolution per table")
    index = pd.Index(ids, name=REGION_INDEX)
    if index.has_duplicates:
        raise InvalidInputError(f"{source} lists cell {index[index.duplicated()][0]} more than once")
    return pd.DataFrame(values, index=index, columns=list(columns))


def table_resolution(table: pd.DataFrame) -> int:
    """The H3 resolution of a table built by ``embedding_frame`` (or ``read_embedding_table``)."""
    return int(cell_resolution(strings_to_cells(table.index[:1].to_numpy()))[0])


def read_embedding_table(path: str | Path) -> pd.DataFrame:
    """Read an embedding table from GeoParquet (``.parquet``) or GeoPackage (``.gpkg``), with clear errors for
    missing, truncated or foreign files. Geometry and other columns are ignored."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"embedding file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        ids, values, cols = _read_parquet(path)
    elif suffix == ".gpkg":
        ids, values, cols = _read_geopackage(path)
    else:
        raise InvalidInputError(f"embedding file {path}: unknown type {suffix!r}; use a .parquet or .gpkg file")
    return embedding_frame(ids, values, cols, source=f"embedding file {path.name}")


def _read_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        cols = embedding_columns(names)
        if REGION_INDEX not in names:
            raise InvalidInputError(f"{path} has no '{REGION_INDEX}' column: not an embedding table")
        table = pq.read_table(path, columns=[REGION_INDEX, *cols])
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(
            f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]}): it may be truncated or still being "
            "written; export the embeddings again (mobclip export)"
        ) from exc
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols]).astype(np.float32)
    return table.column(REGION_INDEX).to_pylist(), values, cols


def _read_geopackage(path: Path):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InvalidInputError(f"cannot open {path} ({exc})") from exc
    try:
        layers = [r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")]
        candidates = [t for t in layers if REGION_INDEX in _columns(con, t)]
        if not candidates:
            raise InvalidInputError(f"{path}: no layer has an '{REGION_INDEX}' column (layers: {layers})")
        layer = "embeddings" if "embeddings" in candidates else candidates[0]
        cols = embedding_columns(_columns(con, layer))
        select = ", ".join(_quote(c) for c in [REGION_INDEX, *cols])
        rows = con.execute(f"SELECT {select} FROM {_quote(layer)}").fetchall()  # noqa: S608 - quoted identifiers
    except sqlite3.DatabaseError as exc:
        raise InvalidInputError(
            f"{path} is not a readable GeoPackage ({exc}): it may be truncated or still being written; export the "
            "embeddings again (mobclip export)"
        ) from exc
    finally:
        con.close()
    if not rows:
        raise InvalidInputError(f"the embedding table {path} has no rows")
    ids = [r[0] for r in rows]
    values = np.array([r[1:] for r in rows], dtype=np.float64)  # NULL -> nan
    return ids, values, cols


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA table_info({_quote(table)})")]


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


# --- cells and points in a table ----------------------------------------------------------------------------------
def embeddings_for_cells(table: pd.DataFrame, cells: np.ndarray) -> np.ndarray:
    """Rows for cells (``uint64``) at the table's resolution or finer (finer cells take their parent's row).

    NaN where the table has no such cell; a cell of a coarser resolution is an error.
    """
    cells = np.asarray(cells, dtype=np.uint64)
    res = table_resolution(table)
    if cells.size:
        coarse = cell_resolution(cells) < res
        if coarse.any():
            raise InvalidInputError(
                f"{int(coarse.sum())} cell ids are coarser than the table's resolution {res} (e.g. "
                f"{int(cells[np.argmax(coarse)]):x}): use cells of resolution {res} or finer"
            )
        cells = parent_cells(cells, res)
    return lookup_rows(table, cells)


def embeddings_at_points(table: pd.DataFrame, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Row of the cell holding each point; NaN rows for missing (NaN) points and points outside the table."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    out = np.full((lon.size, table.shape[1]), np.nan)
    ok = np.isfinite(lon) & np.isfinite(lat)
    out[ok] = lookup_rows(table, points_to_cells(lon[ok], lat[ok], table_resolution(table)))
    return out


@dataclass
class PolygonMeans:
    """Mean features per polygon over the cells whose centre is inside (NaN where none has features)."""

    values: np.ndarray  # (n_polygons, n_features)
    cell_count: np.ndarray  # cells that contributed (their features are all finite)
    from_point: np.ndarray  # True where the polygon holds no cell centre and took its representative point's cell


def polygon_means(
    geometries: PreparedPolygons | object,
    resolution: int,
    features_for_cells: Callable[[np.ndarray], np.ndarray],
    on_progress: Callable[[float], None] | None = None,
) -> PolygonMeans:
    """Average per-cell features over polygons: the paper's admin-level protocol, and QGIS's aggregation.

    Cells are assigned by centre containment (adjacent polygons never share a cell); a polygon too small to hold a
    cell centre takes the cell of its representative point. Cells whose features have a NaN are left out (a few
    missing rows never blank a whole polygon). ``on_progress(fraction)`` follows the filling of the polygons, the
    long part (it may raise to cancel).
    """
    prepared = geometries if isinstance(geometries, PreparedPolygons) else prepare_polygons(geometries)
    pairs = polygons_to_cells(prepared, resolution, fallback="point", on_progress=on_progress)
    cells, inverse = np.unique(pairs[REGION_INDEX].to_numpy(np.uint64), return_inverse=True)
    feats = np.asarray(features_for_cells(cells), dtype=np.float64)
    ok_cell = np.isfinite(feats).all(axis=1)
    keep = ok_cell[inverse]
    polygon = pairs["polygon"].to_numpy()[keep]
    rows = inverse[keep]
    order = np.argsort(polygon, kind="stable")
    polygon, rows = polygon[order], rows[order]
    n = prepared.size
    counts = np.bincount(polygon, minlength=n)
    values = np.full((n, feats.shape[1]), np.nan)
    if polygon.size:
        starts = np.flatnonzero(np.r_[True, polygon[1:] != polygon[:-1]])
        sums = np.add.reduceat(feats[rows], starts, axis=0)
        owners = polygon[starts]
        values[owners] = sums / counts[owners, None]
    from_point = np.zeros(n, dtype=bool)
    fp = pairs["from_point"].to_numpy()[keep][order]
    from_point[polygon[fp]] = True
    return PolygonMeans(values, counts, from_point)


# --- what the QGIS algorithms call ----------------------------------------------------------------------------------
def attach_to_geometries(table: pd.DataFrame, geometries) -> np.ndarray:
    """Row of the cell holding each point, or each polygon's representative point; NaN where there is none."""
    lon, lat = representative_points(geometries)
    return embeddings_at_points(table, lon, lat)


def attach_to_cell_ids(table: pd.DataFrame, cell_ids) -> np.ndarray:
    """Rows for hex cell ids; a NULL or empty id gives a NaN row (not an error)."""
    ids = pd.Series(list(cell_ids), dtype=object)
    present = ~(ids.isna() | (ids.astype(str).str.strip() == ""))
    out = np.full((len(ids), table.shape[1]), np.nan)
    if present.any():
        try:
            cells = strings_to_cells(ids[present].astype(str).str.strip().to_numpy())
        except InvalidInputError as exc:
            raise InvalidInputError(f"the cell id field holds a value that is not an H3 cell id: {exc}") from exc
        out[present.to_numpy()] = embeddings_for_cells(table, cells)
    return out


def aggregate_over_polygons(
    table: pd.DataFrame, geometries, on_progress: Callable[[float], None] | None = None
) -> PolygonMeans:
    """Mean embedding over each polygon (see ``polygon_means``), at the table's resolution."""
    return polygon_means(geometries, table_resolution(table), lambda cells: lookup_rows(table, cells), on_progress)
