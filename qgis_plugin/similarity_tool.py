"""Similar places, interactively: click a cell or feature on the map and the similarity layer redraws at once.

``SimilarityOverlay`` holds the work (no widgets, testable headless): it reads the layer's emb_* fields once into a
``SimilarityIndex`` (unit float32 rows; from a file layer as numpy columns through GDAL's Arrow interface, else by
iterating the features), and answers a click with one matrix-vector product. For a layer of H3 cells (an h3_cell
field) the result is a raster whose pixel -> cell map is computed once, so a click rewrites one float32 array in
GDAL's memory file system and QGIS redraws a raster; for other features (e.g. aggregated polygons) it is a memory
copy of the layer whose 'similarity' field is updated in one ``changeAttributeValues`` call and restyled in numpy.
Measured on 100,000 cells in benchmarks/bench_map_tool.py. ``SimilarityMapTool`` is the map tool that feeds it
clicks. Only QGIS, QGIS's GDAL, numpy and the library's numpy code are used here.
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


def read_with_qgis(layer: QgsVectorLayer, columns: list[str], with_cells: bool) -> tuple:
    """(feature ids, (n, d) float64 values, h3_cell strings or None), iterating the layer's features: works on
    every layer, about 20 s on 100,000 features x 128 fields (benchmarks/bench_map_tool.py)."""
    import numpy as np

    from ..processing_algorithms.base import numbers

    names = layer.fields().names()
    idx = [names.index(c) for c in columns] + ([names.index("h3_cell")] if with_cells else [])
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
    request.setSubsetOfAttributes(idx)
    fids, rows, cells = [], [], []
    for f in layer.getFeatures(request):
        attrs = f.attributes()
        fids.append(f.id())
        rows.append([attrs[i] for i in idx[: len(columns)]])
        if with_cells:
            cells.append(str(attrs[idx[-1]]))
    return np.asarray(fids, dtype=np.int64), numbers(rows, len(columns)), cells if with_cells else None


def read_with_ogr(layer: QgsVectorLayer, columns: list[str], with_cells: bool) -> tuple | None:
    """What ``read_with_qgis`` returns, read straight from the layer's file as numpy columns through GDAL's Arrow
    interface (GDAL >= 3.6; several times faster), or None where that does not apply: not a file layer, a filter or
    edits on the layer, an older GDAL, or a result that does not match the layer's own features."""
    if layer.dataProvider().name() != "ogr" or layer.subsetString() or layer.isEditable():
        return None
    from osgeo import gdal, ogr

    if not hasattr(ogr.Layer, "GetArrowStreamAsNumPy"):
        return None
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        found = _arrow_columns(layer, columns, with_cells)
    except Exception:  # noqa: BLE001 - any failure of the fast path falls back to iterating the features
        found = None
    finally:
        gdal.PopErrorHandler()
    if found is None or not _matches_layer(layer, columns, *found):
        return None
    return found


def _arrow_columns(layer: QgsVectorLayer, columns: list[str], with_cells: bool) -> tuple | None:
    """(fids, (n, d) float32 values, h3_cell strings or None) from the layer's OGR source, or None."""
    import numpy as np
    from osgeo import gdal
    from qgis.core import QgsProviderRegistry

    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    ds = gdal.OpenEx(parts["path"], gdal.OF_VECTOR | gdal.OF_READONLY)
    if ds is None:
        return None
    name, number = parts.get("layerName"), parts.get("layerId")
    source = ds.GetLayerByName(name) if name else ds.GetLayer(int(number or 0))
    defn = source.GetLayerDefn()
    all_fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    wanted = list(columns) + (["h3_cell"] if with_cells else [])
    fids, found = None, {}
    for start in range(0, len(wanted), 64):  # GDAL 3.6 reads a GeoPackage through Arrow only up to ~127 fields
        chunk = wanted[start : start + 64]
        source.SetIgnoredFields(["OGR_GEOMETRY", "OGR_STYLE"] + [f for f in all_fields if f not in chunk])
        source.ResetReading()
        batches = list(source.GetArrowStreamAsNumPy())
        got = np.concatenate([b[source.GetFIDColumn() or "OGC_FID"] for b in batches]) if batches else None
        if got is None or (fids is not None and not np.array_equal(got, fids)):
            return None
        fids = got
        found.update({c: np.ma.concatenate([b[c] for b in batches]) for c in chunk})
    if any(found[c].dtype.kind not in "fiub" for c in columns):
        return None  # text in an emb_ field: the features' path turns it into NaN
    values = np.column_stack([found[c].astype(np.float32).filled(np.nan) for c in columns])
    cells = None
    if with_cells:
        if np.ma.is_masked(found["h3_cell"]):
            return None
        cells = np.ma.getdata(found["h3_cell"]).astype(str).tolist()
    return fids.astype(np.int64), values, cells


def _matches_layer(layer: QgsVectorLayer, columns: list[str], fids, values, cells) -> bool:
    """Whether rows read from the file are the layer's features: same count, unique ids, and the first and last
    rows equal to what QGIS returns for those ids (a driver whose ids QGIS numbers otherwise fails this)."""
    import numpy as np

    if fids.size != layer.featureCount() or fids.size == 0 or np.unique(fids).size != fids.size:
        return False
    for row in {0, fids.size - 1}:
        f = layer.getFeature(int(fids[row]))
        if not f.isValid() or (cells is not None and str(f["h3_cell"]) != cells[row]):
            return False
        expected = np.array([np.nan if f[c] == None else f[c] for c in columns], dtype=np.float64)  # noqa: E711
        if not np.allclose(values[row], expected.astype(np.float32), equal_nan=True):
            return False
    return True


class SimilarityOverlay:
    """The similarity layer of one embedding layer, updated from a clicked feature."""

    def __init__(self, layer: QgsVectorLayer, prefix: str = "emb_", pixels_per_cell: float = 3.0) -> None:
        import numpy as np

        from mobclip_core.analysis.similarity import SimilarityIndex
        from mobclip_core.embeddings import embedding_columns

        self.layer = layer
        cols = embedding_columns(layer.fields().names(), prefix)
        self.cell_mode = "h3_cell" in layer.fields().names()
        read = read_with_ogr(layer, cols, self.cell_mode) or read_with_qgis(layer, cols, self.cell_mode)
        self.fids, values, cells = read
        self.row_of_fid = dict(zip(self.fids.tolist(), range(self.fids.size)))
        self.index = SimilarityIndex.from_values(values)
        self.scores = np.full(self.fids.size, np.nan, dtype=np.float32)
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
        import numpy as np

        crs = self.layer.crs().authid() or QgsCoordinateReferenceSystem().authid()
        geometry = {0: "Point", 1: "LineString", 2: "Polygon"}.get(int(self.layer.geometryType()), "Polygon")
        copy = QgsVectorLayer(f"Multi{geometry}?crs={crs}", f"Similarity ({self.layer.name()})", "memory")
        copy.dataProvider().addAttributes(
            [QgsField("source_fid", QVariant.LongLong), QgsField("similarity", QVariant.Double)]
        )
        copy.updateFields()
        features, rows = [], []
        for f in self.layer.getFeatures(QgsFeatureRequest().setNoAttributes()):
            g = QgsFeature(copy.fields())
            geom = QgsGeometry(f.geometry())
            geom.convertToMultiType()
            g.setGeometry(geom)
            g.setAttributes([f.id(), None])
            features.append(g)
            rows.append(self.row_of_fid[f.id()])
        _, added = copy.dataProvider().addFeatures(features)
        self.copy_fids = [f.id() for f in added]
        self.copy_rows = np.asarray(rows, dtype=np.int64)  # the index row of each copied feature
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
            values = self.scores[self.copy_rows].tolist()
            field = self.similarity_field
            changes = {fid: {field: None if v != v else v} for fid, v in zip(self.copy_fids, values)}
            self.result.dataProvider().changeAttributeValues(changes)
        return self.scores

    def close(self) -> None:
        from osgeo import gdal

        if self.cell_mode:
            gdal.Unlink(self.path)


def restyle_quantiles(layer: QgsVectorLayer, field: str, scores) -> None:
    """Quantile classes of ``field`` on ``layer`` for new ``scores`` (the values the field now holds).

    The first time (or when quantiles tie) QGIS's own quantile style (``graduated_style``, which reads every
    feature: 0.1-0.3 s on 100,000); after that the same classes are moved to the scores' quantiles in numpy."""
    import numpy as np
    from qgis.core import QgsClassificationMethod, QgsGraduatedSymbolRenderer

    from ..processing_algorithms._places import graduated_style

    renderer = layer.renderer()
    finite = scores[np.isfinite(scores)].astype(np.float64)
    if isinstance(renderer, QgsGraduatedSymbolRenderer) and renderer.classAttribute() == field and finite.size:
        n = len(renderer.ranges())
        breaks = np.quantile(finite, np.linspace(0.0, 1.0, n + 1))
        if n > 1 and (np.diff(breaks) > 0).all():
            renderer = renderer.clone()
            method = renderer.classificationMethod()
            for i, (lower, upper) in enumerate(zip(breaks[:-1].tolist(), breaks[1:].tolist())):
                renderer.updateRangeLowerValue(i, lower)
                renderer.updateRangeUpperValue(i, upper)
                position = QgsClassificationMethod.Inner
                if i in (0, n - 1):
                    position = QgsClassificationMethod.LowerBound if i == 0 else QgsClassificationMethod.UpperBound
                renderer.updateRangeLabel(i, method.labelForRange(lower, upper, position))
            layer.setRenderer(renderer)  # a new renderer: the legend follows
            return
    graduated_style(layer, field)


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
            restyle_quantiles(self.overlay.result, "similarity", self.overlay.scores)
        self.overlay.result.triggerRepaint()
