"""The MobCLIP Processing provider: lists every algorithm, whatever is installed.

An algorithm whose Python packages are missing stays in the toolbox; QGIS's ``canExecute()`` (in the algorithms'
base class) disables its Run button with the install hint.
"""

from __future__ import annotations

import os

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from mobclip_core.dependencies import MAPS, install_hint, missing_modules

ICON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "icon.png")


class MobClipProvider(QgsProcessingProvider):
    def id(self) -> str:  # noqa: A003 - QGIS API name
        return "mobclip"

    def name(self) -> str:
        return "MobCLIP"

    def longName(self) -> str:  # noqa: N802
        return "MobCLIP location embeddings"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def loadAlgorithms(self) -> None:  # noqa: N802
        try:
            from ..processing_algorithms import ALGORITHMS
        except ImportError as exc:  # a module-level third-party import slipped into an algorithm: say so, load on
            QgsMessageLog.logMessage(
                f"MobCLIP's algorithms could not be loaded ({exc}). {install_hint(missing_modules(MAPS))}",
                "MobCLIP",
                Qgis.Critical,
            )
            return
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
