"""The modalities the library knows: adding one is a module with a ``FeatureModality`` and one line here.

(Its config section is a dataclass in ``config.py``; its InfoNCE temperature a default in ``constants.py``.)
"""

from __future__ import annotations

import importlib
from functools import cache

from .base import FeatureModality

FEATURE_MODALITIES: dict[str, str] = {
    "poi": "mobclip_core.modalities.poi:PoiModality",
    "image": "mobclip_core.modalities.imagery:ImageModality",
    "demographics": "mobclip_core.modalities.demographics:DemographicsModality",
}
"""Config section name -> ``module:class`` of its builder, in build order."""


@cache
def feature_modality(name: str) -> FeatureModality:
    """The builder registered under ``name``."""
    try:
        module, cls = FEATURE_MODALITIES[name].split(":")
    except KeyError:
        raise KeyError(f"unknown modality {name!r}; known: {list(FEATURE_MODALITIES)}") from None
    return getattr(importlib.import_module(module), cls)()


def feature_modalities() -> dict[str, FeatureModality]:
    """Every registered builder by name, in build order."""
    return {name: feature_modality(name) for name in FEATURE_MODALITIES}
