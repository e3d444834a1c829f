"""Graph engines: DuckDB (out of core) and Spark (local mode and a real standalone cluster) build the same graph as
the in-memory builder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mobclip_core.exceptions import InvalidInputError
from mobclip_core.modalities import build_copresence_graph
from mobclip_core.modalities.mobility.engines import build_copresence_graph_duckdb, build_copresence_graph_spark


@pytest.fixture(scope="module")
def records(small_city):
    recs = pd.read_parquet(small_city.records)
    return [recs.iloc[i : i + 20_000] for i in range(0, len(recs), 20_000)]


@pytest.fixture(scope="module")
def reference(records):
    return build_copresence_graph(iter(records), 9)


def _same(a, b):
    assert np.array_equal(a.cells, b.cells)
    assert abs(a.adjacency - b.adjacency).max() == 0


def test_duckdb_equals_in_memory(records, reference):
    # a tiny memory limit forces DuckDB to spill: the result must not change
    _same(build_copresence_graph_duckdb(iter(records), 9, memory_limit="64MB", threads=1), reference)


@pytest.mark.slow
def test_spark_local_equals_in_memory(records, reference):
    _same(build_copresence_graph_spark(iter(records), 9), reference)


def test_engines_accept_string_person_ids_and_cells(reference, records):
    from mobclip_core.grid import cells_to_strings, points_to_cells

    frames = []
    for r in records:
        frames.append(
            pd.DataFrame(
                {
                    "who": "p" + r.person_id.astype(str),
                    "timestamp": r.timestamp,
                    "cell": cells_to_strings(points_to_cells(r.lon.to_numpy(), r.lat.to_numpy(), 9)),
                }
            )
        )
    _same(build_copresence_graph_duckdb(iter(frames), 9, person="who", cell="cell"), reference)


@pytest.mark.parametrize("missing", ["lon", "timestamp", "cell"])
@pytest.mark.parametrize("engine", [build_copresence_graph_duckdb, build_copresence_graph_spark])
def test_engines_name_a_missing_column(records, engine, missing):
    frame = records[0].iloc[:100]
    columns = {"cell": "cell"} if missing == "cell" else {}
    with pytest.raises(InvalidInputError, match=rf"records lack columns \['{missing}'\].*name the right ones"):
        engine(iter([frame.drop(columns=[missing], errors="ignore")]), 9, **columns)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def standalone_cluster(workers: int = 2):
    """A Spark standalone master and ``workers`` one-core workers on loopback, run by pyspark's own daemon script.

    Ports are chosen free, logs, pid files and work folders live in a temporary folder, and everything is stopped
    in ``finally``. Yields (master URL, [work folder of each worker]).
    """
    import pyspark

    home = Path(pyspark.__file__).parent
    daemon = home / "sbin" / "spark-daemon.sh"
    tmp = Path(tempfile.mkdtemp(prefix="mobclip-spark-cluster-"))
    (tmp / "conf").mkdir()
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(tmp / "conf"),
        "SPARK_LOG_DIR": str(tmp / "logs"),
        "SPARK_PID_DIR": str(tmp / "pids"),
        "SPARK_IDENT_STRING": f"mobclip-test-{os.getpid()}",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    master = ["org.apache.spark.deploy.master.Master", "1"]
    daemons = [(master, ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)])]
    work = [tmp / f"work{i}" for i in range(1, workers + 1)]
    for i, folder in enumerate(work, start=1):
        args = ["--host", "127.0.0.1", "--port", str(_free_port()), "--webui-port", str(_free_port())]
        args += ["--cores", "1", "--memory", "1g", "--work-dir", str(folder), url]
        daemons.append((["org.apache.spark.deploy.worker.Worker", str(i)], args))
    try:
        starts = [
            subprocess.Popen(["bash", str(daemon), "start", *d, *a], env=env, stdout=subprocess.DEVNULL)
            for d, a in daemons
        ]  # started together: workers retry until the master listens
        for p in starts:
            assert p.wait(timeout=120) == 0, "spark-daemon.sh could not start a daemon"
        deadline, alive = time.monotonic() + 120, 0
        while time.monotonic() < deadline and alive < workers:
            with contextlib.suppress(OSError, ValueError):
                alive = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2))["aliveworkers"]
            time.sleep(0.3)
        logs = "\n".join(p.read_text()[-2000:] for p in (tmp / "logs").glob("*.out"))
        assert alive == workers, f"{alive} of {workers} Spark workers registered:\n{logs}"
        yield url, work
    finally:
        for d, _ in reversed(daemons):
            subprocess.run(["bash", str(daemon), "stop", *d], env=env, capture_output=True, timeout=120)
        for pid_file in (tmp / "pids").glob("*.pid"):  # a daemon the script failed to stop
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), 9)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_spark_standalone_cluster_equals_in_memory(records, reference, tmp_path):
    with standalone_cluster(workers=2) as (url, work):
        graph = build_copresence_graph_spark(iter(records), 9, master=url, staging_dir=tmp_path)
        # both workers ran tasks of the job: each launched an executor whose log shows finished tasks
        for folder in work:
            logs = [p.read_text() for p in folder.glob("app-*/*/stderr")]
            assert any("Finished task" in text for text in logs), f"no task ran on the worker of {folder}"
    _same(graph, reference)
