"""Similar places, interactively: click a cell or feature on the map and the similarity layer redraws at once.

``SimilarityOverlay`` holds the work (no widgets, testable headless): it reads the layer's emb_* fields once into a
``SimilarityIndex`` (unit float32 rows), and answers a click with one matrix-vector product. For a layer of H3 cells
(an h3_cell field) the result is a raster whose pixel -> cell map is computed once, so a click rewrites one float32
array in GDAL's memory file system and QGIS redraws a raster (about 4 ms of numpy on 100,000 cells, see
benchmarks/bench_analysis.py); for other features (e.g. aggregated polygons) it is a memory copy of the layer whose
'similarity' field is updated in one ``changeAttributeValues`` call. ``SimilarityMapTool`` is the map tool that feeds
it clicks. Only QGIS, QGIS's GDAL, numpy and the library's numpy code are used here.
"""

from __future__ import annotations

import itertools

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapToolEmitPoint
from qgis.PyQt.QtCore import QVariant

_COUNTER = itertools.count()

NEEDED = (
    "a layer of embeddings with numeric emb_0, emb_1, … fields: “MobCLIP embeddings (…)” from Train embeddings or "
    "any H3 cell layer with h3_cell and emb_* fields, or areas from Aggregate embeddings over polygons"
)


def layer_problem(layer, prefix: str = "emb_") -> str | None:
    """Why ``layer`` cannot be compared place by place (a sentence naming the layer that is needed), or None.

    Plain PyQGIS on purpose: the plugin calls it before anything imports numpy or the library."""
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        what = f"“{layer.name()}” is not a vector layer" if layer is not None else "No layer is selected"
        return f"{what}. Select (make active) {NEEDED}."
    numeric = [f.name() for f in layer.fields() if f.name().startswith(prefix) and f.isNumeric()]
    if not numeric:
        return f"Layer “{layer.name()}” has no numeric {prefix}* fields. Select {NEEDED}."
    if layer.featureCount() == 0:
        return f"Layer “{layer.name()}” has no features. Select {NEEDED}."
    return None


class SimilarityOverlay:
    """The similarity layer of one embedding layer, updated from a clicked feature."""

    def __init__(self, layer: QgsVectorLayer, prefix: str = "emb_", pixels_per_cell: float = 3.0) -> None:
        import numpy as np

        from mobclip_core.analysis.similarity import SimilarityIndex
        from mobclip_core.embeddings import embedding_columns

        from ..processing_algorithms.base import numbers

        self.layer = layer
        names = layer.fields().names()
        cols = embedding_columns(names, prefix)
        self.cell_mode = "h3_cell" in names
        idx = [names.index(c) for c in cols]
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
        request.setSubsetOfAttributes(idx + ([names.index("h3_cell")] if self.cell_mode else []))
        fids, rows, cells = [], [], []
        for f in layer.getFeatures(request):
            attrs = f.attributes()
            fids.append(f.id())
            rows.append([attrs[i] for i in idx])
            if self.cell_mode:
                cells.append(str(attrs[names.index("h3_cell")]))
        self.fids = np.asarray(fids, dtype=np.int64)
        self.row_of_fid = {fid: i for i, fid in enumerate(fids)}
        self.index = SimilarityIndex.from_values(numbers(rows, len(cols)))
        self.scores = np.full(len(fids), np.nan, dtype=np.float32)
        self.path = f"/vsimem/mobclip_similarity_{next(_COUNTER)}.tif"
        self.result = self._raster(cells, pixels_per_cell) if self.cell_mode else self._copy()

    # --- the result layer -------------------------------------------------------------------------------------
    def _raster(self, cells, pixels_per_cell):
        from osgeo import gdal, osr

        from mobclip_core.grid import strings_to_cells
        from mobclip_core.rasterize import raster_grid

        ids = strings_to_cells(cells)
        _, (x0, y0, px), width, height, pix_cells = raster_grid(ids, pixels_per_cell)
        import pandas as pd

        self.pixels = pd.Index(ids).get_indexer(pix_cells).reshape(height, width)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(4326)
        ds = gdal.GetDriverByName("GTiff").Create(self.path, width, height, 1, gdal.GDT_Float32)
        ds.SetGeoTransform((x0, px, 0.0, y0, 0.0, -px))
        ds.SetProjection(srs.ExportToWkt())
        ds.GetRasterBand(1).SetNoDataValue(float("nan"))
        ds = None
        self._write_raster()
        layer = QgsRasterLayer(self.path, f"Similarity to the clicked place ({self.layer.name()})", "gdal")
        return layer

    def _write_raster(self) -> None:
        import numpy as np
        from osgeo import gdal

        data = np.where(self.pixels >= 0, self.scores[self.pixels], np.nan).astype(np.float32)
        ds = gdal.Open(self.path, gdal.GA_Update)
        ds.GetRasterBand(1).WriteArray(data)
        ds = None

    def _copy(self) -> QgsVectorLayer:
        crs = self.layer.crs().authid() or QgsCoordinateReferenceSystem().authid()
        geometry = {0: "Point", 1: "LineString", 2: "Polygon"}.get(int(self.layer.geometryType()), "Polygon")
        copy = QgsVectorLayer(f"Multi{geometry}?crs={crs}", f"Similarity ({self.layer.name()})", "memory")
        copy.dataProvider().addAttributes(
            [QgsField("source_fid", QVariant.LongLong), QgsField("similarity", QVariant.Double)]
        )
        copy.updateFields()
        features = []
        for f in self.layer.getFeatures(QgsFeatureRequest().setNoAttributes()):
            g = QgsFeature(copy.fields())
            geom = QgsGeometry(f.geometry())
            geom.convertToMultiType()
            g.setGeometry(geom)
            g.setAttributes([f.id(), None])
            features.append(g)
        copy.dataProvider().addFeatures(features)
        self.copy_fids = [f.id() for f in copy.getFeatures(QgsFeatureRequest().setNoAttributes())]
        self.similarity_field = copy.fields().indexOf("similarity")
        return copy

    # --- clicks -----------------------------------------------------------------------------------------------
    def row_at(self, point: QgsPointXY, tolerance: float = 0.0) -> int | None:
        """The row of the feature under ``point`` (in the embedding layer's CRS), or None."""
        rect = QgsRectangle(point.x() - tolerance, point.y() - tolerance, point.x() + tolerance, point.y() + tolerance)
        here = QgsGeometry.fromPointXY(point)
        for f in self.layer.getFeatures(QgsFeatureRequest().setFilterRect(rect).setNoAttributes()):
            if f.hasGeometry() and (tolerance > 0 or f.geometry().intersects(here)):
                return self.row_of_fid.get(f.id())
        return None

    def update(self, row: int):
        """Similarity of every place to the place at ``row``; the result layer shows it. Returns the scores."""
        self.scores = self.index.similarity(self.index.direction(rows=[row]))
        if self.cell_mode:
            self._write_raster()
            self.result.dataProvider().reloadData()
        else:
            values = self.scores.tolist()
            changes = {fid: {self.similarity_field: None if v != v else v} for fid, v in zip(self.copy_fids, values)}
            self.result.dataProvider().changeAttributeValues(changes)
        return self.scores

    def close(self) -> None:
        from osgeo import gdal

        if self.cell_mode:
            gdal.Unlink(self.path)


class SimilarityMapTool(QgsMapToolEmitPoint):
    """Click a place of the active embedding layer: the similarity layer above it shows how alike every place is."""

    def __init__(self, canvas, layer: QgsVectorLayer, prefix: str = "emb_") -> None:
        super().__init__(canvas)
        self.layer = layer
        self.prefix = prefix
        self.overlay = SimilarityOverlay(layer, prefix)
        self.result_id = self.overlay.result.id()
        self._styled = False
        self.last_row: int | None = None
        QgsProject.instance().addMapLayer(self.overlay.result)
        self.canvasClicked.connect(self.clicked)

    def result_in_project(self) -> bool:
        """False once the user has removed the similarity layer (QGIS then deletes it)."""
        return QgsProject.instance().mapLayer(self.result_id) is not None

    def clicked(self, point, button) -> None:  # noqa: ARG002 - Qt signal signature
        """A map point (canvas CRS) -> the place under it -> every place's similarity to it."""
        if not self.result_in_project():  # removed by the user: a new similarity layer, not a dead object
            self.overlay.close()
            self.overlay = SimilarityOverlay(self.layer, self.prefix)
            self.result_id = self.overlay.result.id()
            self._styled = False
            QgsProject.instance().addMapLayer(self.overlay.result)
        row = self.overlay.row_at(QgsPointXY(self.toLayerCoordinates(self.layer, point)))
        if row is None and self.layer.geometryType() != 2:  # points and lines: within the search radius
            r = self.searchRadiusMU(self.canvas())
            box = self.toLayerCoordinates(
                self.layer, QgsRectangle(point.x() - r, point.y() - r, point.x() + r, point.y() + r)
            )
            centre = box.center()
            row = self.overlay.row_at(QgsPointXY(centre), tolerance=max(box.width(), box.height()) / 2)
        if row is None:
            return
        self.last_row = row
        self.overlay.update(row)
        if self.overlay.cell_mode and not self._styled:
            from ..processing_algorithms._places import pseudocolour_style

            pseudocolour_style(self.overlay.result)
            self._styled = True
        elif not self.overlay.cell_mode:
            from ..processing_algorithms._places import graduated_style

            graduated_style(self.overlay.result, "similarity")
        self.overlay.result.triggerRepaint()
