"""A look inside: the embedding space as a 2-D point layer (UMAP or PCA) whose points link back to the places."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from mobclip_core.options import SpaceMethod, choices

from ._places import Styler, add_places_parameters, read_places, style_on_load
from .base import MobClipAlgorithm
from .child import run_in_child

METHODS = ["UMAP if installed (and 10 places or more), else PCA", "UMAP", "PCA"]
METHOD_KEYS = choices(SpaceMethod)  # in the order of METHODS


class EmbeddingSpace(MobClipAlgorithm):
    algorithm_name = "embedding_space"
    display_name = "Map of the embedding space (UMAP or PCA)"
    group_name = "Analysis"
    help_text = (
        "Draws the embedding space in two dimensions: one point per place, placed so that places with similar "
        "embeddings lie close together (UMAP when the umap-learn package is installed, else the first two "
        "principal components). Open it in a new map view or an empty project: its coordinates are not on the "
        "Earth (a GeoPackage output is marked 'Undefined geographic SRS'; beside other layers it would sit at "
        "0 deg, 0 deg). Each point keeps the place's h3_cell (or the feature's fields) to join or select the "
        "places back on the map, and is coloured like the PCA RGB raster of the same table (on a saved colour "
        "scale, when given), so a colour means the same in both views. UMAP runs in a separate Python process."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_places_parameters(self)
        self.addParameter(QgsProcessingParameterEnum("METHOD", self.tr("Method"), METHODS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterFile(
                "SCALE", self.tr("Colour on this saved PCA colour scale (.json)"), extension="json", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SEED", self.tr("Random seed"), QgsProcessingParameterNumber.Integer, 0, False, 0
            )
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("Embedding space")))

    def execute(self, parameters, context, feedback):
        import numpy as np

        from mobclip_core.analysis.space import embedding_space, resolve_method
        from mobclip_core.rasterize import PcaColourScale

        places = read_places(self, parameters, context, feedback)
        complete = int(np.isfinite(places.values).all(axis=1).sum())
        method = resolve_method(METHOD_KEYS[self.parameterAsEnum(parameters, "METHOD", context)], complete)
        seed = self.parameterAsInt(parameters, "SEED", context)
        if method == "umap":  # numba (LLVM) must not load into QGIS: UMAP runs in the child process
            xy = self._umap_in_child(places.values, seed, feedback)
        else:
            xy, _ = embedding_space(places.values, method="pca", seed=seed)
        feedback.setProgress(60)
        scale_path = self.parameterAsFile(parameters, "SCALE", context)
        scale = PcaColourScale.load(scale_path) if scale_path else PcaColourScale.fit(places.values)
        rgb = scale.transform(places.values)
        extra = QgsFields()
        for name, kind in (("x", QVariant.Double), ("y", QVariant.Double), ("colour", QVariant.String)):
            extra.append(QgsField(name, kind))
        out = self.output_fields(places.base_fields(), extra)
        sink, dest = self.create_sink(
            parameters, "OUTPUT", context, out.fields, QgsWkbTypes.Point, QgsCoordinateReferenceSystem()
        )
        ok = (xy == xy).all(axis=1)
        base = list(places.base_rows())
        rows, geoms = [], []
        for i in ok.nonzero()[0].tolist():
            x, y = float(xy[i, 0]), float(xy[i, 1])
            rows.append(out.row(base[i], [x, y, "#{:02x}{:02x}{:02x}".format(*rgb[i].tolist())]))
            geoms.append(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        self.write_features(sink, rows, geoms, feedback, total=len(rows), span=(70, 100))
        style_on_load(context, dest, Styler(colour_field_style))
        feedback.pushInfo(self.tr(f"{len(rows)} places placed by {method.upper()}"))
        return {"OUTPUT": dest}

    def _umap_in_child(self, values, seed: int, feedback):
        import os
        import tempfile

        import numpy as np

        with tempfile.TemporaryDirectory(prefix="mobclip-space-") as tmp:
            src, out = os.path.join(tmp, "values.npy"), os.path.join(tmp, "xy.npy")
            np.save(src, values)
            run_in_child(self, ["project", src, out, "--method", "umap", "--seed", str(seed)], feedback, span=(10, 60))
            xy = np.load(out)
        if xy.shape != (len(values), 2):
            raise QgsProcessingException(self.tr("UMAP returned an unexpected result: try PCA"))
        return xy


def colour_field_style(layer) -> None:
    """Small points filled with the colour held in the 'colour' field (the place's PCA RGB colour)."""
    from qgis.core import QgsMarkerSymbol, QgsProperty, QgsSingleSymbolRenderer, QgsSymbolLayer

    symbol = QgsMarkerSymbol.createSimple({"name": "circle", "size": "1.6", "outline_style": "no"})
    symbol.symbolLayer(0).setDataDefinedProperty(QgsSymbolLayer.PropertyFillColor, QgsProperty.fromField("colour"))
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
