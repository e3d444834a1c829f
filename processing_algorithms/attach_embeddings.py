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
        "GeoParquet or GeoPackage written by mobclip (train/export); its resolution is read from the table. "
        "Instead of a table, give a distilled model (a folder written by mobclip, or a published "
        "distilled_MobCLIP.pth): it embeds any coordinate, no mobility data needed (requires torch)."
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
                "EMBEDDINGS",
                self.tr("Embedding table"),
                fileFilter="Embedding tables (*.parquet *.gpkg)",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                self.tr("or a distilled model checkpoint (.pth)"),
                behavior=QgsProcessingParameterFile.File,
                optional=True,
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
        import shapely

        from mobclip_core.grid import cell_centroids, points_to_cells, strings_to_cells

        source = self.require_source(parameters, "INPUT", context)
        table_path = self.parameterAsFile(parameters, "EMBEDDINGS", context)
        model_path = self.parameterAsFile(parameters, "MODEL", context)
        if bool(table_path) == bool(model_path):
            raise QgsProcessingException(
                self.tr("Give either an embedding table or a distilled model checkpoint (exactly one of the two)")
            )
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        cell_field = self.parameterAsString(parameters, "CELL_FIELD", context)
        features, geoms = self.read_wgs84(source, context, feedback, progress_span=(0, 40))
        if model_path:
            from mobclip_core.encoders.distilled import DistilledEncoder

            encoder = DistilledEncoder.load(model_path)
        else:
            table, res, cols = load_embedding_table(table_path)
        if cell_field:
            ids = [f[cell_field] for f in features]
            cells = strings_to_cells(np.array([str(i) if i else "0" for i in ids]))
            x, y = cell_centroids(cells)
        else:
            pts = shapely.point_on_surface(np.array([g if g is not None else shapely.Point() for g in geoms]))
            x, y = shapely.get_x(pts), shapely.get_y(pts)
        ok = np.isfinite(x) & np.isfinite(y)
        if model_path:
            values = np.full((len(features), encoder.config.out_dim), np.nan)
            values[ok] = encoder.embed(x[ok], y[ok])
            n_dims = values.shape[1]
            feedback.pushInfo(self.tr(f"embedded {int(ok.sum())} features with the distilled model"))
        else:
            if not cell_field:
                cells = np.zeros(len(features), dtype=np.uint64)
                cells[ok] = points_to_cells(x[ok], y[ok], res)
            values = lookup(table, cells)
            n_dims = len(cols)
            found = int(np.isfinite(values[:, 0]).sum())
            feedback.pushInfo(self.tr(f"{found} of {len(features)} features fall in cells of the table (res {res})"))
            if found == 0:
                raise QgsProcessingException(
                    self.tr("No feature falls in a cell of the embedding table: does the layer cover the region?")
                )
        new_fields = self.double_fields([f"{prefix}{i}" for i in range(n_dims)])
        fields = self.merge_fields(source.fields(), new_fields)
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, fields, source.wkbType(), source.sourceCrs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        attrs = (f.attributes() + nullable(v) for f, v in zip(features, values))
        self.write_qgs_features(sink, attrs, (f.geometry() for f in features), feedback, total=len(features))
        return {"OUTPUT": dest}
