"""Write a training config (and the inputs it names) from layers of the project, for *Train embeddings*."""

from __future__ import annotations

import csv
import json
import os

from qgis.core import (
    NULL,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsVectorFileWriter,
)

from mobclip_core.dependencies import TRAINING

from .base import WGS84, MobClipAlgorithm


def _wgs84():
    from qgis.core import QgsCoordinateReferenceSystem

    return QgsCoordinateReferenceSystem(WGS84)


CONFIG_NAME = "mobclip.toml"


class WriteTrainingConfig(MobClipAlgorithm):
    algorithm_name = "write_training_config"
    display_name = "Write a training config from layers"
    group_name = "Training"
    requirements = TRAINING  # it needs only the standard library, but what it prepares needs the Training packages
    help_text = (
        "Turns layers you already have into the inputs of a MobCLIP training run: writes each chosen layer into "
        "an inputs folder and a config file (mobclip.toml) that names them, then checks the config. Run "
        "'Train embeddings from a config file' on it next (or edit it first: the training settings are the "
        "defaults).\n\n"
        "Mobility (one is needed): an origin-destination table between zones (a table with origin zone, "
        "destination zone and flow fields, e.g. a CSV of taxi trips between census tracts) with the zone polygons "
        "and their id field; or activity records (points with a person id and a time field: check-ins, GPS "
        "fixes), which become a weekly co-presence graph.\n\n"
        "POIs (optional): points with a name and/or a category field. Demographics (optional): zone polygons "
        "with population counts by age (and sex) group, one numeric field per group (e.g. census tracts).\n\n"
        "The H3 resolution sets the cell size: 9 (about 0.1 km2) suits a city, 7-8 a region. The output "
        "folder gets mobclip.toml, an inputs/ folder and, after training, output/."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterString("NAME", self.tr("Name of the run"), "my-region"))
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION", self.tr("H3 resolution"), QgsProcessingParameterNumber.Integer, 9, False, 5, 12
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "OD_TABLE",
                self.tr("Mobility: origin-destination table between zones"),
                [QgsProcessing.TypeVector],
                optional=True,
            )
        )
        for key, label in (("OD_ORIGIN", "origin zone"), ("OD_DESTINATION", "destination zone")):
            self.addParameter(
                QgsProcessingParameterField(key, self.tr(f"OD table: {label} field"), None, "OD_TABLE", optional=True)
            )
        self.addParameter(
            QgsProcessingParameterField(
                "OD_FLOW",
                self.tr("OD table: flow field"),
                None,
                "OD_TABLE",
                QgsProcessingParameterField.Numeric,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "ZONES", self.tr("Zones of the OD table (polygons)"), [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField("ZONE_ID", self.tr("Zone id field"), None, "ZONES", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "RECORDS",
                self.tr("Mobility: activity records (points)"),
                [QgsProcessing.TypeVectorPoint],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField("PERSON", self.tr("Records: person id field"), None, "RECORDS", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterField("TIME", self.tr("Records: time field"), None, "RECORDS", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "POIS", self.tr("POIs (points)"), [QgsProcessing.TypeVectorPoint], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField("POI_NAME", self.tr("POI name field"), None, "POIS", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterField("POI_CATEGORY", self.tr("POI category field"), None, "POIS", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "DEMOGRAPHICS",
                self.tr("Demographics: zones with population counts by group (polygons)"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "DEMOGRAPHICS_ID", self.tr("Demographics: zone id field"), None, "DEMOGRAPHICS", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "DEMOGRAPHICS_FIELDS",
                self.tr("Demographics: count fields, one per age/sex group"),
                None,
                "DEMOGRAPHICS",
                QgsProcessingParameterField.Numeric,
                allowMultiple=True,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputFile("CONFIG", self.tr("Config file")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.config import load_config
        from mobclip_core.exceptions import ConfigError
        from mobclip_core.io import output_transaction

        folder = self.parameterAsString(parameters, "OUTPUT", context)
        name = self.parameterAsString(parameters, "NAME", context).strip() or "my-region"
        resolution = self.parameterAsInt(parameters, "RESOLUTION", context)
        sections = {"mobility": self._mobility(parameters, context)}
        if parameters.get("POIS"):
            sections["poi"] = self._pois(parameters, context)
        if parameters.get("DEMOGRAPHICS"):
            sections["demographics"] = self._demographics(parameters, context)
        writers = [w for section in sections.values() for w in section.pop("_write")]
        with output_transaction(folder) as txn:  # inputs/ and the config appear together, or (error, Cancel) not
            inputs = txn.path("inputs")
            inputs.mkdir()
            for i, write in enumerate(writers):
                write(self, str(inputs), context, feedback)
                feedback.setProgress(90 * (i + 1) / len(writers))
            staged = txn.path(CONFIG_NAME)
            staged.write_text(_toml(name, resolution, sections), encoding="utf-8")
            try:  # the config as Train will read it, its inputs beside it
                load_config(staged)
            except ConfigError as exc:
                raise QgsProcessingException(self.tr(f"The written config does not load: {exc}")) from None
        config = os.path.join(folder, CONFIG_NAME)
        feedback.pushInfo(self.tr(f"Wrote {config}: next, run 'Train embeddings from a config file' on it"))
        feedback.setProgress(100)
        return {"CONFIG": config, "OUTPUT": folder}

    # --- one section per input --------------------------------------------------------------------------------
    def _field(self, parameters, key: str, context, what: str) -> str:
        value = self.parameterAsFields(parameters, key, context)
        if not value:
            raise QgsProcessingException(self.tr(f"Choose the {what} ({key})"))
        return value[0]

    def _mobility(self, parameters, context) -> dict:
        has_od, has_records = bool(parameters.get("OD_TABLE")), bool(parameters.get("RECORDS"))
        if has_od == has_records:
            raise QgsProcessingException(
                self.tr(
                    "Choose one mobility input: an origin-destination table with its zones, or activity records "
                    "(points with a person id and a time)" + (" -- not both" if has_od else "")
                )
            )
        if has_records:
            records = self.require_source(parameters, "RECORDS", context)
            person = self._field(parameters, "PERSON", context, "person id field of the records")
            time = self._field(parameters, "TIME", context, "time field of the records")
            write = _records_writer(records, person, time)
            return {
                "records": "inputs/records.csv",
                "person": "person",
                "time": "time",
                "lon": "lon",
                "lat": "lat",
                "_write": [write],
            }
        table = self.parameterAsSource(parameters, "OD_TABLE", context)
        origin = self._field(parameters, "OD_ORIGIN", context, "origin zone field of the OD table")
        destination = self._field(parameters, "OD_DESTINATION", context, "destination zone field of the OD table")
        flow = self._field(parameters, "OD_FLOW", context, "flow field of the OD table")
        if not parameters.get("ZONES"):
            raise QgsProcessingException(
                self.tr("An OD table between zones needs the zone polygons (ZONES) and their id field (ZONE_ID)")
            )
        zones = self.require_source(parameters, "ZONES", context)
        zone_id = self._field(parameters, "ZONE_ID", context, "zone id field of the zones")
        return {
            "od": "inputs/od.csv",
            "origin": "origin",
            "destination": "destination",
            "flow": "flow",
            "zones": "inputs/zones.gpkg",
            "zone_id": zone_id,
            "_write": [
                _table_writer(table, {origin: "origin", destination: "destination", flow: "flow"}, "od.csv"),
                _layer_writer(zones, [zone_id], "zones.gpkg"),
            ],
        }

    def _pois(self, parameters, context) -> dict:
        pois = self.require_source(parameters, "POIS", context)
        name = self.parameterAsFields(parameters, "POI_NAME", context)
        category = self.parameterAsFields(parameters, "POI_CATEGORY", context)
        if not name and not category:
            raise QgsProcessingException(self.tr("Choose the POIs' name field, category field or both"))
        keep = [*name, *category]
        section = {
            "path": "inputs/pois.gpkg",
            "name": name[0] if name else None,
            "category": category[0] if category else None,
        }
        if not name:
            section["encoder"] = "counts"  # categories only: shares per cell, no text model needed
        section["_write"] = [_layer_writer(pois, keep, "pois.gpkg")]
        return section

    def _demographics(self, parameters, context) -> dict:
        layer = self.require_source(parameters, "DEMOGRAPHICS", context)
        zone_id = self._field(parameters, "DEMOGRAPHICS_ID", context, "zone id field of the demographics layer")
        columns = self.parameterAsFields(parameters, "DEMOGRAPHICS_FIELDS", context)
        if len(columns) < 2:
            raise QgsProcessingException(
                self.tr("Choose at least two count fields for the demographics (one per age or age/sex group)")
            )
        return {
            "table": "inputs/demographics.gpkg",
            "zone_id": zone_id,
            "columns": columns,
            "_write": [_layer_writer(layer, [zone_id, *columns], "demographics.gpkg")],
        }


# --- writers: each is called as write(algorithm, staging folder, context, feedback) ----------------------------
def _layer_writer(source, fields: list[str], filename: str):
    """The source's features with only ``fields``, in WGS84, as a GeoPackage."""

    def write(alg, folder: str, context, feedback) -> None:
        from qgis.core import QgsFields

        idx = [source.fields().indexFromName(f) for f in fields]
        out_fields = QgsFields()
        for i in idx:
            out_fields.append(source.fields().at(i))
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName, options.layerName = "GPKG", os.path.splitext(filename)[0]
        path = os.path.join(folder, filename)
        writer = QgsVectorFileWriter.create(
            path, out_fields, source.wkbType(), _wgs84(), context.transformContext(), options
        )
        if writer.hasError():
            raise QgsProcessingException(alg.tr(f"Could not write {filename}: {writer.errorMessage()}"))
        transform = QgsCoordinateTransform(source.sourceCrs(), _wgs84(), context.transformContext())
        for n, feature in enumerate(source.getFeatures()):
            if n % 1000 == 0:
                alg.check_cancel(feedback)
            out = QgsFeature(out_fields)
            out.setAttributes([feature.attributes()[i] for i in idx])
            geometry = feature.geometry()
            if not geometry.isNull():
                geometry.transform(transform)
                out.setGeometry(geometry)
            writer.addFeature(out, QgsFeatureSink.FastInsert)
        del writer  # closes the file

    return write


def _cell(value):
    return "" if value == NULL else value


def _table_writer(source, columns: dict[str, str], filename: str):
    """The source's ``columns`` (renamed as the mapping says) as a CSV, no geometry."""

    def write(alg, folder: str, context, feedback) -> None:
        idx = [source.fields().indexFromName(c) for c in columns]
        with open(os.path.join(folder, filename), "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(list(columns.values()))
            for n, feature in enumerate(source.getFeatures()):
                if n % 10000 == 0:
                    alg.check_cancel(feedback)
                attrs = feature.attributes()
                out.writerow([_cell(attrs[i]) for i in idx])

    return write


def _records_writer(source, person: str, time: str):
    """Each record's person, time (ISO 8601 when QGIS holds a date-time) and WGS84 lon/lat, as a CSV."""

    def write(alg, folder: str, context, feedback) -> None:
        from qgis.PyQt.QtCore import QDate, QDateTime, Qt

        transform = QgsCoordinateTransform(source.sourceCrs(), _wgs84(), context.transformContext())
        ip, it = source.fields().indexFromName(person), source.fields().indexFromName(time)
        with open(os.path.join(folder, "records.csv"), "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["person", "time", "lon", "lat"])
            for n, feature in enumerate(source.getFeatures()):
                if n % 10000 == 0:
                    alg.check_cancel(feedback)
                geometry = feature.geometry()
                if geometry.isNull() or geometry.isEmpty():
                    continue
                geometry.transform(transform)
                point = geometry.vertexAt(0)
                attrs = feature.attributes()
                stamp = attrs[it]
                if isinstance(stamp, QDateTime | QDate):
                    stamp = stamp.toString(Qt.ISODate)
                out.writerow([_cell(attrs[ip]), _cell(stamp), f"{point.x():.7f}", f"{point.y():.7f}"])

    return write


def _toml(name: str, resolution: int, sections: dict[str, dict]) -> str:
    """The config text: paths relative to it, the training settings left at their defaults."""
    lines = [
        "# Written by QGIS: MobCLIP > Training > Write a training config from layers. Paths are relative to this file.",
        f"name = {json.dumps(name)}",
        f"resolution = {resolution}",
        'output = "output"',
        'cache_dir = "cache"',
    ]
    for section, values in sections.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"
