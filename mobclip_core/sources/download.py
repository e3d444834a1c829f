"""An explicit download helper: a file fetched once into a cache folder, checked against its published checksum.

Nothing in the library downloads on its own; ``mobclip download URL --sha256 ...`` is the user's choice. A file
already in the cache with the right checksum is not fetched again; a transfer is written beside its destination
and renamed only once complete and verified, so a broken or tampered download never looks like a good one.
"""

from __future__ import annotations

import hashlib
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..exceptions import InvalidInputError
from ..io import atomic_path

_CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    cache_dir: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    name: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """The cached copy of ``url`` in ``cache_dir``, fetched if missing; refused unless its checksum matches.

    Give ``sha256`` (or ``md5``, as Geofabrik publishes beside each extract): one of them is required.
    ``progress(bytes_done, bytes_total_or_None)`` is called per chunk.
    """
    if sha256 is None and md5 is None:
        raise InvalidInputError(
            "give the file's published checksum (--sha256 or --md5): a download is kept only once verified"
        )
    algorithm, expected = ("sha256", sha256) if sha256 else ("md5", md5)
    expected = expected.strip().lower()
    target = Path(cache_dir).expanduser() / (name or Path(urllib.parse.urlparse(url).path).name or "download")
    if target.exists() and file_digest(target, algorithm) == expected:
        return target
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - an explicit user-given URL
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot download {url}: {exc}") from exc
    with response, atomic_path(target) as tmp:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        h, done = hashlib.new(algorithm), 0
        with open(tmp, "wb") as out:
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                h.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise InvalidInputError(f"{url}: the transfer stopped after {done} of {total} bytes; run it again")
        if h.hexdigest() != expected:
            raise InvalidInputError(
                f"{url}: {algorithm} {h.hexdigest()} does not match the expected {expected}; the file was not kept "
                "(a changed upstream file, or a broken transfer: check the checksum published next to it)"
            )
    return target
