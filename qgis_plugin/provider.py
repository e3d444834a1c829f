"""The MobCLIP Processing provider: registers the algorithms whose dependencies are installed."""

from __future__ import annotations

import os

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .dependencies import install_hint, missing_modules


class MobClipProvider(QgsProcessingProvider):
    def __init__(self) -> None:
        super().__init__()
        self.unavailable: dict[str, list[str]] = {}

    def id(self) -> str:  # noqa: A003 - QGIS API name
        return "mobclip"

    def name(self) -> str:
        return "MobCLIP"

    def longName(self) -> str:  # noqa: N802
        return "MobCLIP location embeddings"

    def icon(self) -> QIcon:
        return QIcon(os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg"))

    def loadAlgorithms(self) -> None:  # noqa: N802
        from ..processing_algorithms import ALGORITHMS

        self.unavailable = {}
        for cls in ALGORITHMS:
            missing = missing_modules(cls.requirements)
            if missing:
                self.unavailable[cls.algorithm_name] = missing
                continue
            self.addAlgorithm(cls())
        if self.unavailable:
            every = sorted({m for ms in self.unavailable.values() for m in ms})
            QgsMessageLog.logMessage(
                f"MobCLIP: {len(self.unavailable)} algorithm(s) not available "
                f"({', '.join(sorted(self.unavailable))}). {install_hint(every)}",
                "MobCLIP",
                Qgis.Warning,
            )

    def missing_summary(self) -> str | None:
        if not self.unavailable:
            return None
        every = sorted({m for ms in self.unavailable.values() for m in ms})
        return install_hint(every)
