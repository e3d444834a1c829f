"""Building the mobility graph: weekly co-presence from activity records, or flows from OD tables."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import REGION_INDEX, SECONDS_PER_WEEK, WEEK_EPOCH_SHIFT_SECONDS
from ..exceptions import InvalidInputError
from ..grid import points_to_cells, polygons_to_cells, strings_to_cells, to_wgs84, validate_resolution
from .graph import MobilityGraph


def to_week(timestamps) -> np.ndarray:
    """Week number (Monday-based) of timestamps given as datetimes, strings or epoch seconds."""
    ts = np.asarray(timestamps)
    if ts.dtype.kind in "iu":
        seconds = ts.astype(np.int64)
    elif ts.dtype.kind == "f":
        if not np.isfinite(ts).all():
            raise InvalidInputError("timestamps contain NaN; drop those records first")
        seconds = ts.astype(np.int64)
    else:
        try:
            dt = pd.to_datetime(ts, utc=True) if ts.dtype.kind != "M" else ts.astype("datetime64[ns]")
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"cannot read timestamps ({exc}); give ISO strings, datetimes or epoch seconds"
            ) from exc
        ns = np.asarray(dt, dtype="datetime64[ns]")
        if np.isnat(ns).any():
            raise InvalidInputError("timestamps contain missing values; drop those records first")
        seconds = ns.view(np.int64) // 1_000_000_000
    return (seconds + WEEK_EPOCH_SHIFT_SECONDS) // SECONDS_PER_WEEK


def _person_keys(person) -> np.ndarray:
    arr = np.asarray(person)
    if arr.dtype.kind in "iu":
        return arr.astype(np.uint64)
    return pd.util.hash_array(arr.astype(object), categorize=False)


class CopresenceGraphBuilder:
    """Streams activity records into the weekly co-presence graph of MobCLIP.

    A person active in cells i and j in the same week adds 1 to the undirected edge (i, j); edges are summed over
    persons and weeks. Records may come in any order and in any number of chunks. Distinct (person, week, cell)
    triples are buffered and, beyond ``memory_budget_mb``, spilled to disk partitioned by person, so memory is
    bounded by the budget plus the graph, never by the number of records.

    The graph of a set of triples is B^T B with its diagonal removed, where B is the binary (person-week x cell)
    incidence matrix: one sparse product, no Python loop over groups.
    """

    def __init__(
        self,
        resolution: int,
        *,
        memory_budget_mb: float = 512.0,
        n_partitions: int = 16,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.resolution = validate_resolution(resolution)
        self._budget_rows = max(1, int(memory_budget_mb * 2**20 / 24))
        self._n_partitions = n_partitions
        self._spill_root = spill_dir
        self._spill: Path | None = None
        self._spilled_chunks = 0
        self._cells: list[np.ndarray] = []  # insertion order of distinct cells
        self._cell_index = pd.Index(np.zeros(0, dtype=np.uint64))
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._places_key: int | None = None
        self._places_cells = np.zeros(0, dtype=np.uint64)
        self.records_seen = 0

    # -- input -----------------------------------------------------------------------------------------
    def add_points(self, person, timestamp, lon, lat) -> None:
        """Add records located by WGS84 coordinates."""
        self.add_cells(person, timestamp, points_to_cells(lon, lat, self.resolution))

    def add_places(self, person, timestamp, place, places: pd.DataFrame) -> None:
        """Add records located by a place id; ``places`` maps place id (index) to lon/lat columns.

        The H3 step runs once per distinct place of the table (cached across chunks), not once per record.
        """
        if not {"lon", "lat"} <= set(places.columns):
            raise InvalidInputError("places table needs 'lon' and 'lat' columns indexed by place id")
        if self._places_key != id(places):
            self._places_cells = points_to_cells(places["lon"].to_numpy(), places["lat"].to_numpy(), self.resolution)
            self._places_key = id(places)
        place = np.asarray(place)
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
        self.add_cells(person, timestamp, self._places_cells[pos])

    def add_cells(self, person, timestamp, cells) -> None:
        """Add records already located by H3 cell (``uint64`` or hex strings)."""
        cells = np.asarray(cells)
        if cells.dtype.kind not in "ui":
            cells = strings_to_cells(cells)
        cells = cells.astype(np.uint64)
        person_key = _person_keys(person)
        week = to_week(timestamp)
        if not (len(person_key) == len(week) == len(cells)):
            raise InvalidInputError("person, timestamp and location columns must have the same length")
        if cells.size == 0:
            return
        self.records_seen += cells.size
        codes, uniques = pd.factorize(cells, sort=False)
        known = self._cell_index.get_indexer(uniques)
        new = known < 0
        if new.any():
            start = len(self._cell_index)
            known[new] = np.arange(start, start + int(new.sum()))
            self._cell_index = self._cell_index.append(pd.Index(uniques[new]))
        cell_idx = known[codes].astype(np.int32)
        self._buffer.append((person_key, week.astype(np.int32), cell_idx))
        self._buffered += cells.size
        if self._buffered > self._budget_rows:
            self._spill_buffer()

    # -- internals -------------------------------------------------------------------------------------
    def _take_buffer(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.concatenate([b[0] for b in self._buffer])
        w = np.concatenate([b[1] for b in self._buffer])
        c = np.concatenate([b[2] for b in self._buffer])
        self._buffer, self._buffered = [], 0
        return p, w, c

    def _spill_buffer(self) -> None:
        if not self._buffer:
            return
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="mobclip-spill-", dir=self._spill_root))
        p, w, c = self._take_buffer()
        part = (p % np.uint64(self._n_partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self._n_partitions + 1))
        for k in range(self._n_partitions):
            sel = order[bounds[k] : bounds[k + 1]]
            if sel.size:
                np.savez(self._spill / f"part{k:03d}_{self._spilled_chunks:06d}.npz", p=p[sel], w=w[sel], c=c[sel])
        self._spilled_chunks += 1

    @staticmethod
    def _copresence(p: np.ndarray, w: np.ndarray, c: np.ndarray, n_cells: int) -> sp.csr_matrix:
        """B^T B without its diagonal, B the binary (person-week x cell) incidence of the triples."""
        pmin, pmax = int(p.min()), int(p.max())
        if pmax - pmin < 4 * p.size + 1024:  # small-range integer ids need no hashing
            pcode = (p - np.uint64(pmin)).astype(np.int64)
        else:
            pcode, _ = pd.factorize(p, sort=False)
        wmin = int(w.min())
        span = int(w.max()) - wmin + 1
        rows = pcode.astype(np.int64) * span + (w - wmin)
        n_rows = int(pcode.max() + 1) * span
        if n_rows > 4 * rows.size + 1024:  # sparse person-weeks: compact the row ids
            rows, _ = pd.factorize(rows, sort=False)
            n_rows = int(rows.max()) + 1
        b = sp.csr_matrix((np.ones(c.size, dtype=np.float32), (rows, c)), shape=(n_rows, n_cells))
        b.data[:] = 1.0  # a person-week counts once per cell, however many records
        return _gram_without_diagonal(b)

    def finish(self) -> MobilityGraph:
        """Build the graph from everything added; cells are sorted by id."""
        n = len(self._cell_index)
        if n == 0:
            raise InvalidInputError("no records were added: the mobility graph would be empty")
        cells = self._cell_index.to_numpy().astype(np.uint64)
        rank = np.empty(n, dtype=np.int32)
        rank[np.argsort(cells)] = np.arange(n, dtype=np.int32)  # insertion order -> sorted order
        acc = None
        try:
            if self._spill is None:
                p, w, c = self._take_buffer()
                acc = self._copresence(p, w, rank[c], n)
            else:
                self._spill_buffer()
                for k in range(self._n_partitions):
                    files = sorted(self._spill.glob(f"part{k:03d}_*.npz"))
                    if not files:
                        continue
                    arrays = [np.load(f) for f in files]
                    p = np.concatenate([a["p"] for a in arrays])
                    w = np.concatenate([a["w"] for a in arrays])
                    c = np.concatenate([a["c"] for a in arrays])
                    part = self._copresence(p, w, rank[c], n)
                    acc = part if acc is None else acc + part
        finally:
            if self._spill is not None:
                shutil.rmtree(self._spill, ignore_errors=True)
                self._spill = None
        return MobilityGraph(np.sort(cells), acc if acc is not None else sp.csr_matrix((n, n)))


def _gram_without_diagonal(b: sp.csr_matrix) -> sp.csr_matrix:
    """B^T B with a zero diagonal.

    Large products are split by output rows (cells) over two threads (scipy's sparse product releases the GIL);
    the halves are stacked, not added, so no merge or re-sort is needed.
    """
    bt = b.T.tocsr()
    if b.nnz < 500_000:
        co = (bt @ b).tocsr()
    else:
        from concurrent.futures import ThreadPoolExecutor

        nnz_by_row = np.cumsum(np.diff(bt.indptr).astype(np.float64) ** 2)  # rough cost of each output row
        half = int(np.searchsorted(nnz_by_row, nnz_by_row[-1] / 2)) + 1
        with ThreadPoolExecutor(2) as pool:
            top, bottom = pool.map(lambda x: (x @ b).tocsr(), [bt[:half], bt[half:]])
        co = sp.vstack([top, bottom], format="csr")
    co.setdiag(0.0)  # every cell co-occurs with itself: the diagonal exists, so no structure change
    co.eliminate_zeros()
    return co


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
            raise InvalidInputError(f"records lack columns {sorted(missing)}; they have {list(chunk.columns)}")
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


def zones_to_cells(zones, resolution: int, *, zone_id: str, cell_weights: pd.Series | None = None) -> pd.DataFrame:
    """Spread zones (polygons) onto H3 cells: rows (zone, h3_cell, weight) with weights summing to 1 per zone.

    Cells are assigned by centre containment, so every cell belongs to one zone. Weights are proportional to
    cell area, or to ``cell_weights`` (e.g. population per cell from ``raster_to_cells``) where a zone has any.
    A zone too small to contain a cell centre gets the cell holding its representative point.
    """
    zones = to_wgs84(zones, what="zone layer")
    if zone_id not in zones.columns:
        raise InvalidInputError(f"zone layer has no column {zone_id!r}; it has {list(zones.columns)}")
    geoms = zones.geometry.values
    pairs = polygons_to_cells(geoms, resolution)
    covered = np.zeros(len(zones), dtype=bool)
    covered[pairs["polygon"].to_numpy()] = True
    if (~covered).any():
        rep = zones.geometry.iloc[np.flatnonzero(~covered)].representative_point()
        extra = pd.DataFrame(
            {
                "polygon": np.flatnonzero(~covered),
                REGION_INDEX: points_to_cells(rep.x.to_numpy(), rep.y.to_numpy(), resolution),
            }
        )
        pairs = pd.concat([pairs, extra], ignore_index=True)
    from ..grid import cell_area_km2

    pairs["zone"] = zones[zone_id].to_numpy()[pairs["polygon"].to_numpy()]
    pairs["weight"] = cell_area_km2(pairs[REGION_INDEX].to_numpy())
    if cell_weights is not None:
        cw = cell_weights.copy()
        cw.index = strings_to_cells(cw.index.to_numpy())
        w = cw.reindex(pairs[REGION_INDEX].to_numpy()).fillna(0.0).to_numpy()
        zone_total = pd.Series(w).groupby(pairs["zone"].to_numpy()).transform("sum").to_numpy()
        pairs["weight"] = np.where(zone_total > 0, w, pairs["weight"])
    pairs["weight"] /= pairs.groupby("zone")["weight"].transform("sum")
    return pairs[["zone", REGION_INDEX, "weight"]]


def build_od_graph(
    od: pd.DataFrame,
    *,
    origin: str = "origin",
    destination: str = "destination",
    flow: str = "flow",
    zone_cells: pd.DataFrame | None = None,
) -> MobilityGraph:
    """Undirected cell graph from an origin-destination table.

    Origins and destinations are H3 cells, or zone ids spread to cells by ``zone_cells`` (from ``zones_to_cells``):
    flow between zones a and b goes to cell pairs (i, j) in proportion to w_ai * w_bj, i.e. C = W^T F W.
    Directions are summed (A = C + C^T) and flows within one cell are dropped.
    """
    missing = {origin, destination, flow} - set(od.columns)
    if missing:
        raise InvalidInputError(f"OD table lacks columns {sorted(missing)}; it has {list(od.columns)}")
    f = od[flow].to_numpy(dtype=np.float64)
    if (f < 0).any() or not np.isfinite(f).all():
        raise InvalidInputError("OD flows must be finite and non-negative")
    if zone_cells is None:
        o, d = strings_to_cells(od[origin].to_numpy()), strings_to_cells(od[destination].to_numpy())
        cells, inv = np.unique(np.concatenate([o, d]), return_inverse=True)
        n = cells.size
        c = sp.csr_matrix((f, (inv[: o.size], inv[o.size :])), shape=(n, n))
    else:
        zone_ids = zone_cells["zone"].astype(str)  # ids compared as text: 10100 and "10100" are the same zone
        zones = pd.Index(pd.unique(zone_ids))
        cells, cell_inv = np.unique(zone_cells[REGION_INDEX].to_numpy(np.uint64), return_inverse=True)
        w = sp.csr_matrix(
            (zone_cells["weight"].to_numpy(), (zones.get_indexer(zone_ids), cell_inv)), shape=(len(zones), cells.size)
        )
        oi = zones.get_indexer(od[origin].astype(str))
        di = zones.get_indexer(od[destination].astype(str))
        known = (oi >= 0) & (di >= 0)
        if not known.any():
            raise InvalidInputError(
                f"no OD zone id matches the zone layer (OD ids like {list(od[origin].astype(str)[:3])}, zone ids "
                f"like {list(zones[:3])}): check the zone id column, and read CSV ids as text to keep leading zeros"
            )
        fz = sp.csr_matrix((f[known], (oi[known], di[known])), shape=(len(zones), len(zones)))
        c = (w.T @ fz @ w).tocsr()
    a = (c + c.T).tocsr()
    a.setdiag(0.0)
    a.eliminate_zeros()
    if a.nnz == 0:
        raise InvalidInputError("the OD table gives an empty graph (all flows zero or within one cell)")
    return MobilityGraph(cells, a)
