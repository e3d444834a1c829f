"""US LEHD LODES origin-destination tables: jobs between home and work census blocks, located by the crosswalk.

Layout (LODES 7 and 8, one file per state and year): ``xx_od_main_JT00_YYYY.csv.gz`` with ``w_geocode``
(work block), ``h_geocode`` (home block) and job counts ``S000`` (all jobs), ``SA01``-``SA03`` (age),
``SE01``-``SE03`` (earnings), ``SI01``-``SI03`` (industry); the state crosswalk ``xx_xwalk.csv.gz`` gives each
block (``tabblk2020`` in LODES 8, ``tabblk2010`` in LODES 7) its internal point ``blklatdd``/``blklondd``.
Blocks are 15-digit codes: they are read as text so the leading zero of states 01-09 survives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError

BLOCK_COLUMNS = ("tabblk2020", "tabblk2010")


@dataclass
class LodesChunk:
    """Home -> work flows of one chunk, located at block points, and the rows whose blocks were not found."""

    h_lon: np.ndarray
    h_lat: np.ndarray
    w_lon: np.ndarray
    w_lat: np.ndarray
    jobs: np.ndarray
    unmatched: int


def crosswalk_block_column(path: str | Path) -> str:
    """The block code column of a LODES crosswalk, from its header (a file that is not one is refused)."""
    import pyarrow.csv as pacsv

    from ..io import reading

    path = Path(path)
    with reading(path, "LODES crosswalk", fix="Give the state's xx_xwalk.csv.gz from the same LODES release"):
        header = pacsv.open_csv(path).schema.names
    block = next((c for c in BLOCK_COLUMNS if c in header), None)
    if block is None or not {"blklatdd", "blklondd"} <= set(header):
        raise InvalidInputError(
            f"{path.name} is not a LODES crosswalk: it needs a block column ({' or '.join(BLOCK_COLUMNS)}) and "
            f"blklatdd, blklondd; it has {header[:12]}"
        )
    return block


def read_crosswalk(path: str | Path) -> pd.DataFrame:
    """Block points of a LODES crosswalk: index block code (text), columns lon, lat."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    block = crosswalk_block_column(path)
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=[block, "blklatdd", "blklondd"],
            column_types={block: pa.string(), "blklatdd": pa.float64(), "blklondd": pa.float64()},
        ),
    ).to_pandas()
    return pd.DataFrame(
        {"lon": table["blklondd"].to_numpy(), "lat": table["blklatdd"].to_numpy()}, index=pd.Index(table[block])
    )


def check_od_header(path: str | Path, jobs: str = "S000") -> None:
    """Refuse a file that is not a LODES OD table (work and home block columns, the ``jobs`` column) from its
    header alone."""
    import pyarrow.csv as pacsv

    from ..io import reading

    path = Path(path)
    with reading(path, "LODES OD file", fix="Give the state's xx_od_main_JT00_YYYY.csv.gz"):
        header = pacsv.open_csv(path).schema.names
    missing = [c for c in ("w_geocode", "h_geocode", jobs) if c not in header]
    if missing:
        raise InvalidInputError(
            f"{path.name} is not a LODES OD table: it lacks {missing} (has {header[:13]}); jobs must name one "
            "of S000, SA01-SA03, SE01-SE03, SI01-SI03"
        )


def iter_lodes_flows(
    od_path: str | Path, crosswalk: str | Path | pd.DataFrame, *, jobs: str = "S000", block_bytes: int = 64 << 20
) -> Iterator[LodesChunk]:
    """Yield home -> work job flows of a LODES OD file chunk by chunk (memory bounded by ``block_bytes``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    od_path = Path(od_path)
    check_od_header(od_path, jobs)
    points = crosswalk if isinstance(crosswalk, pd.DataFrame) else read_crosswalk(crosswalk)
    reader = pacsv.open_csv(
        od_path,
        read_options=pacsv.ReadOptions(block_size=block_bytes),
        convert_options=pacsv.ConvertOptions(
            include_columns=["w_geocode", "h_geocode", jobs],
            column_types={"w_geocode": pa.string(), "h_geocode": pa.string(), jobs: pa.float64()},
        ),
    )
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    for batch in reader:
        h = points.index.get_indexer(batch.column("h_geocode").to_pandas())
        w = points.index.get_indexer(batch.column("w_geocode").to_pandas())
        n = batch.column(jobs).to_numpy(zero_copy_only=False)
        ok = (h >= 0) & (w >= 0) & np.isfinite(n)
        yield LodesChunk(lon[h[ok]], lat[h[ok]], lon[w[ok]], lat[w[ok]], n[ok], int((~ok).sum()))
