"""The weekly co-presence graph of MobCLIP from activity records (check-ins, GPS fixes, payments)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...constants import SECONDS_PER_WEEK, WEEK_EPOCH_SHIFT_SECONDS
from ...exceptions import InvalidInputError
from ...grid import points_to_cells, strings_to_cells, validate_cells, validate_lonlat, validate_resolution
from .graph import MobilityGraph

# numbers above this are not epoch seconds of any plausible date (1e11 s is the year 5138): milliseconds,
# microseconds or nanoseconds, told apart by their size as pandas and Arrow readers do not
_EPOCH_UNITS = ((1e11, 1), (1e14, 1_000), (1e17, 1_000_000), (np.inf, 1_000_000_000))
# a date written day and month first, in either order (03/04/2020, 3.4.20): which is the day cannot be told
_DAY_MONTH_FIRST = re.compile(r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")


def to_week(timestamps) -> np.ndarray:
    """Week number (Monday-based) of timestamps given as datetimes, ISO 8601 strings or epoch seconds.

    Epoch numbers too large for seconds are read as milliseconds, microseconds or nanoseconds (what exports from
    JavaScript, Java or Spark hold). Strings must put the year first: "03/04/2020" is the 3rd of April to some and
    the 4th of March to others, and a guess would move records between weeks without a word.
    """
    ts = np.asarray(timestamps)
    if ts.dtype.kind in "iuf":
        if ts.dtype.kind == "f" and not np.isfinite(ts).all():
            raise InvalidInputError("timestamps contain NaN; drop those records first")
        largest = float(np.abs(ts).max()) if ts.size else 0.0
        per_second = next(unit for limit, unit in _EPOCH_UNITS if largest < limit)
        seconds = ts.astype(np.int64) // per_second if ts.dtype.kind != "f" else (ts / per_second).astype(np.int64)
    else:
        if ts.dtype.kind != "M":
            _refuse_day_month_strings(ts)
        try:
            dt = pd.to_datetime(ts, utc=True) if ts.dtype.kind != "M" else ts.astype("datetime64[ns]")
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"cannot read timestamps such as {str(ts[0])!r}: give ISO 8601 strings (2020-04-03 08:00), "
                "datetimes or epoch seconds"
            ) from exc
        ns = np.asarray(dt, dtype="datetime64[ns]")
        if np.isnat(ns).any():
            raise InvalidInputError("timestamps contain missing values; drop those records first")
        seconds = ns.view(np.int64) // 1_000_000_000
    from ._kernels import week_numbers

    return week_numbers(np.ascontiguousarray(seconds, dtype=np.int64), WEEK_EPOCH_SHIFT_SECONDS, SECONDS_PER_WEEK)


def _refuse_day_month_strings(ts: np.ndarray) -> None:
    """Refuse date strings that start with day and month (in either order): their reading is a guess."""
    sample = ts[: min(ts.size, 1000)]
    for value in sample:
        if isinstance(value, str) and _DAY_MONTH_FIRST.match(value):
            raise InvalidInputError(
                f"timestamps such as {value!r} put day and month first, and which is which cannot be told (3/4 is "
                "the 3rd of April or the 4th of March): convert them to ISO 8601 (year first, 2020-04-03 08:00) "
                "or to epoch seconds"
            )


def missing_columns_message(missing, columns) -> str:
    """What records lacking ``missing`` columns should say: the columns they have, how to name the right ones, and
    a semicolon- or tab-separated file read as one column."""
    columns = [str(c) for c in columns]
    message = f"records lack columns {sorted(missing)}; they have {columns[:12]}"
    if len(columns) <= 2 and any(sep in c for c in columns for sep in (";", "\t")):
        return message + ": the file looks semicolon- or tab-separated; save it as a comma-separated CSV"
    return message + (
        ": name the right ones (--person/--time/--lon/--lat/--cell, or [mobility] person/time/lon/lat/cell)"
    )


def _person_keys(person) -> np.ndarray:
    """Integer person ids as they are (int64 or uint64); anything else hashed to ``uint64``."""
    arr = np.asarray(person)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "u":
        return arr.astype(np.uint64, copy=False)
    return pd.util.hash_array(arr.astype(object), categorize=False)


_REPEATS_WORTH_HASHING = 0.8  # distinct coordinate pairs / records below which add_points dedupes them
_RECHECK_REPEATS_EVERY = 8  # chunks


class CopresenceGraphBuilder:
    """Streams activity records into the weekly co-presence graph of MobCLIP.

    A person active in cells i and j in the same week adds 1 to the undirected edge (i, j); edges are summed over
    persons and weeks. Records may come in any order and in any number of chunks. Records are kept as compact
    (person, week, cell id) triples and, beyond ``memory_budget_mb``, spilled to disk partitioned by person, so
    memory is bounded by the budget plus the graph, never by the number of records.

    The graph of a set of triples is B^T B with its diagonal removed, where B is the binary (person-week x cell)
    incidence matrix; compiled kernels (``_kernels``) build its upper triangle with counting sorts and a
    parallel row-wise product, with no Python loop over groups and no global sort.
    """

    def __init__(
        self,
        resolution: int,
        *,
        memory_budget_mb: float = 512.0,
        n_partitions: int = 16,
        spill_dir: str | Path | None = None,
    ) -> None:
        from ._kernels import CellIndex

        self.resolution = validate_resolution(resolution)
        self._budget_bytes = int(memory_budget_mb * 2**20)
        self._budget_rows = max(1, self._budget_bytes // 16)
        self._n_partitions = n_partitions
        self._spill_root = spill_dir
        self._spill: Path | None = None
        self._spilled_chunks = 0
        self._cell_index = CellIndex()
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._places_key: int | None = None
        self._places_ids = np.zeros(0, dtype=np.int32)
        self._point_chunks = 0
        self._repeating_points = True
        self.records_seen = 0

    # -- input -----------------------------------------------------------------------------------------
    def add_points(self, person, timestamp, lon, lat) -> None:
        """Add records located by WGS84 coordinates.

        The H3 step runs once per distinct coordinate pair of the chunk: records at the same venue, stop or
        place centroid are located once.
        """
        from ._kernels import unique_coordinates

        lon, lat = validate_lonlat(lon, lat, what="records")
        keys = self._keys(person, timestamp, lon.size)
        self._point_chunks += 1
        if self._repeating_points or self._point_chunks % _RECHECK_REPEATS_EVERY == 1:
            codes, first = unique_coordinates(lon, lat)
            # GPS fixes rarely repeat: then hashing costs more than it saves, so skip it for the next chunks
            self._repeating_points = first.size < _REPEATS_WORTH_HASHING * lon.size
            ids = self._cell_index.ids(points_to_cells(lon[first], lat[first], self.resolution))[codes]
        else:
            ids = self._cell_index.ids(points_to_cells(lon, lat, self.resolution))
        self._append(keys, ids)

    def add_places(self, person, timestamp, place, places: pd.DataFrame) -> None:
        """Add records located by a place id; ``places`` maps place id (index) to lon/lat columns.

        The H3 step runs once per distinct place of the table (cached across chunks), not once per record.
        """
        if not {"lon", "lat"} <= set(places.columns):
            raise InvalidInputError("places table needs 'lon' and 'lat' columns indexed by place id")
        place = np.asarray(place)
        keys = self._keys(person, timestamp, place.size)
        if self._places_key != id(places):
            cells = points_to_cells(places["lon"].to_numpy(), places["lat"].to_numpy(), self.resolution)
            self._places_ids = self._cell_index.ids(cells)
            self._places_key = id(places)
        if isinstance(places.index, pd.RangeIndex) and place.dtype.kind in "iu":
            pos = place.astype(np.int64) - places.index.start
            pos[(pos < 0) | (pos >= len(places))] = -1
        else:
            codes, uniq = pd.factorize(place, sort=False)
            pos = places.index.get_indexer(uniq)[codes]
        if (pos < 0).any():
            missing = place[pos < 0][:5]
            raise InvalidInputError(
                f"{int((pos < 0).sum())} records name places not in the places table, e.g. {missing}"
            )
        self._append(keys, self._places_ids[pos])

    def add_cells(self, person, timestamp, cells) -> None:
        """Add records already located by H3 cell (``uint64`` or hex strings)."""
        cells = np.asarray(cells)
        if cells.dtype.kind not in "ui":
            cells = strings_to_cells(cells)
        keys = self._keys(person, timestamp, cells.size)
        known = len(self._cell_index)
        ids = self._cell_index.ids(cells)
        new_cells = self._cell_index.cells_since(known)  # checked once each, not once per record
        validate_cells(new_cells)
        res = (new_cells >> np.uint64(52)) & np.uint64(0xF)
        if (res != self.resolution).any():
            raise InvalidInputError(
                f"records are located by H3 cells of resolution {int(res[res != self.resolution][0])}, but this graph "
                f"is built at resolution {self.resolution}: convert them with h3.cell_to_parent, or build at theirs"
            )
        self._append(keys, ids)

    def _keys(self, person, timestamp, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Person keys and week numbers of ``n`` records, checked before anything is added."""
        person_key = _person_keys(person)
        week = to_week(timestamp)
        if not (len(person_key) == len(week) == n):
            raise InvalidInputError("person, timestamp and location columns must have the same length")
        return person_key, week

    def _append(self, keys: tuple[np.ndarray, np.ndarray], cell_ids: np.ndarray) -> None:
        if cell_ids.size == 0:
            return
        self.records_seen += cell_ids.size
        self._buffer.append((*keys, cell_ids))
        self._buffered += cell_ids.size
        if self._buffered > self._budget_rows:
            self._spill_buffer()

    # -- internals -------------------------------------------------------------------------------------
    def _spill_buffer(self) -> None:
        """Write the buffered chunks to disk, split by person into ``n_partitions`` files (one chunk at a time)."""
        from ._kernels import partition_by_person

        if not self._buffer:
            return
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="mobclip-spill-", dir=self._spill_root))
        pieces: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(self._n_partitions)]
        while self._buffer:
            p, w, c = self._buffer.pop(0)
            order, bounds = partition_by_person(p, p.dtype.type(self._n_partitions))
            for k in range(self._n_partitions):
                sel = order[bounds[k] : bounds[k + 1]]
                if sel.size:
                    pieces[k].append((p[sel], w[sel], c[sel]))
        self._buffered = 0
        for k, part in enumerate(pieces):
            if part:
                np.savez(
                    self._spill / f"part{k:03d}_{self._spilled_chunks:06d}.npz",
                    p=np.concatenate([x[0] for x in part]),
                    w=np.concatenate([x[1] for x in part]),
                    c=np.concatenate([x[2] for x in part]),
                )
            part.clear()
        self._spilled_chunks += 1

    def _upper(self, chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rank: np.ndarray):
        """Strict upper triangle of the co-presence matrix of buffered (person, week, cell id) chunks."""
        from ._kernels import upper_from_records

        if len({c[0].dtype for c in chunks}) > 1:  # int64 and uint64 person ids mixed across chunks
            chunks = [(p.astype(np.uint64), w, c) for p, w, c in chunks]
        n_records = sum(c[2].size for c in chunks)
        pmin = min(int(p.min()) for p, _, _ in chunks)
        pmax = max(int(p.max()) for p, _, _ in chunks)
        wmin = min(int(w.min()) for _, w, _ in chunks)
        span = max(int(w.max()) for _, w, _ in chunks) - wmin + 1
        max_pairs = max(1 << 20, self._budget_bytes // 12)
        chunks = [(p, w, rank[c]) for p, w, c in chunks]
        n_keys = (pmax - pmin + 1) * span
        if n_keys <= n_records + 1024:  # dense person-week keys: counting sort as they are
            return upper_from_records(chunks, pmin, wmin, span, n_keys, len(rank), max_pairs=max_pairs)
        # sparse or hashed person ids: number the person-weeks first
        p = np.concatenate([c[0] for c in chunks])
        w = np.concatenate([c[1] for c in chunks])
        pcode, persons = pd.factorize(p, sort=False)
        keys = pcode * span + (w - wmin)
        if len(persons) * span > n_records + 1024:
            keys, _ = pd.factorize(keys, sort=False)
        del p, w, pcode
        c = np.concatenate([c[2] for c in chunks])
        n_keys = int(keys.max()) + 1
        return upper_from_records(
            [(keys, np.zeros(keys.size, np.int32), c)], 0, 0, 1, n_keys, len(rank), max_pairs=max_pairs
        )

    def finish(self) -> MobilityGraph:
        """Build the graph from everything added; cells are sorted by id."""
        from ._kernels import mirror_upper

        n = len(self._cell_index)
        if n == 0:
            raise InvalidInputError("no records were added: the mobility graph would be empty")
        cells = self._cell_index.cells
        rank = np.empty(n, dtype=np.int32)
        rank[np.argsort(cells)] = np.arange(n, dtype=np.int32)  # first-seen order -> sorted order
        upper = None
        try:
            if self._spill is None:
                upper = self._upper(self._buffer, rank) if self._buffer else None
                self._buffer, self._buffered = [], 0
            else:
                self._spill_buffer()
                for k in range(self._n_partitions):
                    files = sorted(self._spill.glob(f"part{k:03d}_*.npz"))
                    if not files:
                        continue
                    chunks = [(a["p"], a["w"], a["c"]) for a in map(np.load, files)]
                    part = self._upper(chunks, rank).to_csr()
                    upper = part if upper is None else upper + part
        finally:
            if self._spill is not None:
                shutil.rmtree(self._spill, ignore_errors=True)
                self._spill = None
        adjacency = mirror_upper(upper) if upper is not None else sp.csr_matrix((n, n))
        return MobilityGraph(np.sort(cells), adjacency)


def build_copresence_graph(
    records,
    resolution: int,
    *,
    person: str = "person_id",
    time: str = "timestamp",
    cell: str | None = None,
    lon: str = "lon",
    lat: str = "lat",
    place: str | None = None,
    places: pd.DataFrame | None = None,
    memory_budget_mb: float = 512.0,
    progress=None,
) -> MobilityGraph:
    """Co-presence graph from a DataFrame or an iterable of DataFrame chunks (see ``sources.iter_records``).

    Each record is located by ``cell`` (H3 id), by ``place`` (an id looked up in ``places``), or by ``lon``/``lat``.
    """
    builder = CopresenceGraphBuilder(resolution, memory_budget_mb=memory_budget_mb)
    chunks = [records] if isinstance(records, pd.DataFrame) else records
    for chunk in chunks:
        missing = {person, time} - set(chunk.columns)
        if missing:
            raise InvalidInputError(missing_columns_message(missing, chunk.columns))
        if cell is not None:
            builder.add_cells(chunk[person].to_numpy(), chunk[time].to_numpy(), chunk[cell].to_numpy())
        elif place is not None:
            if places is None:
                raise InvalidInputError("records located by place id need a places table (place id -> lon, lat)")
            builder.add_places(chunk[person].to_numpy(), chunk[time].to_numpy(), chunk[place].to_numpy(), places)
        else:
            if not {lon, lat} <= set(chunk.columns):
                raise InvalidInputError(
                    f"records need a cell column, a place column or '{lon}'/'{lat}' columns; "
                    f"they have {list(chunk.columns)}"
                )
            builder.add_points(
                chunk[person].to_numpy(), chunk[time].to_numpy(), chunk[lon].to_numpy(), chunk[lat].to_numpy()
            )
        if progress is not None:
            progress(builder.records_seen)
    return builder.finish()
