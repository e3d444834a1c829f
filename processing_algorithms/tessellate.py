"""Tessellate a polygon layer, a raster layer or a layer's extent into H3 cells."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
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

from ..qgis_plugin.dependencies import RASTER
from .base import WGS84, MobClipAlgorithm, nullable

CONTAINMENT = ["center", "overlap"]
STATISTICS = ["sum", "mean"]


class TessellateToH3(MobClipAlgorithm):
    algorithm_name = "tessellate"
    display_name = "Tessellate to H3 cells"
    group_name = "H3"
    requirements = RASTER
    help_text = (
        "Covers a polygon layer's area (or its extent) with H3 cells at a chosen resolution, or summarises a "
        "raster per cell. Polygons: 'center' keeps cells whose centre lies inside (adjacent polygons get disjoint "
        "cells), 'overlap' every cell touching a polygon; each cell records the polygon it came from. Rasters: "
        "pixels go to the cell holding their centre, with per-band sums (counts such as population; the total is "
        "preserved) or means (intensities). Any CRS in; cells come out in EPSG:4326 with their id in 'h3_cell'."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "INPUT",
                self.tr("Polygon or raster layer"),
                types=[QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeRaster],
            )
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

    def execute(self, parameters, context, feedback):
        from mobclip_core.grid import cells_to_polygons, cells_to_strings, polygons_to_cells, raster_to_cells

        layer = self.parameterAsLayer(parameters, "INPUT", context)
        if layer is None:
            raise QgsProcessingException(self.tr("No input layer"))
        if not layer.crs().isValid():
            raise QgsProcessingException(self.tr(f"Layer '{layer.name()}' has no valid CRS: set it first"))
        res = self.parameterAsInt(parameters, "RESOLUTION", context)
        containment = CONTAINMENT[self.parameterAsEnum(parameters, "CONTAINMENT", context)]
        extent_only = self.parameterAsBool(parameters, "EXTENT_ONLY", context)
        fields = QgsFields()
        fields.append(QgsField("h3_cell", QVariant.String))
        fields.append(QgsField("resolution", QVariant.Int))
        extra_cols: list[str] = []
        if isinstance(layer, QgsRasterLayer) and not extent_only:
            statistic = STATISTICS[self.parameterAsEnum(parameters, "STATISTIC", context)]
            table = raster_to_cells(
                layer.source(),
                res,
                statistic=statistic,
                progress=lambda f: (self.check_cancel(feedback), feedback.setProgress(70 * f)),
            )
            cells = np.array([int(c, 16) for c in table.index], dtype=np.uint64)
            extra_cols = list(table.columns)
            for c in extra_cols:
                fields.append(QgsField(str(c), QVariant.Int if c == "pixel_count" else QVariant.Double))
            rows = table.to_numpy(dtype=np.float64)
            attrs = (
                [s, res, *[int(v) if extra_cols[j] == "pixel_count" else v for j, v in enumerate(nullable(r))]]
                for s, r in zip(cells_to_strings(cells), rows)
            )
        else:
            import shapely

            if extent_only or not isinstance(layer, QgsVectorLayer):
                xform = QgsCoordinateTransform(
                    layer.crs(), QgsCoordinateReferenceSystem(WGS84), context.transformContext()
                )
                ext = xform.transformBoundingBox(layer.extent())
                geoms = np.array([shapely.box(ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum())])
            else:
                if layer.geometryType() != QgsWkbTypes.PolygonGeometry:
                    raise QgsProcessingException(self.tr("Vector input must be a polygon layer (or tick 'extent')"))
                source = self.require_source(parameters, "INPUT", context)
                _, geoms = self.read_wgs84(source, context, feedback)
                if all(g is None for g in geoms):
                    raise QgsProcessingException(self.tr("Every geometry of the input is empty"))
            pairs = polygons_to_cells(geoms, res, containment=containment)
            feedback.setProgress(70)
            pairs = pairs.drop_duplicates("h3_cell")
            cells = pairs["h3_cell"].to_numpy(np.uint64)
            fields.append(QgsField("polygon", QVariant.Int))
            attrs = ([s, res, int(p)] for s, p in zip(cells_to_strings(cells), pairs["polygon"].to_numpy()))
        if cells.size == 0:
            feedback.pushWarning(self.tr("No cell centre falls inside the input: try a finer resolution or 'overlap'"))
        sink, dest = self.parameterAsSink(
            parameters, "OUTPUT", context, fields, QgsWkbTypes.MultiPolygon, QgsCoordinateReferenceSystem(WGS84)
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        n = self.write_features(sink, attrs, cells_to_polygons(cells), feedback, total=cells.size)
        feedback.pushInfo(self.tr(f"{n} cells at resolution {res}"))
        return {"OUTPUT": dest}
