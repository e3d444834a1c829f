"""Plugins > MobCLIP > Create demo data…: the synthetic demo city (``mobclip make-demo-data``) written by a child
Python process (QGIS's own interpreter with the plugin's packages), then its layers are added to the project.

The demo needs the "Training" packages (geopandas, rasterio...), which are never loaded into the QGIS process.
"""

from __future__ import annotations

import io
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer, QgsTask, QgsVectorLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor

from mobclip_core import dependencies as deps
from mobclip_core.exceptions import DependencyInstallError

from . import installer

LAYERS = (("districts.gpkg", "Demo districts"), ("pois.gpkg", "Demo POIs"), ("imagery.tif", "Demo imagery"))


class DemoDataTask(QgsTask):
    """Runs ``python -m mobclip_core.cli make-demo-data FOLDER`` in QGIS's Python; Cancel stops it."""

    def __init__(self, folder: str | Path, rings: int = 14) -> None:
        super().__init__("Creating the MobCLIP demo city", QgsTask.CanCancel)
        self.folder = Path(folder)
        self.rings = rings
        self.output = ""
        self.error: str | None = None

    @property
    def config(self) -> Path:
        return self.folder / "mobclip.toml"

    def run(self) -> bool:
        log = io.StringIO()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            cmd = [str(deps.find_python()), "-m", "mobclip_core.cli", "make-demo-data", str(self.folder)]
            cmd += ["--rings", str(self.rings)]
            self.setProgress(5)
            rc = installer.run_logged(
                cmd, env=deps.child_environment(), log=log, cancelled=self.isCanceled, cwd=self.folder.parent
            )
        except installer.Cancelled:
            self.error = "Cancelled."
            return False
        except (DependencyInstallError, OSError) as exc:
            self.error = str(exc)
            return False
        self.output = log.getvalue()
        if rc != 0:
            self.error = self.output.strip().splitlines()[-1] if self.output.strip() else f"exit code {rc}"
            return False
        self.setProgress(100)
        return self.config.exists()

    def add_layers(self) -> list:
        """Add the demo city's layers to the project (main thread, after the task)."""
        root = QgsProject.instance().layerTreeRoot()
        group = root.insertGroup(0, "MobCLIP demo city")
        added = []
        for file, name in LAYERS:
            path = str(self.folder / file)
            layer = QgsRasterLayer(path, name) if file.endswith(".tif") else QgsVectorLayer(path, name, "ogr")
            if layer.isValid():
                if file == "districts.gpkg":  # outlines only: trained maps drawn below stay visible
                    symbol = layer.renderer().symbol()
                    symbol.symbolLayer(0).setBrushStyle(Qt.NoBrush)
                    symbol.symbolLayer(0).setStrokeColor(QColor(40, 40, 40))
                    symbol.symbolLayer(0).setStrokeWidth(0.5)
                elif file == "imagery.tif":
                    layer.setOpacity(0.6)
                QgsProject.instance().addMapLayer(layer, False)
                group.addLayer(layer)
                added.append(layer)
        return added
