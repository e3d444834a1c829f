"""Aggregate cell embeddings over (admin) polygons: mean and count of the cells whose centre is inside."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qgis.core import (
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QVariant

from ._embeddings import load_embedding_table
from .base import MobClipAlgorithm, nullable


class AggregateEmbeddings(MobClipAlgorithm):
    algorithm_name = "aggregate_embeddings"
    display_name = "Aggregate embeddings over polygons"
    help_text = (
        "For each polygon (census tracts, districts, counties) the mean of the embeddings of the H3 cells whose "
        "centre lies inside it, and their count in 'cell_count' (the paper's admin-level protocol). Adjacent "
        "polygons never share a cell. Polygons too small to contain a cell centre take the cell of their "
        "representative point (cell_count 1, flagged in 'from_point')."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource("INPUT", self.tr("Polygons"), [QgsProcessing.TypeVectorPolygon])
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "EMBEDDINGS", self.tr("Embedding table"), fileFilter="Embedding tables (*.parquet *.gpkg)"
            )
        )
        self.addParameter(QgsProcessingParameterString("PREFIX", self.tr("Field name prefix"), "emb_"))
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                "OUTPUT", self.tr("Polygons with mean embeddings"), QgsProcessing.TypeVectorPolygon
            )
        )

    def execute(self, parameters, context, feedback):
        import shapely

        from mobclip_core.grid import cells_to_strings, points_to_cells, polygons_to_cells

        source = self.require_source(parameters, "INPUT", context)
        table, res, cols = load_embedding_table(self.parameterAsFile(parameters, "EMBEDDINGS", context))
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        features, geoms = self.read_wgs84(source, context, feedback, progress_span=(0, 30))
        pairs = polygons_to_cells(geoms, res)
        self.check_cancel(feedback)
        feedback.setProgress(50)
        n = len(features)
        covered = np.zeros(n, dtype=bool)
        covered[pairs["polygon"].to_numpy()] = True
        from_point = np.zeros(n, dtype=bool)
        todo = np.flatnonzero(~covered & np.array([g is not None for g in geoms]))
        if todo.size:
            reps = shapely.point_on_surface(geoms[todo])
            extra = pd.DataFrame(
                {"polygon": todo, "h3_cell": points_to_cells(shapely.get_x(reps), shapely.get_y(reps), res)}
            )
            pairs = pd.concat([pairs, extra], ignore_index=True)
            from_point[todo] = True
        pos = table.index.get_indexer(cells_to_strings(pairs["h3_cell"].to_numpy(np.uint64)))
        hit = pos >= 0
        values = table.to_numpy(dtype=np.float64)[pos[hit]]
        poly = pairs["polygon"].to_numpy()[hit]
        sums = np.zeros((n, values.shape[1]))
        np.add.at(sums, poly, values)
        counts = np.bincount(poly, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts[:, None]
        means[counts == 0] = np.nan
        feedback.setProgress(70)
        if counts.sum() == 0:
            raise QgsProcessingException(
                self.tr("No polygon contains a cell of the embedding table: does the layer cover the embedded region?")
            )
        extra_fields = QgsFields()
        extra_fields.append(QgsField("cell_count", QVariant.Int))
        extra_fields.append(QgsField("from_point", QVariant.Bool))
        fields = self.merge_fields(
            source.fields(), extra_fields, self.double_fields([f"{prefix}{i}" for i in range(len(cols))])
        )
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, fields, source.wkbType(), source.sourceCrs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        attrs = (
            f.attributes() + [int(c), bool(fp and c > 0)] + nullable(m)
            for f, c, fp, m in zip(features, counts, from_point, means)
        )
        self.write_qgs_features(sink, attrs, (f.geometry() for f in features), feedback, total=n, span=(70, 100))
        feedback.pushInfo(self.tr(f"{int((counts > 0).sum())} of {n} polygons got embeddings (res {res})"))
        return {"OUTPUT": dest}
