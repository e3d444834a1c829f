"""Co-presence graph building on existing engines: DuckDB (out of core, one machine) and Apache Spark (clusters).

Both take the same records as ``build_copresence_graph`` and give the identical graph. H3 indexing stays in
Python, vectorized, while streaming the input once into a Parquet staging area of (person, week, cell); the engine
then does the heavy part in SQL -- distinct (person, week, cell) triples and the self-join that counts, for every
pair of cells, the person-weeks that visited both -- spilling to disk as its memory limit requires.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..._optional import import_optional
from ...exceptions import InvalidInputError
from ...grid import points_to_cells, strings_to_cells, validate_resolution
from .copresence import missing_columns_message, to_week
from .graph import MobilityGraph

COPRESENCE_SQL = """
WITH triples AS (SELECT DISTINCT person, week, cell FROM staged)
SELECT a.cell AS i, b.cell AS j, CAST(COUNT(*) AS DOUBLE) AS w
FROM triples a JOIN triples b ON a.person = b.person AND a.week = b.week AND a.cell < b.cell
GROUP BY a.cell, b.cell
"""
CELLS_SQL = "SELECT DISTINCT cell FROM staged"


def stage_records(
    records,
    resolution: int,
    directory: Path,
    *,
    person: str = "person_id",
    time: str = "timestamp",
    cell: str | None = None,
    lon: str = "lon",
    lat: str = "lat",
) -> int:
    """Stream record chunks into Parquet files of (person, week, cell as int64); returns the record count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    res = validate_resolution(resolution)
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    chunks = [records] if isinstance(records, pd.DataFrame) else records
    for k, chunk in enumerate(chunks):
        missing = {person, time, *([cell] if cell is not None else [lon, lat])} - set(chunk.columns)
        if missing:
            raise InvalidInputError(missing_columns_message(missing, chunk.columns))
        if cell is not None:
            cells = chunk[cell].to_numpy()
            cells = cells.astype(np.uint64) if cells.dtype.kind in "ui" else strings_to_cells(cells)
        else:
            cells = points_to_cells(chunk[lon].to_numpy(), chunk[lat].to_numpy(), res)
        people = chunk[person].to_numpy()
        if people.dtype.kind not in "iu":
            people = people.astype(str)
        table = pa.table(
            {"person": people, "week": to_week(chunk[time].to_numpy()).astype(np.int32), "cell": cells.view(np.int64)}
        )  # H3 ids < 2^63: int64 is lossless (Spark has no uint64)
        pq.write_table(table, directory / f"part-{k:06d}.parquet")
        n += len(chunk)
    if n == 0:
        raise InvalidInputError("no records were given: the mobility graph would be empty")
    return n


def _graph_from_pairs(i: np.ndarray, j: np.ndarray, w: np.ndarray, cells: np.ndarray) -> MobilityGraph:
    cells = np.sort(cells.astype(np.int64).view(np.uint64))
    index = pd.Index(cells)
    a = index.get_indexer(i.astype(np.int64).view(np.uint64))
    b = index.get_indexer(j.astype(np.int64).view(np.uint64))
    upper = sp.coo_matrix((w.astype(np.float64), (a, b)), shape=(cells.size, cells.size)).tocsr()
    return MobilityGraph(cells, upper + upper.T)


def build_copresence_graph_duckdb(
    records,
    resolution: int,
    *,
    memory_limit: str = "2GB",
    threads: int = 2,
    temp_dir: str | Path | None = None,
    **columns,
) -> MobilityGraph:
    """The co-presence graph computed by DuckDB, out of core beyond ``memory_limit``."""
    duckdb = import_optional("duckdb")
    work = Path(tempfile.mkdtemp(prefix="mobclip-duckdb-", dir=temp_dir))
    try:
        stage_records(records, resolution, work / "staged", **columns)
        con = duckdb.connect()
        con.execute("SET enable_progress_bar=false")
        con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute(f"SET threads={int(threads)}")
        con.execute(f"SET temp_directory='{work / 'spill'}'")
        con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet('{work / 'staged'}/*.parquet')")
        pairs = con.execute(COPRESENCE_SQL).fetchnumpy()
        cells = con.execute(CELLS_SQL).fetchnumpy()["cell"]
        con.close()
        return _graph_from_pairs(pairs["i"], pairs["j"], pairs["w"], cells)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_copresence_graph_spark(
    records, resolution: int, *, spark=None, master: str = "local[2]", staging_dir: str | Path | None = None, **columns
) -> MobilityGraph:
    """The co-presence graph computed by Apache Spark (local mode by default, any cluster through ``spark``).

    On a cluster, ``staging_dir`` must be storage every executor can read (HDFS, S3, a shared mount).
    """
    import_optional("pyspark")
    from pyspark.sql import SparkSession

    own = spark is None
    if own:
        spark = (
            SparkSession.builder.master(master)
            .appName("mobclip-graph")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.driver.host", "127.0.0.1")
            .getOrCreate()
        )
    work = Path(tempfile.mkdtemp(prefix="mobclip-spark-", dir=staging_dir))
    try:
        stage_records(records, resolution, work / "staged", **columns)
        spark.read.parquet(str(work / "staged")).createOrReplaceTempView("staged")
        pairs = spark.sql(COPRESENCE_SQL).toPandas()
        cells = spark.sql(CELLS_SQL).toPandas()["cell"].to_numpy()
        return _graph_from_pairs(pairs["i"].to_numpy(), pairs["j"].to_numpy(), pairs["w"].to_numpy(), cells)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own:
            spark.stop()


def build_graph_from_records(
    records, resolution: int, *, engine: str = "memory", memory_budget_mb: float = 512.0, progress=None, **columns
) -> MobilityGraph:
    """The co-presence graph on the chosen engine: "memory" (streaming numpy/scipy), "duckdb" or "spark"."""
    if engine == "memory":
        from .copresence import build_copresence_graph

        return build_copresence_graph(
            records, resolution, memory_budget_mb=memory_budget_mb, progress=progress, **columns
        )
    if engine == "duckdb":
        return build_copresence_graph_duckdb(records, resolution, **columns)
    if engine == "spark":
        return build_copresence_graph_spark(records, resolution, **columns)
    raise InvalidInputError(f"unknown graph engine {engine!r}: use 'memory', 'duckdb' or 'spark'")
