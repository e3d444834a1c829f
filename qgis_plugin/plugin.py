"""The plugin class QGIS instantiates through ``classFactory``."""

from __future__ import annotations

from qgis.core import QgsApplication


class MobClipPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface  # None under qgis_process
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API name
        from .provider import MobClipProvider

        self.provider = MobClipProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        hint = self.provider.missing_summary() if self.provider else None
        if hint and self.iface is not None:
            self.iface.messageBar().pushWarning("MobCLIP", hint)

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
