"""What the analysis algorithms share: the places to analyse (cells of an embedding table, features of a layer with
embedding fields, or cells over an extent embedded by a distilled model), writing per-place results, and styles.

Places are either *cells* (an embedding table indexed by h3_cell; results are written as cell polygons in
EPSG:4326 and can be rasterised) or *features* (a layer whose emb_* fields hold, e.g., the output of "Aggregate
embeddings over polygons"; results are written as a copy of the features with new fields).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsClassificationQuantile,
    QgsColorRampShader,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsSymbol,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from .base import WGS84, MobClipAlgorithm, features_file_layer
from .child import embed_with_model

MAX_EXTENT_CELLS = 2_000_000

# a qualitative palette (ColorBrewer Set1 + Dark2, colour-blind friendlier first): one colour per zone
ZONE_COLOURS = (
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#377eb8",
    "#e41a1c", "#984ea3", "#ff7f00", "#4daf4a", "#f781bf", "#999999", "#a65628", "#17becf",
)  # fmt: skip


@dataclass
class Places:
    """The places an analysis runs over, their embeddings, and how to write one row of results per place."""

    values: object  # (n, d) float32 numpy array
    table: object | None  # the embedding table (pandas, index h3_cell) when the places are cells
    features: list | None = None  # QgsFeature per place when the places are features of a layer
    fields: QgsFields | None = None
    wkb_type: int = QgsWkbTypes.Polygon
    crs: QgsCoordinateReferenceSystem | None = None
    name: str = "places"

    @property
    def cells(self) -> bool:
        return self.table is not None

    def base_fields(self) -> QgsFields:
        if self.cells:
            fields = QgsFields()
            fields.append(QgsField("h3_cell", QVariant.String))
            return fields
        return QgsFields(self.fields)

    def base_rows(self):
        if self.cells:
            return ([c] for c in self.table.index)
        return (f.attributes() for f in self.features)

    def geometries(self):
        if self.cells:
            from mobclip_core.grid import cells_to_wkb, strings_to_cells

            return cells_to_wkb(strings_to_cells(self.table.index.to_numpy()))
        return [f.geometry() for f in self.features]

    def output_crs(self) -> QgsCoordinateReferenceSystem:
        return QgsCoordinateReferenceSystem(WGS84) if self.cells else self.crs


def add_places_parameters(alg: MobClipAlgorithm) -> None:
    alg.add_embedding_table_parameters(label="Embedding table (.parquet or .gpkg)", preselect="features")
    from qgis.core import QgsProcessingParameterString

    alg.addParameter(QgsProcessingParameterString("PREFIX", alg.tr("Embedding field prefix"), "emb_"))


def read_places(alg: MobClipAlgorithm, parameters, context, feedback, *, table=None) -> Places:
    """Cells of an embedding table (a file, or a project layer with an h3_cell field) or the features of a layer
    whose fields hold embeddings (a project layer without h3_cell, e.g. aggregated polygons)."""
    import numpy as np

    if table is not None:
        return Places(table.to_numpy(np.float32), table, name="cells")
    path = alg.parameterAsFile(parameters, "EMBEDDINGS", context)
    layer = alg.embedding_layer(parameters, context)
    prefix = alg.parameterAsString(parameters, "PREFIX", context)
    if path:  # a file of features with embedding fields (aggregated polygons) reads as the same layer would
        layer = features_file_layer(path, prefix or "emb_") or features_file_layer(path)
        if layer is not None:  # with the default prefix only: features_with_embeddings names the prefix asked for
            return features_with_embeddings(alg, layer, prefix, feedback)
    elif layer is not None and "h3_cell" not in layer.fields().names():
        return features_with_embeddings(alg, layer, prefix, feedback)
    table = alg.embedding_table(parameters, context)
    return Places(table.to_numpy(np.float32), table, name="cells")


def features_with_embeddings(alg, layer, prefix: str, feedback) -> Places:
    from mobclip_core.embeddings import embedding_columns

    from .base import numbers

    names = layer.fields().names()
    prefix = prefix or "emb_"
    if not any(n.startswith(prefix) and n[len(prefix) :].isdigit() for n in names):
        raise QgsProcessingException(
            alg.tr(
                f"Layer '{layer.name()}' has no embedding fields ({prefix}0, {prefix}1, ...): choose the MobCLIP "
                "embeddings layer, or give this layer embeddings first with 'Aggregate embeddings over polygons' "
                "or 'Attach embeddings to features'"
            )
        )
    cols = embedding_columns(names, prefix)
    idx = [names.index(c) for c in cols]
    features = []
    for i, f in enumerate(layer.getFeatures()):
        if i % 5000 == 0:
            alg.check_cancel(feedback)
        features.append(f)
    if not features:
        raise QgsProcessingException(alg.tr(f"Layer '{layer.name()}' has no features"))
    values = numbers([[f.attributes()[i] for i in idx] for f in features], len(cols)).astype("float32")
    return Places(values, None, features, layer.fields(), layer.wkbType(), layer.crs(), layer.name())


def write_places(
    alg, parameters, context, feedback, places: Places, extra_fields: QgsFields, extra_rows, name="OUTPUT"
):
    """One feature per place: its own fields (or h3_cell) + ``extra_fields``; geometry of the cell or feature."""
    out = alg.output_fields(places.base_fields(), extra_fields)
    wkb_type = QgsWkbTypes.Polygon if places.cells else places.wkb_type
    sink, dest = alg.create_sink(parameters, name, context, out.fields, wkb_type, places.output_crs())
    rows = (out.row(base, extra) for base, extra in zip(places.base_rows(), extra_rows))
    n = len(places.values)
    alg.write_features(sink, rows, places.geometries(), feedback, total=n, span=(70, 95))
    return dest


def reference_rows_in_features(places: Places, geometries, crs, context) -> list[int]:
    """Positions of the features that hold each reference geometry's point on surface (references in ``crs``)."""
    from qgis.core import QgsSpatialIndex

    xform = QgsCoordinateTransform(crs, places.crs, context.transformContext())
    index = QgsSpatialIndex()
    for i, f in enumerate(places.features):
        if f.hasGeometry():
            index.addFeature(i, f.geometry().boundingBox())
    rows = set()
    for g in geometries:
        point = QgsGeometry(g).pointOnSurface()
        point.transform(xform)
        for i in index.intersects(point.boundingBox()):
            if places.features[i].geometry().intersects(point):
                rows.add(i)
    return sorted(rows)


def table_from_model(alg, model: str, extent_wgs84, resolution: int, feedback, *, outside: str = "warn"):
    """The cells whose centre lies in an extent (EPSG:4326 QgsRectangle), embedded by a distilled model in the
    child process: an embedding table like any other (NaN rows for cells outside the model's training area when
    ``outside`` is "nan")."""
    import numpy as np

    from mobclip_core.embeddings import embedding_frame
    from mobclip_core.grid import cell_centroids, cells_to_strings, polygons_to_cells

    box = QgsGeometry.fromRect(extent_wgs84)
    cells = polygons_to_cells([bytes(box.asWkb())], resolution)["h3_cell"].to_numpy()
    if cells.size == 0:
        raise QgsProcessingException(alg.tr("The extent holds no cell centre at this resolution: widen it"))
    if cells.size > MAX_EXTENT_CELLS:
        raise QgsProcessingException(
            alg.tr(
                f"The extent holds {cells.size:,} cells at resolution {resolution} (more than "
                f"{MAX_EXTENT_CELLS:,}): choose a smaller extent or a coarser resolution"
            )
        )
    lon, lat = cell_centroids(cells)
    values = embed_with_model(alg, model, lon, lat, feedback, outside=outside, span=(5, 50))
    empty = int((~np.isfinite(values).all(axis=1)).sum())
    note = f" ({empty} outside its training area left without an embedding)" if empty else ""
    feedback.pushInfo(alg.tr(f"embedded {cells.size} cells of the extent with the distilled model{note}"))
    return embedding_frame(cells_to_strings(cells), values, [f"emb_{i}" for i in range(values.shape[1])])


def extent_in_wgs84(alg, parameters, name: str, context):
    rect = alg.parameterAsExtent(parameters, name, context, QgsCoordinateReferenceSystem(WGS84))
    if rect is None or rect.isNull() or rect.isEmpty():
        raise QgsProcessingException(alg.tr("Choose the extent to embed with the distilled model"))
    return rect


# --- styles applied when QGIS loads the results ----------------------------------------------------------------------
_ALIVE: set = set()  # QGIS does not own post-processors: keep them until they have run


def write_cells_raster(alg, places: Places, values, band: str, nodata, raster: str, what: str) -> str:
    """One value per cell of ``places`` as a single-band GeoTIFF at ``raster`` (features have no grid: refused)."""
    if not places.cells:
        raise QgsProcessingException(alg.tr(f"The {what} raster needs cells, not features"))
    from mobclip_core.grid import strings_to_cells
    from mobclip_core.rasterize import cells_image

    from .embedding_raster import write_gdal_raster

    image = cells_image(strings_to_cells(places.table.index.to_numpy()), values, band_names=[band], nodata=nodata)
    existed = os.path.exists(raster)
    write_gdal_raster(image, raster, rgb=False)
    alg.record_file(raster, existed)
    return raster


def style_on_load(context, dest: str, styler: QgsProcessingLayerPostProcessorInterface) -> None:
    if context.willLoadLayerOnCompletion(dest):
        _ALIVE.add(styler)
        context.layerToLoadOnCompletionDetails(dest).setPostProcessor(styler)


class Styler(QgsProcessingLayerPostProcessorInterface):
    """Applies ``function(layer)`` to the loaded layer."""

    def __init__(self, function, *args) -> None:
        super().__init__()
        self.function, self.args = function, args

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        self.function(layer, *self.args)
        layer.triggerRepaint()
        _ALIVE.discard(self)


def graduated_style(layer, field: str, ramp: str = "Viridis", classes: int = 8, invert: bool = False) -> None:
    """Quantile classes of a numeric field on a colour ramp; thin outlines."""
    symbol = QgsSymbol.defaultSymbol(layer.geometryType())
    if layer.geometryType() == QgsWkbTypes.PolygonGeometry:
        symbol.symbolLayer(0).setStrokeColor(QColor(60, 60, 60, 90))
        symbol.symbolLayer(0).setStrokeWidth(0.05)
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(symbol)
    renderer.setClassificationMethod(QgsClassificationQuantile())
    renderer.updateClasses(layer, classes)
    colour_ramp = QgsStyle.defaultStyle().colorRamp(ramp)
    if colour_ramp is not None:
        if invert:
            colour_ramp.invert()
        renderer.updateColorRamp(colour_ramp)
    layer.setRenderer(renderer)


def zone_style(layer, names: dict[int, str], field: str = "zone") -> None:
    """One colour per zone, the zone's label in the legend; places in no zone in light grey."""
    categories = []
    for i, (zone, label) in enumerate(sorted(names.items())):
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        colour = QColor(ZONE_COLOURS[i % len(ZONE_COLOURS)]) if zone >= 0 else QColor(200, 200, 200)
        symbol.setColor(colour)
        if layer.geometryType() == QgsWkbTypes.PolygonGeometry:
            symbol.symbolLayer(0).setStrokeColor(colour.darker(130))
            symbol.symbolLayer(0).setStrokeWidth(0.05)
        categories.append(QgsRendererCategory(int(zone), symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))


def pseudocolour_style(layer, ramp: str = "Viridis", invert: bool = False) -> None:
    """A one-band raster on a continuous colour ramp from its minimum to its maximum."""
    provider = layer.dataProvider()
    stats = provider.bandStatistics(1)
    colour_ramp = QgsStyle.defaultStyle().colorRamp(ramp)
    if invert:
        colour_ramp.invert()
    shader_function = QgsColorRampShader(stats.minimumValue, stats.maximumValue, colour_ramp)
    shader_function.classifyColorRamp(9, 1, layer.extent(), provider)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_function)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(provider, 1, shader))


def feature_request_no_geometry():
    return QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
