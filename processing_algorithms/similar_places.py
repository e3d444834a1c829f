"""Similar places: cosine similarity of every cell or polygon to reference places, and the ranked top-N."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ._places import (
    Styler,
    add_places_parameters,
    extent_in_wgs84,
    graduated_style,
    pseudocolour_style,
    read_places,
    reference_rows_in_features,
    style_on_load,
    table_from_model,
    write_cells_raster,
    write_places,
)
from .base import WGS84, MobClipAlgorithm, linear_geometry, output_chosen
from .child import add_outside_parameter, outside_mode


class SimilarPlaces(MobClipAlgorithm):
    algorithm_name = "similar_places"
    display_name = "Similar places"
    group_name = "Analysis"
    resolution_parameters = ("RESOLUTION",)
    help_text = (
        "Finds the places most like one or more reference places. Every cell (or polygon) gets the cosine "
        "similarity of its embedding to the references' mean direction (1 = the same role, 0 = unrelated), and "
        "the most similar other places are ranked (rank 1 = most similar; references themselves get no rank).\n\n"
        "Places: the cells of an embedding table (a file written by mobclip, or a project layer with an h3_cell "
        "field), the features of a project layer whose emb_ fields hold embeddings (for example the output of "
        "'Aggregate embeddings over polygons'), or the cells of an extent embedded by a distilled model "
        "(under Advanced parameters; it runs in a separate Python process that needs the training packages). "
        "Cells outside the area the model was trained on are counted in a warning and embedded anyway "
        "(extrapolated values), or get NULL similarity and no rank if you choose so.\n\n"
        "References: any mix of a layer of points or polygons (tick 'Selected features only' to use the features "
        "you selected, e.g. on the places layer itself), a point clicked on the map, and H3 cell ids. A point "
        "takes the cell (or polygon) it lies in; a polygon all cells whose centre it holds.\n\n"
        "Outputs: the places with similarity, rank and is_reference, styled from low to high similarity; the "
        "top-N as a table; for cells, optionally the similarity as a raster."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_places_parameters(self)
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "REFERENCE",
                self.tr("Reference places (points or polygons)"),
                [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterPoint("REFERENCE_POINT", self.tr("or a reference point"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString("REFERENCE_CELLS", self.tr("or H3 cell ids (comma-separated)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOP_N",
                self.tr("How many of the most similar places to list"),
                QgsProcessingParameterNumber.Integer,
                10,
                False,
                1,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "CENTER", self.tr("Subtract the mean embedding first (more contrast when all places look alike)"), False
            )
        )
        # a distilled model instead of an embedding table: a second way in, under Advanced
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                self.tr("or a distilled model (.pth) to embed the cells of an extent"),
                behavior=QgsProcessingParameterFile.File,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent("EXTENT", self.tr("Extent to embed (distilled model)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION",
                self.tr("H3 resolution of the cells to embed (distilled model)"),
                QgsProcessingParameterNumber.Integer,
                9,
                False,
                0,
                15,
            )
        )
        add_outside_parameter(self)
        for name in ("MODEL", "EXTENT", "RESOLUTION", "OUTSIDE"):
            definition = self.parameterDefinition(name)
            definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("Similarity")))
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                "OUTPUT_TOP",
                self.tr("Most similar places (ranked table)"),
                QgsProcessing.TypeVector,
                optional=True,  # qgis_process need not name it; the dialog still creates it
                createByDefault=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_RASTER", self.tr("Similarity raster (cells only)"), optional=True, createByDefault=False
            )
        )

    def execute(self, parameters, context, feedback):
        import numpy as np

        table = self._table_from_model(parameters, context, feedback)
        places = read_places(self, parameters, context, feedback, table=table)
        feedback.setProgress(50)
        result = self._similarity(parameters, context, places)
        self.check_cancel(feedback)
        feedback.setProgress(65)
        # the raster first: a late failure there must not come after an existing layer was replaced by the table
        raster = self.optional_output(parameters, "OUTPUT_RASTER", context)
        raster = self._write_raster(raster, context, places, result) if raster else ""
        dest = self._write_similarity(parameters, context, feedback, places, result)
        results = {"OUTPUT": dest, **({"OUTPUT_RASTER": raster} if raster else {})}
        # not parameterAsOutputLayer: on a feature sink it registers a second layer to load, which never exists
        # ("not correctly generated" in red on every dialog run)
        if output_chosen(parameters.get("OUTPUT_TOP")):
            results["OUTPUT_TOP"] = self._write_top(parameters, context, places, result)
        if result.is_reference.any() and not (~result.is_reference & np.isfinite(result.similarity)).any():
            feedback.pushWarning(
                self.tr(
                    f"All {int(result.is_reference.sum())} places with an embedding are references: none is left "
                    "to rank. Choose fewer references"
                )
            )
        feedback.pushInfo(
            self.tr(
                f"{int(result.is_reference.sum())} reference places; most similar: "
                + ", ".join(f"{s:.3f}" for s in result.top["similarity"].head(5))
            )
        )
        return results

    def _table_from_model(self, parameters, context, feedback):
        """The embedding table a distilled model gives over EXTENT, or None when no model is chosen."""
        model = self.parameterAsFile(parameters, "MODEL", context)
        if not model:
            return None
        if self.parameterAsFile(parameters, "EMBEDDINGS", context) or self.embedding_layer(parameters, context):
            raise QgsProcessingException(self.tr("Give either embeddings or a distilled model, not both"))
        extent = extent_in_wgs84(self, parameters, "EXTENT", context)
        resolution = self.parameterAsInt(parameters, "RESOLUTION", context)
        outside = outside_mode(self, parameters, context)
        return table_from_model(self, model, extent, resolution, feedback, outside=outside)

    def _similarity(self, parameters, context, places):
        """Each place's similarity to the references: cells by id or geometry, features by the ones they touch."""
        from mobclip_core.analysis.similarity import similar_cells, similar_places

        geometries, crs = self._reference_geometries(parameters, context)
        cell_ids = [c.strip() for c in self.parameterAsString(parameters, "REFERENCE_CELLS", context).split(",")]
        cell_ids = [c for c in cell_ids if c]
        if not geometries and not cell_ids:
            raise QgsProcessingException(
                self.tr("Choose reference places: a layer of points or polygons, a point on the map, or H3 cell ids")
            )
        top_n = self.parameterAsInt(parameters, "TOP_N", context)
        center = self.parameterAsBool(parameters, "CENTER", context)
        if places.cells:
            wkbs = [bytes(g.asWkb()) for g in self._in_wgs84(geometries, crs, context)]
            return similar_cells(
                places.table, cells=cell_ids or None, geometries=wkbs or None, top_n=top_n, center=center
            )
        if cell_ids:
            raise QgsProcessingException(
                self.tr("H3 cell ids name cells; these places are features: pick reference features or a point")
            )
        rows = reference_rows_in_features(places, geometries, crs, context)
        if not rows:
            raise QgsProcessingException(
                self.tr(f"No reference lies on a feature of '{places.name}': choose references inside the layer")
            )
        return similar_places(places.values, reference_rows=rows, top_n=top_n, center=center)

    def _write_similarity(self, parameters, context, feedback, places, result):
        """The places with similarity, rank and is_reference, styled by similarity; returns the destination."""
        extra = QgsFields()
        extra.append(QgsField("similarity", QVariant.Double))
        extra.append(QgsField("rank", QVariant.Int))
        extra.append(QgsField("is_reference", QVariant.Bool))
        rows = (
            [None if s != s else float(s), int(r) if r > 0 else None, bool(ref)]
            for s, r, ref in zip(result.similarity.tolist(), result.rank.tolist(), result.is_reference.tolist())
        )
        dest = write_places(self, parameters, context, feedback, places, extra, rows)
        style_on_load(context, dest, Styler(graduated_style, "similarity"))
        return dest

    def _write_raster(self, raster: str, context, places, result) -> str:
        """The similarity of every cell as a styled GeoTIFF (cells only: features have no grid)."""
        import numpy as np

        values = result.similarity.astype(np.float32)
        write_cells_raster(self, places, values, "similarity", np.float32(np.nan), raster, "similarity")
        style_on_load(context, raster, Styler(pseudocolour_style))
        return raster

    def _reference_geometries(self, parameters, context):
        """(reference QgsGeometry list, their CRS): features of REFERENCE, and REFERENCE_POINT."""
        geometries, crs = [], QgsCoordinateReferenceSystem(WGS84)
        source = self.parameterAsSource(parameters, "REFERENCE", context)
        if source is not None:
            self.check_geometry_type(source, "REFERENCE")
            crs = source.sourceCrs()
            geometries = [QgsGeometry(f.geometry()) for f in source.getFeatures() if f.hasGeometry()]
            if not geometries:
                raise QgsProcessingException(
                    self.tr(
                        f"The reference layer '{source.sourceName()}' has no feature with a geometry (or none selected)"
                    )
                )
        if parameters.get("REFERENCE_POINT"):
            point = self.parameterAsPoint(parameters, "REFERENCE_POINT", context, crs)
            geometries.append(QgsGeometry.fromPointXY(point))
        return geometries, crs

    def _in_wgs84(self, geometries, crs, context):
        from qgis.core import QgsCoordinateTransform

        xform = QgsCoordinateTransform(crs, QgsCoordinateReferenceSystem(WGS84), context.transformContext())
        out = []
        for g in geometries:
            g = QgsGeometry(linear_geometry(g))
            g.transform(xform)
            out.append(g)
        return out

    def _write_top(self, parameters, context, places, result):
        """The ranked table, best first. A feature's own "fid" is kept as "feature_fid": under that name a
        GeoPackage would make it the table's key, and QGIS lists rows by key, not in rank order."""
        fields = QgsFields()
        fields.append(QgsField("rank", QVariant.Int))
        fields.append(QgsField("similarity", QVariant.Double))
        keep = []  # a place's own fields, but its "rank" / "similarity" of an earlier run (replaced by this one's)
        for i, field in enumerate(places.base_fields()):
            if field.name().lower() in ("rank", "similarity"):
                continue
            if field.name().lower() == "fid":
                field = QgsField(field)
                field.setName("feature_fid")
            fields.append(field)
            keep.append(i)
        sink, dest = self.create_sink(
            parameters, "OUTPUT_TOP", context, fields, QgsWkbTypes.NoGeometry, QgsCoordinateReferenceSystem()
        )
        from qgis.core import QgsFeature

        rows = list(places.base_rows()) if not places.cells else None
        batch = []
        for rank, row_id, sim in zip(result.top["rank"], result.top.iloc[:, 1], result.top["similarity"]):
            f = QgsFeature(fields)
            base = [row_id] if places.cells else [rows[int(row_id)][i] for i in keep]
            f.setAttributes([int(rank), float(sim), *base])
            batch.append(f)
        sink.addFeatures(batch)
        self.sink_written(sink)
        return dest
