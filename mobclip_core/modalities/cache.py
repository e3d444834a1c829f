"""The one fingerprint rule of every cache, and an on-disk cache of tables and arrays keyed by it.

A cached result is reused only when everything it was computed from is unchanged:

- input files by (resolved path, size, modification time in ns); a folder by every file under it;
- data in memory by content, in full (DataFrames, arrays, sparse matrices, the whole mobility graph);
- settings (a config section, a dataclass, a dict) by their JSON.

``fingerprint(*parts)`` hashes any mix of these; ``section_fingerprint(section, resolve)`` hashes a config section
together with every input file it names. ``cached(cache_dir, name, key, compute)`` stores what ``compute`` returns
under ``name-key`` (atomically) and serves it back while the key holds; an unreadable entry is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_path

FINGERPRINT_VERSION = 2  # bump when the rule changes: every old cache entry is then recomputed


def file_signature(path: str | Path) -> list:
    """What identifies a file's version without reading it: [resolved path, size, mtime_ns] (a folder: per file)."""
    path = Path(path).expanduser()
    try:
        resolved = path.resolve()
        st = resolved.stat()
    except (OSError, RuntimeError):
        return [str(path), "missing"]
    if not resolved.is_dir():
        return [str(resolved), st.st_size, st.st_mtime_ns]
    files = []
    for root, dirs, names in os.walk(resolved):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            f = Path(root) / name
            try:
                fst = f.stat()
            except OSError:
                continue
            files.append([f.relative_to(resolved).as_posix(), fst.st_size, fst.st_mtime_ns])
    return [str(resolved), "folder", files]


def _update(h, part: Any) -> None:
    """Feed one part into the hash, tagged with its kind so that, e.g., the text 'a.csv' and Path('a.csv') differ."""
    import scipy.sparse as sp

    if isinstance(part, Path):
        h.update(b"path:" + json.dumps(file_signature(part)).encode())
    elif isinstance(part, pd.DataFrame | pd.Series):
        h.update(b"frame:")
        h.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
        names = part.columns if isinstance(part, pd.DataFrame) else [part.name]
        h.update(json.dumps([str(c) for c in names] + [str(part.index.name)]).encode())
    elif isinstance(part, np.ndarray):
        arr = np.ascontiguousarray(part)
        h.update(f"array:{arr.dtype.str}:{arr.shape}:".encode())
        if arr.dtype == object:
            h.update(json.dumps(arr.tolist(), default=str).encode())
        else:
            h.update(memoryview(arr.reshape(-1)).cast("B"))
    elif sp.issparse(part):
        m = part.tocsr()
        h.update(f"sparse:{m.shape}:".encode())
        for a in (m.indptr, m.indices, m.data):
            _update(h, np.asarray(a))
    elif hasattr(part, "cells") and hasattr(part, "adjacency"):  # a MobilityGraph, in full
        h.update(b"graph:")
        _update(h, np.asarray(part.cells))
        _update(h, part.adjacency)
    elif dataclasses.is_dataclass(part) and not isinstance(part, type):
        h.update(f"dataclass:{type(part).__name__}:".encode())
        _update(h, dataclasses.asdict(part))
    elif isinstance(part, bytes | bytearray | memoryview):
        h.update(b"bytes:" + bytes(part))
    else:
        h.update(b"json:" + json.dumps(part, sort_keys=True, default=str).encode())


def fingerprint(*parts: Any) -> str:
    """A stable 20-hex-digit key of ``parts`` under the rule above (Path objects are read as files)."""
    h = hashlib.sha256(f"mobclip-fingerprint-v{FINGERPRINT_VERSION}".encode())
    for part in parts:
        _update(h, part)
    return h.hexdigest()[:20]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def section_fingerprint(section: Any, resolve: Callable[[str], Path | None]) -> str:
    """Fingerprint of a config section (dict or dataclass) and of every input file or folder it names.

    ``resolve`` turns an option's text into a path (``RunConfig.path``: relative to the config file). Every
    string value that resolves to an existing path counts as an input, so a new path option is covered with no
    change here.
    """
    values = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else section
    files = []
    home = resolve(".")
    for text in sorted(set(_strings(values))):
        try:
            path = resolve(text) if text.strip() else None
        except (OSError, RuntimeError, ValueError, TypeError):
            continue
        if path is None or not path.exists() or (home is not None and home.is_relative_to(path)):
            continue  # not a path, or the config's own folder (or above it): not one input
        files.append(path)
    return fingerprint(values, *files)


def cached(
    cache_dir: str | Path | None, name: str, key: str, compute: Callable[[], Any], *, kind: str = "table"
) -> Any:
    """Return the cached ``name``-``key`` or compute and store it: ``kind`` "table" (DataFrame) or "array"."""
    if cache_dir is None:
        return compute()
    suffix = {"table": ".parquet", "array": ".npy"}[kind]
    path = Path(cache_dir) / f"{name}-{key}{suffix}"
    if path.exists():
        try:
            return pd.read_parquet(path) if kind == "table" else np.load(path, allow_pickle=False)
        except (OSError, ValueError, RuntimeError):  # unreadable entry (disk trouble, foreign file): recompute
            pass
    value = compute()
    with atomic_path(path) as tmp:
        if kind == "table":
            value.to_parquet(tmp)
        else:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(value), allow_pickle=False)
    return value
