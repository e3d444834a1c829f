"""Shared base of the MobCLIP Processing algorithms: metadata, dependency gate, CRS, progress, errors."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessingAlgorithm,
    QgsProcessingException,
)
from qgis.PyQt.QtCore import QCoreApplication, QVariant

from ..qgis_plugin.dependencies import CORE, install_hint, missing_modules

WGS84 = "EPSG:4326"


class Cancelled(Exception):
    pass


class MobClipAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set the class attributes and implement ``initAlgorithm`` and ``execute``."""

    algorithm_name = ""
    display_name = ""
    group_name = "Embeddings"
    help_text = ""
    requirements: tuple[str, ...] = CORE

    # --- QGIS metadata -------------------------------------------------------------------------------------
    def name(self) -> str:
        return self.algorithm_name

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.display_name)

    def group(self) -> str:
        return self.tr(self.group_name)

    def groupId(self) -> str:  # noqa: N802
        return self.group_name.lower().replace(" ", "_")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(self.help_text)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("MobCLIP", text)

    # --- run with clear errors -----------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = missing_modules(self.requirements)
        if missing:
            raise QgsProcessingException(install_hint(missing))
        from mobclip_core.exceptions import MissingDependencyError, MobClipError

        try:
            return self.execute(parameters, context, feedback)
        except Cancelled:
            raise QgsProcessingException(self.tr("Cancelled by the user; no output was written")) from None
        except (MobClipError, MissingDependencyError) as exc:
            raise QgsProcessingException(str(exc)) from exc

    def execute(self, parameters, context, feedback) -> dict:
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def check_cancel(feedback) -> None:
        if feedback is not None and feedback.isCanceled():
            raise Cancelled()

    def require_source(self, parameters, name, context):
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, name))
        if source.featureCount() == 0:
            raise QgsProcessingException(self.tr(f"Input layer '{source.sourceName()}' is empty: it has no features"))
        if not source.sourceCrs().isValid():
            raise QgsProcessingException(
                self.tr(
                    f"Input layer '{source.sourceName()}' has no valid CRS: set the layer's CRS "
                    "(Layer Properties > Source) before running"
                )
            )
        return source

    def read_wgs84(self, source, context, feedback, *, progress_span=(0.0, 20.0)):
        """(features in the source CRS, shapely geometries in EPSG:4326 via the context's transforms)."""
        import shapely

        xform = QgsCoordinateTransform(
            source.sourceCrs(), QgsCoordinateReferenceSystem(WGS84), context.transformContext()
        )
        features, wkb = [], []
        total = max(source.featureCount(), 1)
        lo, hi = progress_span
        for i, f in enumerate(source.getFeatures()):
            if i % 1000 == 0:
                self.check_cancel(feedback)
                feedback.setProgress(lo + (hi - lo) * i / total)
            features.append(f)
            g = QgsGeometry(f.geometry())
            if g.isNull() or g.isEmpty():
                wkb.append(None)
                continue
            try:
                g.transform(xform)
            except QgsCsException as exc:
                raise QgsProcessingException(
                    f"Cannot transform feature {f.id()} of '{source.sourceName()}' to EPSG:4326 ({exc}): "
                    "is the layer's CRS right?"
                ) from exc
            wkb.append(bytes(g.asWkb()))
        geoms = shapely.from_wkb(np.array(wkb, dtype=object))
        return features, geoms

    def write_qgs_features(self, sink, attrs_iter, geoms_iter, feedback, *, total: int, span=(40.0, 100.0)) -> int:
        """Write QgsGeometry objects with attribute lists, in batches, with progress and cancellation."""
        lo, hi = span
        batch, n = [], 0
        for attrs, geom in zip(attrs_iter, geoms_iter):
            f = QgsFeature()
            f.setAttributes(attrs)
            f.setGeometry(geom)
            batch.append(f)
            n += 1
            if len(batch) >= 1000:
                self.check_cancel(feedback)
                sink.addFeatures(batch, QgsFeatureSink.FastInsert)
                batch = []
                feedback.setProgress(lo + (hi - lo) * n / max(total, 1))
        if batch:
            sink.addFeatures(batch, QgsFeatureSink.FastInsert)
        feedback.setProgress(hi)
        return n

    @staticmethod
    def double_fields(names) -> QgsFields:
        fields = QgsFields()
        for n in names:
            fields.append(QgsField(str(n), QVariant.Double))
        return fields

    @staticmethod
    def merge_fields(*parts: QgsFields) -> QgsFields:
        out = QgsFields()
        for part in parts:
            for f in part:
                out.append(f)
        return out

    def write_features(self, sink, attrs_iter, geoms_iter, feedback, *, total: int, span=(80.0, 100.0)) -> int:
        """Like ``write_qgs_features`` for shapely geometries (None writes a feature without geometry)."""
        qgs = (_from_shapely(g) if g is not None else QgsGeometry() for g in geoms_iter)
        return self.write_qgs_features(sink, attrs_iter, qgs, feedback, total=total, span=span)


def _from_shapely(geom) -> QgsGeometry:
    import shapely

    g = QgsGeometry()
    g.fromWkb(shapely.to_wkb(geom, output_dimension=2))
    return g


def nullable(values: np.ndarray) -> list:
    """Floats with NaN -> Python floats with None (NULL in QGIS)."""
    return [None if v != v else float(v) for v in values]
