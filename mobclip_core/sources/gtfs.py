"""GTFS static feeds -> weekly trips between linked stops (a transit-connectivity proxy for mobility).

A feed (zip or folder) is read with pyarrow: ``stop_times`` in batches of three integer-coded columns, so a
national feed of tens of millions of stop events stays within a few hundred MB. Each trip's calls are ordered by
``stop_sequence``; calls up to ``max_stops_apart`` apart are linked (1: consecutive stops). A link weighs the number
of times the trip runs in one week: its service days in that week (``calendar`` and ``calendar_dates``) times its
departures per day (one, or the departures its ``frequencies`` rows imply).
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import InvalidInputError

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass
class StopLinks:
    """Weekly trips between pairs of stops of one feed, and where the stops are."""

    links: pd.DataFrame  # from_stop, to_stop (stop_id), weekly_trips; one row per ordered pair
    stops: pd.DataFrame  # index stop_id; lon, lat
    week_start: dt.date  # Monday of the week counted
    stop_events: int  # rows of stop_times read


class _Feed:
    """Read access to the text files of a GTFS zip or folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InvalidInputError(f"GTFS feed {self.path} does not exist")
        if self.path.is_dir():
            self._names = {p.name for p in self.path.iterdir()}
            self._zip = None
        else:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile as exc:
                raise InvalidInputError(f"{self.path} is neither a GTFS zip nor a folder of GTFS files") from exc
            # feeds zipped with a top folder: find files by their base name
            self._members = {Path(n).name: n for n in self._zip.namelist() if not n.endswith("/")}
            self._names = set(self._members)

    def has(self, name: str) -> bool:
        return name in self._names

    @contextmanager
    def open(self, name: str):
        if not self.has(name):
            raise InvalidInputError(f"GTFS feed {self.path.name} has no {name}: a GTFS feed needs it")
        if self._zip is None:
            with open(self.path / name, "rb") as fh:
                yield fh
        else:
            with self._zip.open(self._members[name]) as fh:
                yield io.BufferedReader(fh)

    def table(self, name: str, columns: list[str], *, optional: list[str] = ()) -> pd.DataFrame:
        """A small table (stops, calendar...) as pandas, ids kept as text."""
        return self.arrow_table(name, columns, optional=optional).to_pandas()

    def arrow_table(self, name: str, columns: list[str], *, optional: list[str] = ()):
        """A table as Arrow string columns (compact: trips and frequencies of a national feed stay small)."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        with self.open(name) as fh:
            header = _header(fh)
            missing = [c for c in columns if c not in header]
            if missing:
                raise InvalidInputError(f"GTFS {name} lacks columns {missing}; it has {header}")
            wanted = [c for c in (*columns, *optional) if c in header]
            table = pacsv.read_csv(
                fh,
                read_options=pacsv.ReadOptions(column_names=header, skip_rows=0, use_threads=True),
                convert_options=pacsv.ConvertOptions(
                    include_columns=wanted, column_types={c: pa.string() for c in wanted}, strings_can_be_null=False
                ),
            )
        return table

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _header(fh) -> list[str]:
    """Column names of a CSV stream (BOM and blanks removed); the stream is left just after the header line."""
    line = fh.readline().decode("utf-8-sig").strip()
    return [c.strip().strip('"') for c in line.split(",")]


def _seconds(times: pd.Series) -> np.ndarray:
    """GTFS times (H:MM:SS, hours may exceed 24) -> seconds after midnight."""
    parts = times.str.strip().str.split(":", expand=True).astype(np.int64)
    return (parts[0] * 3600 + parts[1] * 60 + parts[2]).to_numpy()


def _positions(values, value_set) -> np.ndarray:
    """Position of each value in ``value_set`` (Arrow string arrays), -1 where absent."""
    import pyarrow.compute as pc

    pos = pc.index_in(values, value_set=value_set)
    return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def departures_per_day(feed: _Feed, trip_ids) -> np.ndarray:
    """Departures of each trip (Arrow array of ids) on a day it runs: 1, or the count its frequencies imply."""
    per_trip = np.ones(len(trip_ids), dtype=np.float64)
    if not feed.has("frequencies.txt"):
        return per_trip
    freq = feed.arrow_table("frequencies.txt", ["trip_id", "start_time", "end_time", "headway_secs"])
    if freq.num_rows == 0:
        return per_trip
    span = _seconds(freq["end_time"].to_pandas()) - _seconds(freq["start_time"].to_pandas())
    headway = freq["headway_secs"].to_pandas().astype(np.int64).to_numpy()
    if (headway <= 0).any() or (span < 0).any():
        raise InvalidInputError("GTFS frequencies.txt has a headway <= 0 or an end_time before its start_time")
    count = np.ceil(span / headway)  # starts at start, start + h, ... while < end
    pos = _positions(freq["trip_id"], trip_ids)
    known = pos >= 0
    per_trip_freq = np.bincount(pos[known], weights=count[known], minlength=len(trip_ids))
    has_freq = np.bincount(pos[known], minlength=len(trip_ids)) > 0
    per_trip[has_freq] = per_trip_freq[has_freq]
    return per_trip


def service_days(feed: _Feed, week: str | dt.date | None = None) -> tuple[pd.Series, dt.date]:
    """Days each service runs in one Monday-Sunday week: the week of ``week``, or the feed's busiest week."""
    dates: dict[str, set[dt.date]] = {}
    if feed.has("calendar.txt"):
        cal = feed.table("calendar.txt", ["service_id", *_WEEKDAYS, "start_date", "end_date"])
        for row in cal.itertuples(index=False):
            start, end = _date(row.start_date), _date(row.end_date)
            on = [getattr(row, d) == "1" for d in _WEEKDAYS]
            days = pd.date_range(start, end, freq="D")
            dates.setdefault(row.service_id, set()).update(d.date() for d in days if on[d.weekday()])
    if feed.has("calendar_dates.txt"):
        extra = feed.table("calendar_dates.txt", ["service_id", "date", "exception_type"])
        for row in extra.itertuples(index=False):
            day = _date(row.date)
            if row.exception_type == "1":
                dates.setdefault(row.service_id, set()).add(day)
            elif row.exception_type == "2":
                dates.setdefault(row.service_id, set()).discard(day)
    if not dates:
        raise InvalidInputError(f"GTFS feed {feed.path.name} has neither calendar.txt nor calendar_dates.txt")
    if week is None:
        monday = _busiest_monday(dates)
    else:
        day = week if isinstance(week, dt.date) else _date(str(week).replace("-", ""))
        monday = day - dt.timedelta(days=day.weekday())
    sunday = monday + dt.timedelta(days=6)
    days = pd.Series({s: sum(monday <= d <= sunday for d in ds) for s, ds in dates.items()}, dtype=np.float64)
    if days.sum() == 0:
        raise InvalidInputError(
            f"no service of GTFS feed {feed.path.name} runs in the week of {monday}: pick a week inside the feed's "
            "calendar (week = 'YYYY-MM-DD'), or leave week unset for its busiest week"
        )
    return days, monday


def _busiest_monday(dates: dict[str, set[dt.date]]) -> dt.date:
    """The Monday of the week in which the most service-days fall (the earliest such week on ties)."""
    mondays = pd.Series([d - dt.timedelta(days=d.weekday()) for ds in dates.values() for d in ds])
    counts = mondays.value_counts()
    return min(counts.index[counts == counts.max()])


def _date(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text.strip(), "%Y%m%d").date()
    except ValueError as exc:
        raise InvalidInputError(f"GTFS date {text!r} is not YYYYMMDD") from exc


def _stop_events(feed: _Feed, trip_set, stop_ids, batch_bytes: int = 16 << 20):
    """stop_times as integer codes (trip, stop, sequence), read in batches; unknown trips/stops are dropped."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    stop_set = pa.array(stop_ids, pa.string())
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    read = 0
    with feed.open("stop_times.txt") as fh:
        header = _header(fh)
        missing = [c for c in ("trip_id", "stop_id", "stop_sequence") if c not in header]
        if missing:
            raise InvalidInputError(f"GTFS stop_times.txt lacks columns {missing}; it has {header}")
        reader = pacsv.open_csv(
            fh,
            read_options=pacsv.ReadOptions(column_names=header, block_size=batch_bytes),
            convert_options=pacsv.ConvertOptions(
                include_columns=["trip_id", "stop_id", "stop_sequence"],
                column_types={"trip_id": pa.string(), "stop_id": pa.string(), "stop_sequence": pa.int64()},
            ),
        )
        for batch in reader:
            read += batch.num_rows
            trip = _positions(batch.column("trip_id"), trip_set)
            stop = _positions(batch.column("stop_id"), stop_set)
            ok = (trip >= 0) & (stop >= 0)
            seq = batch.column("stop_sequence").to_numpy(zero_copy_only=False)[ok]
            parts.append((trip[ok].astype(np.int32), stop[ok].astype(np.int32), seq.astype(np.int32)))
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32), read
    return (*(np.concatenate([p[k] for p in parts]) for k in range(3)), read)


def check_feed(path: str | Path) -> None:
    """Refuse what is not a GTFS feed from its file list alone (before a long read): it needs stops, stop_times,
    trips and a calendar (calendar.txt or calendar_dates.txt)."""
    feed = _Feed(path)
    try:
        missing = [n for n in ("stops.txt", "stop_times.txt", "trips.txt") if not feed.has(n)]
        if not (feed.has("calendar.txt") or feed.has("calendar_dates.txt")):
            missing.append("calendar.txt or calendar_dates.txt")
    finally:
        feed.close()
    if missing:
        raise InvalidInputError(
            f"{feed.path.name} is not a GTFS feed: it has no {', '.join(missing)} (a GTFS static feed is the zip an "
            "operator publishes with stops.txt, trips.txt, stop_times.txt and a calendar)"
        )


def stop_links(path: str | Path, *, max_stops_apart: int = 1, week: str | None = None) -> StopLinks:
    """Weekly trips between stops linked by one feed's trips (see the module docstring)."""
    if max_stops_apart < 1:
        raise InvalidInputError(f"max_stops_apart must be 1 (consecutive stops) or more, got {max_stops_apart}")
    feed = _Feed(path)
    try:
        stops = feed.table("stops.txt", ["stop_id", "stop_lat", "stop_lon"])
        stops = stops.assign(
            lon=pd.to_numeric(stops["stop_lon"], errors="coerce"), lat=pd.to_numeric(stops["stop_lat"], errors="coerce")
        )
        stops = stops[stops["lon"].notna() & stops["lat"].notna()].set_index("stop_id")[["lon", "lat"]]
        trips = feed.arrow_table("trips.txt", ["trip_id", "service_id"])
        trip_ids = trips["trip_id"].combine_chunks()
        days, monday = service_days(feed, week)
        import pyarrow as pa

        service = _positions(trips["service_id"], pa.array(days.index.to_numpy(dtype=str), pa.string()))
        weekly = np.where(service >= 0, days.to_numpy()[service], 0.0) * departures_per_day(feed, trip_ids)
        del trips, service
        trip, stop, seq, n_events = _stop_events(feed, trip_ids, stops.index.to_numpy())
    finally:
        feed.close()
    order = np.lexsort((seq, trip))
    trip, stop = trip[order], stop[order]
    del seq, order
    n = len(stops)
    weights = sp.csr_matrix((n, n))  # (from stop, to stop) -> weekly trips, summed as links are added
    for k in range(1, max_stops_apart + 1):
        same = trip[:-k] == trip[k:]
        a, b, w = stop[:-k][same], stop[k:][same], weekly[trip[:-k][same]]
        keep = (w > 0) & (a != b)
        weights = weights + sp.csr_matrix((w[keep], (a[keep], b[keep])), shape=(n, n))
    weights.sum_duplicates()
    pairs = weights.tocoo()
    ids = stops.index.to_numpy()
    out = pd.DataFrame({"from_stop": ids[pairs.row], "to_stop": ids[pairs.col], "weekly_trips": pairs.data})
    return StopLinks(out, stops, monday, n_events)
