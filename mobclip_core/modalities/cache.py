"""On-disk cache of per-cell feature tables, keyed by the inputs and parameters that made them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..io import atomic_path


def fingerprint(*parts) -> str:
    """Stable hash of parameters, DataFrames and file paths (by size and mtime)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame | pd.Series):
            h.update(pd.util.hash_pandas_object(part, index=True).values.tobytes())
            names = part.columns if isinstance(part, pd.DataFrame) else [part.name]
            h.update(json.dumps([str(c) for c in names]).encode())
        elif isinstance(part, Path):
            st = part.stat()
            h.update(f"{part.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def cached(cache_dir: str | Path | None, name: str, key: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Return the cached table ``name``-``key`` or compute and store it (atomically)."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{name}-{key}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    df = compute()
    with atomic_path(path) as tmp:
        df.to_parquet(tmp)
    return df
