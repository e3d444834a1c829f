"""Tessellate a polygon layer, a raster layer or a layer's extent into H3 cells."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from mobclip_core.options import Containment, choices

from .base import WGS84, MobClipAlgorithm, nullable

CONTAINMENT = choices(Containment)
STATISTICS = ["sum", "mean"]


class TessellateToH3(MobClipAlgorithm):
    algorithm_name = "tessellate"
    display_name = "Tessellate to H3 cells"
    group_name = "H3"
    resolution_parameters = ("RESOLUTION",)
    help_text = (
        "Covers a polygon layer's area (or its extent) with H3 cells at a chosen resolution, or summarises a "
        "raster per cell. Polygons: 'center' keeps cells whose centre lies inside (adjacent polygons get disjoint "
        "cells), 'overlap' every cell touching a polygon; each cell records the polygon it came from. Polygons "
        "across the antimeridian (edges from 179 to -179 degrees) and around the poles are handled; longitudes "
        "stored past 180 are wrapped. Rasters: pixels go to the cell holding their centre, with per-band sums "
        "(counts such as population; the total is preserved) or means (intensities). Any CRS in; cells come out "
        "in EPSG:4326 with their id in the field h3_cell. 'Selected polygons only' tessellates the polygons "
        "selected on the map (or their extent)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "INPUT",
                self.tr("Polygon or raster layer"),
                types=[QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeRaster],
            )
        )
        self.addParameter(  # a map-layer input (polygons or a raster) has no "selected features only" box of its own
            QgsProcessingParameterBoolean("SELECTED_ONLY", self.tr("Selected polygons only"), False)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION", self.tr("H3 resolution (0-15)"), QgsProcessingParameterNumber.Integer, 9, False, 0, 15
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("CONTAINMENT", self.tr("Cells to keep (polygons)"), CONTAINMENT, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "EXTENT_ONLY", self.tr("Tessellate the layer's extent instead of its polygons"), False
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("STATISTIC", self.tr("Raster statistic per cell"), STATISTICS, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink("OUTPUT", self.tr("H3 cells"), QgsProcessing.TypeVectorPolygon)
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802
        try:
            parameters = _as_layer_and_selection(parameters)
        except QgsProcessingException as exc:
            return False, str(exc)
        return super().checkParameterValues(parameters, context)

    def execute(self, parameters, context, feedback):
        from mobclip_core.grid import cells_to_strings, cells_to_wkb, strings_to_cells

        parameters = _as_layer_and_selection(parameters)
        layer = self.parameterAsLayer(parameters, "INPUT", context)
        if layer is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, "INPUT"))
        if not layer.crs().isValid():
            raise QgsProcessingException(self.tr(f"Layer '{layer.name()}' has no valid CRS: set it first"))
        if self.parameterAsBool(parameters, "SELECTED_ONLY", context):
            if not isinstance(layer, QgsVectorLayer):
                raise QgsProcessingException(
                    self.tr(f"'Selected polygons only' applies to polygon layers; '{layer.name()}' is a raster")
                )
            if not layer.selectedFeatureCount():
                raise QgsProcessingException(
                    self.tr(
                        f"'Selected polygons only' is ticked but no feature of '{layer.name()}' is selected: select "
                        "the polygons to tessellate on the map, or untick it (a layer read from a file, as "
                        "qgis_process reads it, has no selection)"
                    )
                )
        res = self.parameterAsInt(parameters, "RESOLUTION", context)
        fields = QgsFields()
        fields.append(QgsField("h3_cell", QVariant.String))
        fields.append(QgsField("resolution", QVariant.Int))
        if isinstance(layer, QgsRasterLayer) and not self.parameterAsBool(parameters, "EXTENT_ONLY", context):
            table = self._raster_cells(layer, res, parameters, context, feedback)
            cells = strings_to_cells(table.index.to_numpy())
            counts = table.pop("pixel_count").to_numpy()
            for c in table.columns:
                fields.append(QgsField(str(c), QVariant.Double))
            fields.append(QgsField("pixel_count", QVariant.Int))
            rows = (
                [s, res, *nullable(r), int(n)]
                for s, r, n in zip(cells_to_strings(cells), table.to_numpy(dtype=float), counts)
            )
        else:
            from mobclip_core.grid import tessellate

            containment = CONTAINMENT[self.parameterAsEnum(parameters, "CONTAINMENT", context)]
            wkbs = self._polygons(layer, parameters, context, feedback)
            pairs = tessellate(wkbs, res, containment=containment, on_progress=self.progress(feedback, 20, 70))
            cells = pairs["h3_cell"].to_numpy()
            fields.append(QgsField("polygon", QVariant.Int))
            rows = ([s, res, int(p)] for s, p in zip(cells_to_strings(cells), pairs["polygon"].to_numpy()))
        self.check_cancel(feedback)
        feedback.setProgress(70)
        if cells.size == 0:
            feedback.pushWarning(self.tr("No cell centre falls inside the input: try a finer resolution or 'overlap'"))
        sink, dest = self.create_sink(
            parameters, "OUTPUT", context, fields, QgsWkbTypes.MultiPolygon, QgsCoordinateReferenceSystem(WGS84)
        )
        geoms = (_multi(w) for w in cells_to_wkb(cells))
        n = self.write_features(sink, rows, geoms, feedback, total=cells.size, span=(70, 100))
        feedback.pushInfo(self.tr(f"{n} cells at resolution {res}"))
        return {"OUTPUT": dest}

    def _polygons(self, layer, parameters, context, feedback) -> list:
        """The input polygons (or the layer's extent), all or the selected ones, as WKB in EPSG:4326."""
        selected = self.parameterAsBool(parameters, "SELECTED_ONLY", context)
        if self.parameterAsBool(parameters, "EXTENT_ONLY", context) or not isinstance(layer, QgsVectorLayer):
            xform = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem(WGS84), context.transformContext())
            extent = xform.transformBoundingBox(layer.boundingBoxOfSelected() if selected else layer.extent())
            return [bytes(QgsGeometry.fromRect(extent).asWkb())]
        if layer.geometryType() != QgsWkbTypes.PolygonGeometry:
            raise QgsProcessingException(self.tr("Vector input must be a polygon layer (or tick 'extent')"))
        if selected:  # read as QGIS reads a selection, with the context's handling of invalid geometries
            parameters = {**parameters, "INPUT": QgsProcessingFeatureSourceDefinition(layer.id(), True)}
        source = self.require_source(parameters, "INPUT", context)
        _, wkbs = self.read_wgs84(source, context, feedback)
        if all(w is None for w in wkbs):
            raise QgsProcessingException(self.tr("Every geometry of the input is empty"))
        return wkbs

    def _raster_cells(self, layer, res, parameters, context, feedback):
        """Per-cell band statistics of a raster read with QGIS's GDAL (never rasterio inside QGIS)."""
        from mobclip_core.grid import pixels_to_cells

        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                self.tr(f"Raster '{layer.name()}' is not a file GDAL reads: save it as a GeoTIFF first")
            )
        statistic = STATISTICS[self.parameterAsEnum(parameters, "STATISTIC", context)]
        blocks, names = gdal_pixel_blocks(layer, self.progress(feedback, 0, 60))
        return pixels_to_cells(blocks, res, names, statistic=statistic, source=f"raster '{layer.name()}'")


def _as_layer_and_selection(parameters: dict) -> dict:
    """INPUT given as a feature source (a Python chain or a model passing "selected features only", as every other
    algorithm here takes it) as what this algorithm's map-layer input takes: the layer and SELECTED_ONLY."""
    value = parameters.get("INPUT")
    if not isinstance(value, QgsProcessingFeatureSourceDefinition):
        return parameters
    layer = value.source.staticValue() if value.source.propertyType() == value.source.StaticProperty else None
    if not layer or value.featureLimit >= 0 or getattr(value, "filterExpression", ""):
        raise QgsProcessingException(
            "Tessellate takes a layer (with 'Selected polygons only' for a selection), not a feature limit, a filter "
            "or a layer given by an expression: select the polygons instead, or save them as a layer first"
        )
    selected = value.selectedFeaturesOnly or bool(parameters.get("SELECTED_ONLY", False))
    return {**parameters, "INPUT": layer, "SELECTED_ONLY": selected}


def gdal_pixel_blocks(layer, progress, rows_per_block: int = 256):
    """(generator of (values[bands, n], lon[n], lat[n]) row blocks, band names) of a raster layer, read with the
    GDAL QGIS itself uses, pixel centres transformed to EPSG:4326 with QGIS's PROJ (through ``osr``)."""
    import numpy as np
    from osgeo import gdal, osr

    ds = gdal.Open(layer.source().split("|")[0])
    if ds is None:
        raise QgsProcessingException(f"GDAL cannot open raster '{layer.name()}' ({gdal.GetLastErrorMsg()})")
    src = osr.SpatialReference()
    src.ImportFromWkt(layer.crs().toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL))
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    for srs in (src, dst):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if src.IsSame(dst) else osr.CoordinateTransformation(src, dst)
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    names = [b.GetDescription() or f"band_{i + 1}" for i, b in enumerate(bands)]
    x0, dx, rx, y0, ry, dy = ds.GetGeoTransform()
    width, height = ds.RasterXSize, ds.RasterYSize

    def blocks(dataset=ds):  # the generator holds the dataset: GDAL closes it (and frees its bands) when dropped
        cols = np.arange(width) + 0.5
        for row0 in range(0, height, rows_per_block):
            n = min(rows_per_block, height - row0)
            data = np.stack([b.ReadAsArray(0, row0, width, n).astype(np.float64) for b in bands])
            data = data.reshape(len(bands), -1)
            for k, b in enumerate(bands):
                nodata = b.GetNoDataValue()
                if nodata is not None:
                    data[:, data[k] == nodata] = np.nan
            rr, cc = np.meshgrid(np.arange(row0, row0 + n) + 0.5, cols, indexing="ij")
            xs = x0 + cc.ravel() * dx + rr.ravel() * rx
            ys = y0 + cc.ravel() * ry + rr.ravel() * dy
            if transform is not None:
                out = np.asarray(transform.TransformPoints(np.c_[xs, ys]), dtype=np.float64)
                xs, ys = out[:, 0], out[:, 1]
            yield data, xs, ys
            progress((row0 + n) / height)
        del dataset

    return blocks(), names


def _multi(wkb: bytes) -> QgsGeometry:
    g = QgsGeometry()
    g.fromWkb(wkb)
    g.convertToMultiType()
    return g
