"""Optional Rust accelerators for bulk H3 work, and a switch to do without them.

h3-py alone is enough for every function of ``mobclip_core.grid`` (it is what the QGIS plugin's "maps" tier
installs). When h3ronpy and polars-h3 are installed (the library's own dependencies) the bulk paths use them:
the same cells, several times faster on millions of points or cells. ``h3py_only()`` turns them off, so tests
can prove both paths agree.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

_enabled = True


def _optional(name: str) -> ModuleType | None:
    if not _enabled:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def h3ronpy() -> ModuleType | None:
    return _optional("h3ronpy")


def polars_h3() -> ModuleType | None:
    return _optional("polars_h3")


@contextlib.contextmanager
def h3py_only() -> Iterator[None]:
    """Within the block every grid function uses h3-py alone."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous
