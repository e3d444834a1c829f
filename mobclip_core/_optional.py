"""Optional heavy imports with a clear install hint, from the one dependency table (``dependencies.py``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from .dependencies import INSTALL_ACTION, PACKAGES, TRAINING_TIER, pyproject_extra, requirement
from .exceptions import MissingDependencyError


def import_optional(module: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError saying how to install it (pip, or the QGIS plugin)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        name = PACKAGES[top].name if top in PACKAGES else top
        extra = pyproject_extra(top)
        hint = f"pip install 'mobclip-core[{extra}]'" if extra else f"pip install '{requirement(top)}'"
        in_qgis = f" (in QGIS: {INSTALL_ACTION})" if top in TRAINING_TIER else ""  # the plugin's tiers
        raise MissingDependencyError(
            f'Missing optional dependency "{name}" ({exc}). Install it with: {hint}{in_qgis}'
        ) from exc
