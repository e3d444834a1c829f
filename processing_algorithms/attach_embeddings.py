"""Attach embeddings to points, polygons or H3 cells by cell lookup, or from a distilled model."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QVariant

from .base import MobClipAlgorithm, nullable
from .child import add_outside_parameter, embed_with_model, outside_mode


class AttachEmbeddings(MobClipAlgorithm):
    algorithm_name = "attach_embeddings"
    display_name = "Attach embeddings to features"
    help_text = (
        "Adds the embedding of the H3 cell each feature falls in: points by their location, polygons by their "
        "representative point (use 'Aggregate embeddings over polygons' for a mean over the polygon), or H3 cell "
        "layers by their cell id field (a NULL id gives NULL embeddings). Features outside the table's cells get "
        "NULL. The embedding table is a GeoParquet or GeoPackage written by mobclip (train or export), or such a "
        "layer already in the project; its resolution is read from the table. Instead of a table, give a distilled "
        "model (the model.pth that 'Distil a coordinate encoder' or mobclip distil writes, or a published "
        "distilled_MobCLIP.pth): it embeds any coordinate, no "
        "mobility data needed; it runs in a separate Python process and needs the training packages. A model "
        "written by mobclip knows the area it was trained on: locations outside it are counted in a warning and "
        "embedded anyway (extrapolated values), or get NULL if you choose so."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "INPUT",
                self.tr("Points, polygons or H3 cells"),
                [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon],
            )
        )
        self.add_embedding_table_parameters()
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                self.tr("or a distilled model checkpoint (.pth)"),
                behavior=QgsProcessingParameterFile.File,
                optional=True,
            )
        )
        add_outside_parameter(self)
        self.addParameter(
            QgsProcessingParameterField(
                "CELL_FIELD",
                self.tr("H3 cell id field (else each feature is located by its geometry)"),
                parentLayerParameterName="INPUT",
                type=QgsProcessingParameterField.String,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterString("PREFIX", self.tr("Field name prefix"), "emb_"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("With embeddings")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.embeddings import attach_to_cell_ids, attach_to_geometries, table_resolution

        source = self.require_source(parameters, "INPUT", context)
        model = self.parameterAsFile(parameters, "MODEL", context)
        table = self.embedding_table(parameters, context, required=not model)
        if (table is None) == (not model):
            raise QgsProcessingException(
                self.tr("Give either an embedding table or a distilled model checkpoint (exactly one of the two)")
            )
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        cell_field = self.parameterAsString(parameters, "CELL_FIELD", context)
        if model and cell_field:
            raise QgsProcessingException(
                self.tr("A cell id field works with an embedding table; a distilled model embeds locations instead")
            )
        if cell_field and source.fields().indexFromName(cell_field) < 0:
            text = [f.name() for f in source.fields() if f.type() == QVariant.String]
            raise QgsProcessingException(
                self.tr(
                    f"The layer has no field '{cell_field}' (the H3 cell id field): choose one of its text fields "
                    f"({', '.join(text[:8]) or 'none found'}), or leave it empty to place features by their geometry"
                )
            )
        features, wkbs = self.read_wgs84(source, context, feedback, span=(0, 40))
        if model:
            values = self._embed_with_model(model, wkbs, feedback, outside_mode(self, parameters, context))
        elif cell_field:
            values = attach_to_cell_ids(table, (None if f[cell_field] == None else f[cell_field] for f in features))  # noqa: E711 - QGIS NULL
        else:
            values = attach_to_geometries(table, wkbs)
        found = int((values == values).all(axis=1).sum())
        if table is not None:
            missing = 0 if cell_field else sum(w is None for w in wkbs)  # by cell id, a geometry is not needed
            self.report_coverage(feedback, found, len(features), "features", table_resolution(table), missing)
            if found == 0:
                raise QgsProcessingException(
                    self.tr("No feature falls in a cell of the embedding table: does the layer cover the region?")
                )
        new_fields = self.double_fields([f"{prefix}{i}" for i in range(values.shape[1])])
        out = self.output_fields(source.fields(), new_fields, family=prefix)
        sink, dest = self.create_sink(parameters, "OUTPUT", context, out.fields, source.wkbType(), source.sourceCrs())
        rows = (out.row(f.attributes(), nullable(v)) for f, v in zip(features, values))
        self.write_features(sink, rows, (f.geometry() for f in features), feedback, total=len(features), span=(80, 100))
        return {"OUTPUT": dest}

    def _embed_with_model(self, model: str, wkbs, feedback, outside: str):
        """Embed the features' locations with a distilled model in a child Python process (torch stays out);
        features without a location, and with ``outside="nan"`` those outside the model's area, get NaN rows."""
        import numpy as np

        from mobclip_core.grid import representative_points

        lon, lat = representative_points(wkbs)
        ok = np.isfinite(lon) & np.isfinite(lat)
        embedded = embed_with_model(self, model, lon[ok], lat[ok], feedback, outside=outside, span=(40, 80))
        values = np.full((len(wkbs), embedded.shape[1]), np.nan)
        values[ok] = embedded
        empty = int(ok.sum() - np.isfinite(embedded).all(axis=1).sum())
        note = f" ({empty} outside its training area written as NULL)" if empty else ""
        feedback.pushInfo(self.tr(f"embedded {int(ok.sum())} features with the distilled model{note}"))
        return values
