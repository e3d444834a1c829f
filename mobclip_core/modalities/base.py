"""The one interface every modality implements: a config section and the cell index in, a per-cell table out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd


def _silent(message: str) -> None:
    return None


@dataclass(frozen=True)
class BuildContext:
    """What a modality needs besides its own config section.

    ``resolve`` turns a path written in the config into an absolute path (relative to the config file's folder);
    ``cache_dir`` is where feature tables are cached (``modalities.cache``), or None; ``say`` reports progress.
    """

    resolution: int
    resolve: Callable[[str | None], Path | None] = field(default=lambda p: None if p is None else Path(p))
    cache_dir: Path | None = None
    say: Callable[[str], None] = _silent

    @classmethod
    def from_config(cls, cfg, say: Callable[[str], None] | None = None) -> BuildContext:
        cache = cfg.path(cfg.cache_dir) if cfg.cache_dir else None
        return cls(cfg.resolution, cfg.path, cache, say or _silent)


class FeatureModality(ABC):
    """A modality aligned to the mobility anchor (POIs, imagery, demographics...).

    Subclasses set ``name`` (the config section and the dataset's feature table name) and implement ``build``.
    The table returned is indexed by hex ``h3_cell``; cells without the modality are simply absent (the dataset
    aligns every table to the graph's cells, leaving NaN rows). Builders cache their tables in
    ``ctx.cache_dir`` keyed by ``modalities.cache.fingerprint`` of their inputs and parameters.
    """

    name: ClassVar[str]

    def configured(self, section: Any) -> bool:
        """Whether the config asks for this modality (by default: its section names a ``path``)."""
        return getattr(section, "path", None) is not None

    def describe(self, section: Any) -> str:
        """One line for progress output."""
        return f"{self.name}: features from {getattr(section, 'path', None)}"

    @abstractmethod
    def build(self, section: Any, cells: np.ndarray, ctx: BuildContext) -> pd.DataFrame:
        """Per-cell feature table for ``cells`` (hex strings, the graph's cells) from the config ``section``."""
