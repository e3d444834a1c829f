"""Render the demo embeddings' PCA RGB map with QGIS itself, headless, into docs/demo_map.png.

Run after the demo (bash scripts/run-demo.sh): .venv/bin/python scripts/render_map.py [demo_output] [out.png]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsFillSymbol,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def render(demo_dir: Path, out: Path, size: int = 900) -> Path:
    app = QgsApplication([], False)
    app.initQgis()
    try:
        rgb = QgsRasterLayer(str(demo_dir / "output" / "embeddings_pca_rgb.tif"), "MobCLIP PCA RGB")
        districts = QgsVectorLayer(str(demo_dir / "data" / "districts.gpkg"), "districts")
        if not rgb.isValid() or not districts.isValid():
            sys.exit(f"run the demo first: no embeddings_pca_rgb.tif / districts.gpkg under {demo_dir}")
        districts.setRenderer(districts.renderer().clone())
        symbol = QgsFillSymbol.createSimple(
            {"color": "0,0,0,0", "outline_color": "255,255,255,230", "outline_width": "0.6"}
        )
        districts.renderer().setSymbol(symbol)
        settings = QgsMapSettings()
        settings.setLayers([districts, rgb])
        settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
        extent = settings.layerExtentToOutputExtent(rgb, rgb.extent())
        settings.setExtent(extent)
        settings.setOutputSize(QSize(size, int(size * extent.height() / extent.width())))
        settings.setBackgroundColor(QColor(40, 40, 40))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        out.parent.mkdir(parents=True, exist_ok=True)
        job.renderedImage().save(str(out), "PNG")
        del rgb, districts
    finally:
        app.exitQgis()
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    demo = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "demo_output"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else root / "docs" / "demo_map.png"
    print(render(demo, target))
