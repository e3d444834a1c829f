"""Aggregate cell embeddings over (admin) polygons: mean and count of the cells whose centre is inside."""

from __future__ import annotations

from qgis.core import (
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QVariant

from .base import MobClipAlgorithm, nullable


class AggregateEmbeddings(MobClipAlgorithm):
    algorithm_name = "aggregate_embeddings"
    display_name = "Aggregate embeddings over polygons"
    help_text = (
        "For each polygon (census tracts, districts, counties) the mean of the embeddings of the H3 cells whose "
        "centre lies inside it, and how many cells took part in 'cell_count' (the paper's admin-level protocol; "
        "the evaluation uses the same code). Adjacent polygons never share a cell. Polygons too small to contain "
        "a cell centre take the cell of their representative point (flagged in 'from_point'). Cells whose "
        "embedding has a missing value are left out of the mean."
    )

    geometry_hints = {"INPUT": "for points, use 'Attach embeddings to features'"}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource("INPUT", self.tr("Polygons"), [QgsProcessing.TypeVectorPolygon])
        )
        self.add_embedding_table_parameters()
        self.addParameter(QgsProcessingParameterString("PREFIX", self.tr("Field name prefix"), "emb_"))
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                "OUTPUT", self.tr("Polygons with mean embeddings"), QgsProcessing.TypeVectorPolygon
            )
        )

    def execute(self, parameters, context, feedback):
        import numpy as np

        from mobclip_core.embeddings import aggregate_over_polygons, table_resolution

        source = self.require_source(parameters, "INPUT", context)
        table = self.embedding_table(parameters, context)
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        features, wkbs = self.read_wgs84(source, context, feedback, span=(0, 30))
        means = aggregate_over_polygons(table, wkbs, self.progress(feedback, 30, 70))
        n_with = int(np.isfinite(means.values).all(axis=1).sum())  # cells inside, or the cell of a small polygon
        if n_with == 0:
            raise QgsProcessingException(
                self.tr("No polygon contains a cell of the embedding table: does the layer cover the embedded region?")
            )
        extra = QgsFields()
        extra.append(QgsField("cell_count", QVariant.Int))
        extra.append(QgsField("from_point", QVariant.Bool))
        names = [f"{prefix}{i}" for i in range(table.shape[1])]
        out = self.output_fields(source.fields(), extra, self.double_fields(names), family=prefix)
        sink, dest = self.create_sink(parameters, "OUTPUT", context, out.fields, source.wkbType(), source.sourceCrs())
        rows = (
            out.row(f.attributes(), [int(c), bool(p)] + nullable(m))
            for f, c, p, m in zip(features, means.cell_count, means.from_point, means.values)
        )
        self.write_features(sink, rows, (f.geometry() for f in features), feedback, total=len(features), span=(70, 100))
        missing = sum(w is None for w in wkbs)
        self.report_coverage(feedback, n_with, len(features), "polygons", table_resolution(table), missing)
        return {"OUTPUT": dest}
