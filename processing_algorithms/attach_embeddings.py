"""Attach embeddings to points, polygons or H3 cells by cell lookup."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ._embeddings import load_embedding_table, lookup
from .base import MobClipAlgorithm, nullable


class AttachEmbeddings(MobClipAlgorithm):
    algorithm_name = "attach_embeddings"
    display_name = "Attach embeddings to features"
    help_text = (
        "Adds the embedding of the H3 cell each feature falls in: points by their location, polygons by their "
        "representative point (use 'Aggregate embeddings over polygons' for a mean over the polygon), or H3 cell "
        "layers by their cell id field. Features outside the table's cells get NULL. The embedding table is a "
        "GeoParquet or GeoPackage written by mobclip (train/export); its resolution is read from the table."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "INPUT",
                self.tr("Points, polygons or H3 cells"),
                [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon],
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "EMBEDDINGS", self.tr("Embedding table"), fileFilter="Embedding tables (*.parquet *.gpkg)"
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "CELL_FIELD",
                self.tr("H3 cell id field (optional; else located by geometry)"),
                parentLayerParameterName="INPUT",
                type=QgsProcessingParameterField.String,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterString("PREFIX", self.tr("Field name prefix"), "emb_"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("With embeddings")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.grid import points_to_cells, strings_to_cells

        source = self.require_source(parameters, "INPUT", context)
        table, res, cols = load_embedding_table(self.parameterAsFile(parameters, "EMBEDDINGS", context))
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        cell_field = self.parameterAsString(parameters, "CELL_FIELD", context)
        features, geoms = self.read_wgs84(source, context, feedback, progress_span=(0, 40))
        if cell_field:
            ids = [f[cell_field] for f in features]
            cells = strings_to_cells(np.array([str(i) if i else "0" for i in ids]))
        else:
            import shapely

            pts = shapely.point_on_surface(np.array([g if g is not None else shapely.Point() for g in geoms]))
            x, y = shapely.get_x(pts), shapely.get_y(pts)
            ok = np.isfinite(x) & np.isfinite(y)
            cells = np.zeros(len(features), dtype=np.uint64)
            cells[ok] = points_to_cells(x[ok], y[ok], res)
        values = lookup(table, cells)
        found = int(np.isfinite(values[:, 0]).sum())
        feedback.pushInfo(self.tr(f"{found} of {len(features)} features fall in cells of the table (res {res})"))
        if found == 0:
            raise QgsProcessingException(
                self.tr("No feature falls in a cell of the embedding table: does the layer cover the embedded region?")
            )
        new_fields = self.double_fields([f"{prefix}{i}" for i in range(len(cols))])
        fields = self.merge_fields(source.fields(), new_fields)
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, fields, source.wkbType(), source.sourceCrs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        attrs = (f.attributes() + nullable(v) for f, v in zip(features, values))
        self.write_qgs_features(sink, attrs, (f.geometry() for f in features), feedback, total=len(features))
        return {"OUTPUT": dest}
