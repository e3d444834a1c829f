"""Render the similarity and zone maps of the demo with QGIS itself, headless, into docs/ (with legends).

Run after the demo (bash scripts/run-demo.sh): .venv/bin/python scripts/render_analysis_maps.py [demo_output] [docs]
It runs the plugin's algorithms (similar_places, functional_zones) on the demo's embeddings, loads the results
with the algorithms' own styles, and exports a layout (map + legend) per result.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]


def main(demo: Path, docs: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from qgis_support import start_qgis

    start_qgis()
    import processing
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsLayout,
        QgsLayoutExporter,
        QgsLayoutItemLegend,
        QgsLayoutItemMap,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProject,
        QgsUnitTypes,
        QgsVectorLayer,
    )

    project = QgsProject.instance()
    emb = str(demo / "output" / "embeddings.parquet")
    out = Path(tempfile.mkdtemp(prefix="mobclip-render-"))
    import pandas as pd

    targets = pd.read_parquet(demo / "data" / "targets.parquet")
    commercial = targets[targets.zone == "commercial"]
    ref = commercial.h3_cell.iloc[
        int(((commercial[["lon", "lat"]] - commercial[["lon", "lat"]].median()) ** 2).sum(1).argmin())
    ]
    jobs = [
        ("similar_places", {"EMBEDDINGS": emb, "REFERENCE_CELLS": ref, "TOP_N": 10,
                            "OUTPUT": str(out / "similarity.gpkg"), "OUTPUT_TOP": str(out / "top.gpkg")},
         "similarity", "Similarity to one commercial cell"),
        ("functional_zones", {"EMBEDDINGS": emb, "METHOD": 2, "K": 5, "DATASET": str(demo / "output" / "dataset"),
                              "POIS": str(demo / "data" / "pois.gpkg"), "OUTPUT": str(out / "zones.gpkg"),
                              "OUTPUT_PROFILES": str(out / "profiles.gpkg")},
         "zones", "Functional zones (k-means, k = 5)"),
    ]  # fmt: skip
    for alg, params, name, title in jobs:
        project.removeAllMapLayers()
        context = QgsProcessingContext()
        context.setProject(project)
        processing.runAndLoadResults(f"mobclip:{alg}", params, feedback=QgsProcessingFeedback(), context=context)
        layer = next(
            lyr for lyr in project.mapLayers().values() if isinstance(lyr, QgsVectorLayer) and lyr.geometryType() == 2
        )
        layer.setName(title)
        for other in list(project.mapLayers().values()):
            if other is not layer:
                project.removeMapLayer(other.id())
        layout = QgsLayout(project)
        layout.initializeDefaults()
        page = layout.pageCollection().page(0)
        page.setPageSize(QgsLayoutSize(280, 130, QgsUnitTypes.LayoutMillimeters))
        item = QgsLayoutItemMap(layout)
        item.attemptMove(QgsLayoutPoint(2, 2, QgsUnitTypes.LayoutMillimeters))
        item.attemptResize(QgsLayoutSize(140, 126, QgsUnitTypes.LayoutMillimeters))
        item.setLayers([layer])
        mercator = QgsCoordinateReferenceSystem("EPSG:3857")
        item.setCrs(mercator)
        extent = QgsCoordinateTransform(layer.crs(), mercator, project).transformBoundingBox(layer.extent())
        item.setExtent(extent.buffered(extent.width() * 0.02))
        layout.addLayoutItem(item)
        legend = QgsLayoutItemLegend(layout)
        legend.setLinkedMap(item)
        legend.setTitle("")
        legend.attemptMove(QgsLayoutPoint(146, 4, QgsUnitTypes.LayoutMillimeters))
        layout.addLayoutItem(legend)
        settings = QgsLayoutExporter.ImageExportSettings()
        settings.dpi = 110
        target = docs / f"analysis_{name}.png"
        QgsLayoutExporter(layout).exportToImage(str(target), settings)
        print(target)
        print(_caption_numbers(name, layer, targets))
    project.removeAllMapLayers()


def _caption_numbers(name: str, layer, targets) -> str:
    """The numbers README's caption quotes, against the demo's planted land-use types: the mean similarity per type,
    or the adjusted Rand index of the zones."""
    import pandas as pd

    rows = pd.DataFrame([f.attributes() for f in layer.getFeatures()], columns=layer.fields().names())
    rows = rows.merge(targets[["h3_cell", "zone"]].rename(columns={"zone": "planted"}), on="h3_cell")
    if name == "similarity":
        means = rows.groupby("planted")["similarity"].mean().sort_values(ascending=False)
        return "  mean similarity by planted type: " + ", ".join(f"{z} {v:.2f}" for z, v in means.items())
    from sklearn.metrics import adjusted_rand_score

    return f"  zones against the planted types: adjusted Rand index {adjusted_rand_score(rows.planted, rows.zone):.2f}"


if __name__ == "__main__":
    demo = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "demo_output"
    docs = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs"
    main(demo, docs)
