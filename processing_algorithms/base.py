"""Shared base of the MobCLIP Processing algorithms: metadata, the dependency gate, reading and writing features,
progress, cancellation, errors, and outputs that are complete or absent.

Everything here runs inside QGIS's process, which already holds QGIS's GDAL, GEOS, PROJ (and, in the desktop,
LLVM). So the algorithms use QGIS for layers and geometry, ``osgeo`` from QGIS's Python for rasters, and the
"maps" tier (h3, pandas, pyarrow, LightGBM, scikit-learn) for the rest; geopandas, shapely, pyproj, rasterio, numba
and torch never load here (training and torch models run in a child process: ``mobclip_core.worker``). No module of
this package imports a third-party package at import time: QGIS lists every algorithm on a stock install, and
``canExecute`` says what to install.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterVectorLayer,
    QgsProcessingUtils,
    QgsProperty,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication, QThread, QVariant

from mobclip_core.constants import REGION_INDEX
from mobclip_core.dependencies import MAPS, install_hint, missing_modules

WGS84 = "EPSG:4326"


class Cancelled(Exception):
    """The user pressed Cancel. The message, if any, says what the cancelled run left (default: nothing)."""


@dataclass(frozen=True)
class OutputFields:
    """An output's fields, and how to build its rows from an input feature's attributes and this run's values."""

    fields: QgsFields
    keep: list[int] | None  # the input attributes kept, by position; None: all of them

    def row(self, attributes: list, values) -> list:
        base = attributes if self.keep is None else [attributes[i] for i in self.keep]
        return base + list(values)


class MobClipAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set the class attributes and implement ``initAlgorithm`` and ``execute``."""

    algorithm_name = ""
    display_name = ""
    group_name = "Embeddings"
    help_text = ""
    requirements: tuple[str, ...] = MAPS  # import names it needs, in this process or in its child process
    resolution_parameters: tuple[str, ...] = ()  # H3 resolution parameters, checked with the library's message
    geometry_hints: dict[str, str] = {}  # what to use instead, per input parameter, when its geometry type is wrong

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

    # --- can it run, are the parameters right --------------------------------------------------------------
    def canExecute(self):  # noqa: N802 - QGIS disables Run and shows the message when this is False
        missing = missing_modules(self.requirements)
        if missing:
            return False, install_hint(missing)
        return True, ""

    def checkParameterValues(self, parameters, context):  # noqa: N802
        for name in self.resolution_parameters:
            value = parameters.get(name)
            if value is None or not self.canExecute()[0]:
                continue
            from mobclip_core.exceptions import MobClipError
            from mobclip_core.grid import validate_resolution

            try:
                validate_resolution(int(value) if str(value).strip().lstrip("-").isdigit() else value)
            except MobClipError as exc:
                return False, str(exc)
        return super().checkParameterValues(parameters, context)

    # --- run with clear errors and no partial outputs -------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ok, message = self.canExecute()
        if not ok:
            raise QgsProcessingException(message)
        from mobclip_core.exceptions import MissingDependencyError, MobClipError

        self._sinks: list[tuple[object, str]] = []
        self._replacing: set[int] = set()  # sinks that replace an existing file or layer (see ``write_features``)
        self._kept: list[str] = []  # such outputs written in full before the run was stopped
        self._new_files: list[str] = []  # file outputs written outside the sinks (rasters) that did not exist before
        self._swaps: list[tuple[str, str, str, str]] = []  # (staged dest, file, layer, staged layer): see create_sink
        self._feedback = feedback  # for warnings from helpers that are not given it (``embedding_layer``)
        self.check_destinations(parameters)
        try:
            results = self.execute(parameters, context, feedback)
        except Cancelled as exc:
            self._discard_outputs(exc)
            message = str(exc) or self.tr("Cancelled by the user; no output was written")
            raise QgsProcessingException(message + self._kept_note()) from None
        except (MobClipError, MissingDependencyError) as exc:
            self._discard_outputs(exc)
            raise QgsProcessingException(str(exc) + self._kept_note()) from None
        except OSError as exc:  # the system refused a file: disk full, no permission, a folder in the way
            feedback.pushDebugInfo("".join(traceback.format_exception(exc)))  # for a report; the message is below
            self._discard_outputs(exc)
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise QgsProcessingException(
                self.tr(f"A file could not be read or written{where}: {exc.strerror or exc}") + self._kept_note()
            ) from None
        except BaseException as exc:
            self._discard_outputs(exc)
            if getattr(self, "_kept", None):  # the error below is a bug's; the user must still learn what changed
                feedback.reportError(self.tr("The run failed after writing an output") + self._kept_note())
            raise
        # let go of the sinks: QGIS closes their files now. The dialog runs a copy of the algorithm in a task and
        # loads the outputs while that copy is alive; a GeoPackage still open here was "not correctly generated"
        self._sinks.clear()
        return self._swap_in_staged_layers(results, context)

    def execute(self, parameters, context, feedback) -> dict:
        raise NotImplementedError

    def _kept_note(self) -> str:
        kept = getattr(self, "_kept", [])
        return self.tr(f" ({', '.join(kept)}: already replaced by this run's complete result)") if kept else ""

    def check_destinations(self, parameters) -> None:
        """Refuse, before any work, an output file that cannot be written: a folder of that name, a layer for a file
        that is not a GeoPackage, a file where a folder should be, or (vector outputs, which QGIS does not create
        folders for) a folder that does not exist."""
        for definition in self.destinationParameterDefinitions():
            if isinstance(definition, QgsProcessingParameterFolderDestination):
                self._check_folder_destination(definition, parameters)
                continue
            path, layer = _file_and_layer(_static_destination(parameters.get(definition.name())))
            if not path:
                continue
            folder = os.path.dirname(os.path.abspath(path))
            existing = folder
            while not os.path.exists(existing) and os.path.dirname(existing) != existing:
                existing = os.path.dirname(existing)
            label = definition.description()
            if layer is not None and os.path.isfile(path) and _layer_names(path)[0] is None:
                raise QgsProcessingException(  # a layer to add to a file that GDAL cannot open: said before any work
                    self.tr(f"{label}: {path} exists but is not a GeoPackage GDAL can open: choose another file")
                )
            if os.path.isdir(path):
                raise QgsProcessingException(
                    self.tr(f"{label}: {path} is a folder: give a file name inside it, or another file name")
                )
            if not os.path.isdir(existing):
                raise QgsProcessingException(
                    self.tr(f"{label}: {existing} is a file, not a folder: choose another place for {path}")
                )
            if existing != folder and isinstance(definition, QgsProcessingParameterFeatureSink):
                raise QgsProcessingException(
                    self.tr(f"{label}: the folder {folder} does not exist: create it, or choose another place")
                )

    def _check_folder_destination(self, definition, parameters) -> None:
        """An output folder (created if missing) that is, or would be inside, a file."""
        path = _static_destination(parameters.get(definition.name()))
        if not path or path == "TEMPORARY_OUTPUT":
            return
        existing = os.path.abspath(path)
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if os.path.exists(existing) and not os.path.isdir(existing):
            raise QgsProcessingException(
                self.tr(f"{definition.description()}: {existing} is a file, not a folder: choose a folder for {path}")
            )

    def create_sink(self, parameters, name, context, fields, wkb_type, crs):
        """``parameterAsSink``, remembered so that a failed or cancelled run leaves no partial file behind.

        An output that replaces an existing layer of a GeoPackage is written to a new layer beside it, swapped in
        for the old one when the run has succeeded (``_swap_in_staged_layers``): until then the old layer is whole,
        and Cancel is heard all along. Other replaced outputs (a whole file) are emptied when the sink is created,
        so they are written in full once started (``write_features``)."""
        value = parameters.get(name)
        replaces = existing_destination(value) is not None
        file, layer = _file_and_layer(_static_destination(value))
        staged = _staged_layer_name(file, layer) if replaces and layer is not None else None
        if staged is None:
            sink, dest = self.parameterAsSink(parameters, name, context, fields, wkb_type, crs)
            if sink is None:
                raise QgsProcessingException(self.invalidSinkError(parameters, name))
            self._sinks.append((sink, dest))
            if replaces:
                self._replacing.add(id(sink))
            return sink, dest
        # the staged layer as a plain destination (QGIS would list it as a layer to load); the final one is listed
        # instead, as QGIS would have listed it, so that results, styles and the dialog all name the final layer
        plain = {**parameters, name: _with_layer(_static_destination(value), layer, staged)}
        sink, dest = self.parameterAsSink(plain, name, context, fields, wkb_type, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, name))
        self._sinks.append((sink, dest))
        final = _with_layer(str(dest), staged, layer)
        self._swaps.append((str(dest), os.path.abspath(file), layer, staged))
        project = value.destinationProject if isinstance(value, QgsProcessingOutputLayerDefinition) else None
        if project is not None:
            shown = value.destinationName or self.parameterDefinition(name).description()
            details = QgsProcessingContext.LayerDetails(shown, project, name, QgsProcessingUtils.LayerHint.Vector)
            context.addLayerToLoadOnCompletion(final, details)
        return sink, final

    def _swap_in_staged_layers(self, results: dict, context) -> dict:
        """Put each staged layer in the place of the layer it replaces (one GeoPackage transaction each); the
        results and the layers to load already name the final layer (``create_sink``)."""
        for dest, file, layer, staged in self._swaps:
            try:
                _replace_layer(file, layer, staged)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    discard_file_output(dest)
                raise QgsProcessingException(
                    self.tr(
                        f"Could not put the new layer '{layer}' in place in {file} ({exc}): the old layer is as it was"
                    )
                ) from None
        self._swaps = []
        return results

    def _discard_outputs(self, exc: BaseException) -> None:
        """Close the sinks this run opened and delete what they were writing: the file, or only the run's layer
        in a GeoPackage that holds others (never a file's other layers; memory, database and other outputs are left
        to QGIS)."""
        for path in getattr(self, "_new_files", []):  # rasters this run created: not complete results of a failed run
            try:
                if os.path.exists(path):
                    os.remove(path)
            except OSError as err:
                self._feedback.pushWarning(self.tr(f"The output {path} of the stopped run could not be removed: {err}"))
        if not getattr(self, "_sinks", None):
            return
        dests = [dest for _, dest in self._sinks]
        self._sinks.clear()
        traceback.clear_frames(exc.__traceback__)  # the frames hold the sinks; closing them closes the files
        for dest in dests:
            try:
                discard_file_output(str(dest))
            except OSError as err:  # the run's own error stays the one reported
                feedback = getattr(self, "_feedback", None)
                if feedback is not None:
                    feedback.pushWarning(self.tr(f"The unfinished output {dest} could not be removed: {err}"))

    # --- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def check_cancel(feedback) -> None:
        if feedback is not None and feedback.isCanceled():
            raise Cancelled()

    def record_file(self, path: str, existed: bool) -> None:
        """A file output written in full outside QGIS's sinks (a raster). Should the run then fail or be cancelled,
        a new file is removed, and one that replaced an existing file is named as replaced in the message."""
        if existed:
            self._kept.append(path)
        else:
            self._new_files.append(path)

    def optional_output(self, parameters, name: str, context) -> str:
        """The path of an optional raster output, "" when it was skipped. Asked only when one was chosen: a blank
        cell of the batch dialog arrives as an empty output definition, and ``parameterAsOutputLayer`` would list
        it as a layer to load that never exists ("The following layers were not correctly generated")."""
        return self.parameterAsOutputLayer(parameters, name, context) if output_chosen(parameters.get(name)) else ""

    def progress(self, feedback, lo: float, hi: float):
        """A ``fraction -> None`` callback that maps 0..1 onto lo..hi percent and raises Cancelled on Cancel."""

        def report(fraction: float) -> None:
            self.check_cancel(feedback)
            feedback.setProgress(lo + (hi - lo) * max(0.0, min(1.0, fraction)))

        return report

    def require_source(self, parameters, name, context):
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, name))
        if source.featureCount() == 0:
            if not source.sourceName() and "memory" in str(parameters.get(name, "")).lower():
                raise QgsProcessingException(  # a run repeated from the History names a temporary layer by its URI
                    self.tr(
                        f"{self.parameterDefinition(name).description()}: the temporary layer this names is empty "
                        "(temporary layers of earlier runs are not kept): choose the layer again"
                    )
                )
            label = source.sourceName() or self.parameterDefinition(name).description()
            raise QgsProcessingException(self.tr(f"Input layer '{label}' is empty: it has no features"))
        self.check_geometry_type(source, name)
        if not source.sourceCrs().isValid():
            raise QgsProcessingException(
                self.tr(
                    f"Input layer '{source.sourceName()}' has no valid CRS: set the layer's CRS "
                    "(Layer Properties > Source) before running"
                )
            )
        return source

    def check_geometry_type(self, source, name: str) -> None:
        """The layer's geometry is one the parameter takes (the dialog filters layers by it; qgis_process and
        scripts do not)."""
        from qgis.core import QgsProcessing

        definition = self.parameterDefinition(name)
        kinds = {
            QgsProcessing.TypeVectorPoint: QgsWkbTypes.PointGeometry,
            QgsProcessing.TypeVectorLine: QgsWkbTypes.LineGeometry,
            QgsProcessing.TypeVectorPolygon: QgsWkbTypes.PolygonGeometry,
        }
        wanted = [kinds[t] for t in getattr(definition, "dataTypes", lambda: [])() if t in kinds]
        have = QgsWkbTypes.geometryType(source.wkbType())
        if not wanted or have in wanted or have == QgsWkbTypes.UnknownGeometry:  # a generic GEOMETRY column
            return
        names = {
            QgsWkbTypes.PointGeometry: "point",
            QgsWkbTypes.LineGeometry: "line",
            QgsWkbTypes.PolygonGeometry: "polygon",
        }
        kind = names.get(have, "table without geometry")
        takes = " or ".join(names[w] for w in wanted)
        hint = self.geometry_hints.get(name, "")
        raise QgsProcessingException(
            self.tr(
                f"'{source.sourceName()}' is a {kind} layer; '{definition.description()}' takes a {takes} layer"
                + (f": {hint}" if hint else "")
            )
        )

    def read_wgs84(self, source, context, feedback, *, span=(0.0, 20.0)):
        """(features in the source CRS, their geometries as 2D-or-more WKB in EPSG:4326, None where empty).

        Geometries are transformed by QGIS (the project's datum transformations apply) and curves are
        linearised, so the library only ever sees plain (multi)polygons and points.
        """
        xform = QgsCoordinateTransform(
            source.sourceCrs(), QgsCoordinateReferenceSystem(WGS84), context.transformContext()
        )
        features, wkbs = [], []
        total = max(source.featureCount(), 1)
        lo, hi = span
        for i, f in enumerate(source.getFeatures()):
            if i % 1000 == 0:
                self.check_cancel(feedback)
                feedback.setProgress(lo + (hi - lo) * i / total)
            features.append(f)
            g = QgsGeometry(f.geometry())
            if g.isNull() or g.isEmpty():
                wkbs.append(None)
                continue
            g = linear_geometry(g)
            try:
                g.transform(xform)
            except QgsCsException as exc:
                raise QgsProcessingException(
                    f"Cannot transform feature {f.id()} of '{source.sourceName()}' to EPSG:4326 ({exc}): "
                    "is the layer's CRS right?"
                ) from exc
            wkbs.append(bytes(g.asWkb()))
        return features, wkbs

    def write_features(self, sink, rows, geometries, feedback, *, total: int, span=(80.0, 100.0)) -> int:
        """Write attribute lists with geometries (QgsGeometry or WKB bytes; None for none), in batches.

        A sink that replaces an existing file (the input itself, an earlier result) was emptied when it was created:
        stopping now would leave neither the old content nor the new. So Cancel is not heard while it is written
        (the short, last part of a run), and once written in full it is kept whatever happens after. (A replaced
        GeoPackage layer is staged beside the old one instead: see ``create_sink``.)"""
        lo, hi = span
        batch, n = [], 0
        replacing = id(sink) in getattr(self, "_replacing", ())
        for attrs, geom in zip(rows, geometries):
            f = QgsFeature()
            f.setAttributes(attrs)
            if isinstance(geom, bytes | bytearray):
                g = QgsGeometry()
                g.fromWkb(geom)
                geom = g
            if geom is not None:
                f.setGeometry(geom)
            batch.append(f)
            n += 1
            if len(batch) >= 1000:
                if not replacing:
                    self.check_cancel(feedback)
                sink.addFeatures(batch, QgsFeatureSink.FastInsert)
                batch = []
                feedback.setProgress(lo + (hi - lo) * n / max(total, 1))
        if batch:
            sink.addFeatures(batch, QgsFeatureSink.FastInsert)
        if replacing and feedback.isCanceled():
            file, layer = _file_and_layer(str(next((d for s, d in self._sinks if s is sink), "")))
            where = f"{os.path.basename(file)}, layer {layer}" if layer else os.path.basename(file)
            feedback.pushWarning(
                self.tr(
                    "Cancel came while an existing layer was being replaced: it was written in full (stopping there "
                    "would have left neither the old layer nor the new). QGIS reports a cancelled run as failed and "
                    f"does not add its outputs to the map: add the new one ({where}) from the Browser"
                )
            )
        self.sink_written(sink)
        feedback.setProgress(hi)
        return n

    def sink_written(self, sink) -> None:
        """``sink`` holds its complete output. One that replaced an existing file or layer is then kept whatever
        happens after (removing it would leave neither the old content nor the new)."""
        if id(sink) in getattr(self, "_replacing", ()):
            self._kept += [dest for s, dest in self._sinks if s is sink]
            self._sinks = [(s, dest) for s, dest in self._sinks if s is not sink]

    @staticmethod
    def double_fields(names) -> QgsFields:
        fields = QgsFields()
        for n in names:
            fields.append(QgsField(str(n), QVariant.Double))
        return fields

    def report_coverage(
        self, feedback, found: int, total: int, what: str, resolution: int, no_geometry: int = 0
    ) -> None:
        """How many features got an embedding: a log line when all did, a warning naming the rest when some did
        not (they get NULL fields, which on a map reads as missing data, not as a problem). Features without a
        geometry are counted apart: they are not outside the table's area, and the fix is a different one."""
        if found == total:
            feedback.pushInfo(self.tr(f"{found} of {total} {what} got embeddings (resolution {resolution})"))
            return
        outside = total - found - no_geometry
        parts = []
        if no_geometry:
            parts.append(f"{no_geometry} have no geometry (NULL or empty: give them one, or filter them out)")
        if outside:
            parts.append(
                f"{outside} lie outside the embedding table's cells (resolution {resolution}): check that the layer "
                "and the table cover the same area"
            )
        feedback.pushWarning(
            self.tr(
                f"{total - found} of {total} {what} got no embedding (NULL fields): {'; '.join(parts)}. "
                f"{found} got embeddings"
            )
        )

    def output_fields(self, base: QgsFields, *new: QgsFields, family: str | None = None) -> OutputFields:
        """The input's fields followed by this run's ``new`` ones. An input field with the name of a new one (a
        layer that is an earlier run's output: a second target fitted on a fit's output, a second embedding
        attached) is left out and its values replaced by this run's, with a warning: QgsFields.append skips a
        name it already has, so the old values would otherwise stay under the new name. Names compare as
        GeoPackage and shapefiles do, ignoring case. ``family``: an embedding prefix whose every input field
        (``emb_0`` ... of any width) goes, so a narrower embedding does not leave an older wider one's tail."""
        import re

        added = QgsFields()
        for part in new:
            for f in part:
                added.append(f)
        taken = {f.name().lower() for f in added}
        pattern = re.compile(re.escape(family.lower()) + r"\d+") if family else None

        def goes(name: str) -> bool:
            return name.lower() in taken or bool(pattern and pattern.fullmatch(name.lower()))

        keep = [i for i, f in enumerate(base) if not goes(f.name())]
        replaced = [f.name() for f in base if goes(f.name())]
        fields = QgsFields()
        for i in keep:
            fields.append(base.at(i))
        for f in added:
            fields.append(f)
        feedback = getattr(self, "_feedback", None)
        if replaced and feedback is not None:
            shown = ", ".join(replaced[:6]) + (f" and {len(replaced) - 6} more" if len(replaced) > 6 else "")
            feedback.pushWarning(
                self.tr(
                    f"The input already has the field(s) {shown} (an earlier run's output?): the output replaces "
                    "them with this run's values"
                )
            )
        return OutputFields(fields, None if len(keep) == base.count() else keep)

    # --- embedding tables: a file, or a layer already in the project ----------------------------------------
    def add_embedding_table_parameters(
        self, name: str = "EMBEDDINGS", label: str | None = None, *, preselect: str | None = "cells"
    ) -> None:
        """Two optional parameters ``name`` (a file) and ``name``_LAYER (a project layer); one is needed, and a file
        given beside a layer wins (``embedding_layer``).

        ``preselect``: the dialog opens with an embedding layer of the project chosen, "cells" (a layer with
        h3_cell and emb_ fields, what the table readers take) or "features" (any layer with emb_ fields); None
        where a preselection could pick the wrong one of two tables.
        """
        self.addParameter(
            QgsProcessingParameterFile(
                name,
                self.tr(label or "Embedding table (.parquet or .gpkg)"),
                fileFilter="Embedding tables (*.parquet *.gpkg)",
                optional=True,
            )
        )
        default = project_embedding_layer(cells_only=preselect == "cells") if preselect else None
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                f"{name}_LAYER",
                self.tr("or an embedding layer already in the project"),
                defaultValue=default,
                optional=True,
            )
        )

    def embedding_layer(self, parameters, context, name: str = "EMBEDDINGS"):
        """The project layer given as ``name``_LAYER, or None.

        A parameter left empty is no layer (QGIS would fall back to the dialog's preselection). A file or a
        distilled model chosen beside a layer wins, with a warning naming the layer left out: the dialog
        preselects an embedding layer, so a user who browses to a file has usually not cleared it.
        """
        key = f"{name}_LAYER"
        if parameters.get(key) in (None, ""):
            return None
        layer = self.parameterAsVectorLayer(parameters, key, context)
        chosen = self.parameterAsFile(parameters, name, context) or self.parameterAsFile(parameters, "MODEL", context)
        if layer is not None and chosen:
            feedback = getattr(self, "_feedback", None)
            if feedback is not None:
                feedback.pushWarning(
                    self.tr(
                        f"Using {os.path.basename(chosen)}; the project layer '{layer.name()}' chosen beside it is "
                        "left out"
                    )
                )
            return None
        return layer

    def embedding_table(self, parameters, context, *, required: bool = True, name: str = "EMBEDDINGS"):
        """The table from the file (or else the layer) parameter, or None when optional and neither is given."""
        from mobclip_core.embeddings import read_embedding_table

        path = self.parameterAsFile(parameters, name, context)
        layer = self.embedding_layer(parameters, context, name)
        if path:
            if features_file_layer(path) is not None:
                raise QgsProcessingException(
                    self.tr(
                        f"{os.path.basename(path)} holds embeddings on its own features (emb_ fields, no "
                        f"{REGION_INDEX} field): this tool needs the table of cell embeddings, the embeddings.gpkg "
                        "or .parquet that mobclip train or export writes"
                    )
                )
            return read_embedding_table(path)
        if layer is not None:
            return embedding_table_from_layer(layer)
        if required:
            raise QgsProcessingException(
                self.tr(
                    "No embedding table given: choose a .parquet or .gpkg written by mobclip (train or export), "
                    "or an embedding layer of the project"
                )
            )
        return None


def project_embedding_layer(*, cells_only: bool) -> str | None:
    """The id of the embedding layer a dialog should open with: the active layer if it holds embeddings, else the
    first such layer in the legend; None when the project has none (and always under qgis_process)."""
    from qgis.core import QgsProject, QgsVectorLayer

    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() != app.thread():  # a script's processing.run in a background task
        return None
    try:
        from qgis.utils import iface

        active = iface.activeLayer() if iface is not None else None
    except ImportError:
        active = None
    legend = [node.layer() for node in QgsProject.instance().layerTreeRoot().findLayers()]
    for layer in [active, *legend]:
        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            names = set(layer.fields().names())
            if "emb_0" in names and (REGION_INDEX in names or not cells_only):
                return layer.id()
    return None


def features_file_layer(path: str, prefix: str = "emb_"):
    """The file's first layer when it holds embeddings on its own features (fields ``prefix``0, 1, ... and no
    h3_cell: polygons from 'Aggregate embeddings over polygons', points from 'Attach embeddings'), else None.
    Parquet files are cell tables (mobclip writes no other kind)."""
    from qgis.core import QgsVectorLayer

    file = (path or "").split("|")[0]  # "a.gpkg|layername=b": that layer of the file
    if not file or file.lower().endswith(".parquet") or not os.path.isfile(file):
        return None
    layer = QgsVectorLayer(path, os.path.splitext(os.path.basename(file))[0], "ogr")
    if not layer.isValid():
        return None
    names = layer.fields().names()
    embedded = any(n.startswith(prefix) and n[len(prefix) :].isdigit() for n in names)
    return layer if embedded and REGION_INDEX not in names else None


def embedding_table_from_layer(layer):
    """Read the h3_cell and emb_* attributes of a QGIS vector layer into a validated embedding table."""
    from mobclip_core.embeddings import embedding_columns, embedding_frame
    from mobclip_core.exceptions import InvalidInputError

    names = [f.name() for f in layer.fields()]
    if REGION_INDEX not in names:
        raise InvalidInputError(
            f"Layer '{layer.name()}' has no '{REGION_INDEX}' field, so it is not a table of cell embeddings: choose "
            "the MobCLIP embeddings layer (written by mobclip train or export), or its .parquet / .gpkg file"
        )
    cols = embedding_columns(names)
    idx = [names.index(REGION_INDEX)] + [names.index(c) for c in cols]
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(idx)
    rows = [f.attributes() for f in layer.getFeatures(request)]
    ids = [None if r[idx[0]] == None else str(r[idx[0]]) for r in rows]  # noqa: E711 - QGIS NULL equals None
    values = numbers([[r[i] for i in idx[1:]] for r in rows], len(cols))
    return embedding_frame(ids, values, cols, source=f"layer '{layer.name()}'")


def numbers(rows, width: int):
    """Attribute rows -> float64 matrix; NULL and non-numbers become NaN."""
    import numpy as np

    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)
    except (TypeError, ValueError):
        out = np.full((len(rows), width), np.nan)
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[i, j] = v
        return out


def nullable(values) -> list:
    """Floats with NaN -> Python floats with None (NULL in QGIS)."""
    return [None if v != v else float(v) for v in values]


def _static_destination(value) -> str:
    """The destination text of an output parameter's value ('' for none, or for one computed by an expression)."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        value = value.staticValue() if value.propertyType() == QgsProperty.StaticProperty else value.asExpression()
    return "" if value is None else str(value).strip()


def _file_and_layer(text: str) -> tuple[str, str | None]:
    """(file, layer or None) of ``/x.gpkg``, ``/x.gpkg|layername=NAME`` or ``ogr:dbname='/x.gpkg' table="NAME"
    (geom)`` (the dialog's "Save to GeoPackage"); ('', None) for what is not a file (memory:, postgres://...)."""
    import re

    if text.startswith("ogr:"):
        db, table = re.search(r"dbname='([^']*)'", text), re.search(r'table="([^"]*)"', text)
        return (db.group(1), table.group(1) if table else None) if db else ("", None)
    path, _, options = text.partition("|")
    if not path or "://" in path or path.startswith(("memory:", "TEMPORARY_OUTPUT")):
        return "", None
    return path, next((o.split("=", 1)[1] for o in options.split("|") if o.startswith("layername=")), None)


def _layer_names(path: str, *, update: bool = False):
    """(open OGR dataset or None, its layer names), GDAL errors as return codes whatever the caller's mode."""
    from osgeo import gdal, ogr

    with _gdal_errors_as_return_codes(gdal, ogr):
        data = ogr.Open(path, 1 if update else 0)
    return data, [data.GetLayer(i).GetName() for i in range(data.GetLayerCount())] if data is not None else []


def linear_geometry(g: QgsGeometry) -> QgsGeometry:
    """``g`` with curves replaced by straight segments, so the library sees plain (multi)polygons, lines and points.
    A MultiSurface of plain polygons (how ArcGIS and FileGDB exports arrive) becomes a MultiPolygon, which QGIS
    3.22's ``convertToStraightSegment`` leaves as it is."""
    return QgsGeometry(g.constGet().segmentize()) if QgsWkbTypes.isCurvedType(g.wkbType()) else g


def _staged_layer_name(file: str, layer: str) -> str | None:
    """A free layer name beside ``layer`` in the GeoPackage ``file`` to write a replacement into, or None where the
    layer cannot be swapped in afterwards (not a GeoPackage; a GDAL without layer renaming, before 3.5)."""
    from osgeo import ogr

    if not file.lower().endswith(".gpkg") or not hasattr(ogr.Layer, "Rename"):
        return None
    names = {n.casefold() for n in _layer_names(os.path.abspath(file))[1]}
    for i in range(1000):
        staged = f"{layer}_mobclip_new{i or ''}"
        if staged.casefold() not in names:
            return staged
    return None


def _with_layer(text: str, layer: str, new: str) -> str:
    """A destination string naming layer ``new`` of its file instead of ``layer``."""
    import re

    if text.startswith("ogr:"):
        return re.sub(r'table="[^"]*"', f'table="{new}"', text, count=1)
    return re.sub(r"layername=[^|]*", f"layername={new}", text, count=1)


def _replace_layer(file: str, layer: str, staged: str) -> None:
    """In one transaction: delete ``layer`` of the GeoPackage ``file`` and rename ``staged`` to it. Raises OSError
    (the transaction rolled back) when GDAL refuses."""
    from osgeo import gdal, ogr

    with _gdal_errors_as_return_codes(gdal, ogr):
        data, names = _layer_names(file, update=True)
        if data is None:
            raise OSError(f"cannot open {file} for writing: {gdal.GetLastErrorMsg()}")
        if data.StartTransaction() != 0:
            raise OSError(f"cannot start a transaction: {gdal.GetLastErrorMsg()}")
        old = next((i for i, n in enumerate(names) if n.casefold() == layer.casefold()), None)
        done = old is None or data.DeleteLayer(old) == 0
        done = done and data.GetLayerByName(staged).Rename(layer) == 0
        if not done or data.CommitTransaction() != 0:
            message = gdal.GetLastErrorMsg()
            data.RollbackTransaction()
            raise OSError(message or "GDAL refused")
        data = None


def output_chosen(value) -> bool:
    """Whether an optional output was given a destination. A blank cell of the batch dialog arrives as an empty
    ``QgsProcessingOutputLayerDefinition``, which is truthy: test what it points at."""
    return _static_destination(value) != ""


def existing_destination(value) -> str | None:
    """The file an output parameter's value names when it already holds what the run would write (the file, or the
    named layer of a GeoPackage), else None. Such an output is created after the long part of a run: creating it
    replaces it, and a cancelled run must leave it as it was (it may even be the input)."""
    path, layer = _file_and_layer(_static_destination(value))
    path = os.path.abspath(path) if path else ""
    if not path or not os.path.isfile(path):
        return None
    return path if layer is None or layer.lower() in {n.lower() for n in _layer_names(path)[1]} else None


def discard_file_output(dest: str) -> None:
    """Delete a failed run's output ``dest`` (``/x.gpkg`` or ``/x.gpkg|layername=NAME``): the file it created, or
    only its layer where the file holds other layers (an output written into an existing GeoPackage). Raises
    ``OSError`` when that fails (a file locked by another program)."""
    path, layer = _file_and_layer(dest)
    path = os.path.abspath(path) if path else ""
    if not path or not os.path.isfile(path):
        return
    from osgeo import gdal, ogr

    data, names = _layer_names(path, update=True)
    with _gdal_errors_as_return_codes(gdal, ogr):
        if layer is not None and names != [layer]:  # other layers live in the file: remove only the run's
            failed = layer in names and data.DeleteLayer(names.index(layer)) != 0
            data = None  # closes the file
            if failed:
                raise OSError(f"could not remove layer {layer!r} from {path}: {gdal.GetLastErrorMsg()}")
            return
        driver = data.GetDriver() if data is not None else None
        data = None
        if driver is not None:
            driver.DeleteDataSource(path)  # with a shapefile's .dbf, .shx, .prj
    for leftover in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(leftover):
            os.remove(leftover)


@contextlib.contextmanager
def _gdal_errors_as_return_codes(*modules):
    """GDAL's error mode for this block: return codes and messages, not exceptions (another plugin, or GDAL 4, may
    have turned exceptions on; ``gdal`` and ``ogr`` each keep a flag); the caller's modes are restored."""
    had = [m for m in modules if m.GetUseExceptions()]
    for m in had:
        m.DontUseExceptions()
    try:
        yield
    finally:
        for m in had:
            m.UseExceptions()
