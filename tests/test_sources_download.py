"""The download helper against a local HTTP server (loopback only) serving a real file: cache and checksums."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
from _opendata import HSL_GTFS

from mobclip_core.cli import main
from mobclip_core.exceptions import InvalidInputError
from mobclip_core.sources.download import download


@pytest.fixture()
def server():
    """http://127.0.0.1:PORT/ serving tests/data/hsl_gtfs; ``requests`` lists the paths asked for."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(HSL_GTFS.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def test_download_verify_and_cache(server, tmp_path):
    base, requests = server
    data = HSL_GTFS.read_bytes()
    sha256, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()  # noqa: S324 - Geofabrik's
    url = f"{base}/{HSL_GTFS.name}"
    path = download(url, tmp_path / "cache", sha256=sha256)
    assert path.read_bytes() == data and path.name == HSL_GTFS.name
    assert download(url, tmp_path / "cache", sha256=sha256) == path and len(requests) == 1  # served from the cache
    assert download(url, tmp_path / "cache", md5=md5.upper()) == path and len(requests) == 1
    assert main(["download", url, "--cache", str(tmp_path / "cli"), "--sha256", sha256, "--quiet"]) == 0
    assert (tmp_path / "cli" / HSL_GTFS.name).read_bytes() == data


def test_a_wrong_checksum_keeps_nothing(server, tmp_path):
    base, _ = server
    with pytest.raises(InvalidInputError, match="does not match the expected"):
        download(f"{base}/{HSL_GTFS.name}", tmp_path, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidInputError, match="cannot download"):
        download(f"{base}/missing.zip", tmp_path, sha256="0" * 64)
    with pytest.raises(InvalidInputError, match="published checksum"):
        download(f"{base}/{HSL_GTFS.name}", tmp_path)
