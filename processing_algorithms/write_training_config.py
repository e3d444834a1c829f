"""Write a training config (and the inputs it names) from layers of the project, for *Train embeddings*."""

from __future__ import annotations

import csv
import json
import os

from qgis.core import (
    NULL,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingUtils,
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
        "Mobility (at least one): an origin-destination table between zones (a table with origin zone, "
        "destination zone and flow fields, e.g. a CSV of taxi trips between census tracts) with the zone polygons "
        "and their id field; or activity records (points with a person id and a time field: check-ins, GPS "
        "fixes), which become a weekly co-presence graph. Open data works too: a GTFS feed (zip) of the region's "
        "transit (stops linked by their trips per week), a trip table with start and end coordinates (bike "
        "share, taxi; the columns are recognised from the header, or named in 'Trip table: coordinate "
        "columns' as start lon, start lat, end lon, end lat), US LODES commutes "
        "with their crosswalk. "
        "Several mobility inputs are combined into one graph, each with the same weight.\n\n"
        "POIs (optional): points with a name and/or a category field, or an OpenStreetMap extract (.osm.pbf) or "
        "Overture places file. Demographics (optional): zone polygons with population counts by age (and sex) "
        "group, one numeric field per group (e.g. census tracts), or a folder of WorldPop age/sex rasters.\n\n"
        "Layers are written into the inputs folder; files (GTFS, trips, LODES, OSM, WorldPop) are named where "
        "they are, so keep them there.\n\n"
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
                # any type: a CSV dropped on the map (no type detection) has text fields; the flows are converted
                # when the table is written, and a value that is not a number is named in the error
                QgsProcessingParameterField.Any,
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
        # no file filter: QGIS would refuse a value that does not match it before the algorithm runs (an upper-case
        # FEED.ZIP, a feed unzipped into a folder, a folder of Parquet files), and the checks below read each file
        self.addParameter(QgsProcessingParameterFile("GTFS", self.tr("Mobility: GTFS feed (zip)"), optional=True))
        self.addParameter(
            QgsProcessingParameterFile("TRIPS", self.tr("Mobility: trip table (start, end coordinates)"), optional=True)
        )
        self.addParameter(  # right under the table: where the message about unrecognised columns sends the user
            QgsProcessingParameterString("TRIP_COLUMNS", self.tr("Trip table: coordinate columns"), optional=True)
        )
        for key, label in (
            ("LODES", "Mobility: LODES commutes (OD file)"),
            ("LODES_CROSSWALK", "LODES crosswalk (xx_xwalk.csv.gz)"),
        ):
            self.addParameter(QgsProcessingParameterFile(key, self.tr(label), optional=True))
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
            QgsProcessingParameterFile(
                "POI_FILE",
                self.tr("POIs from a file (.osm.pbf, Overture places)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "DEMOGRAPHICS",
                self.tr("Demographics: zones with age/sex counts"),
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
                self.tr("Demographics: count fields (one per group)"),
                None,
                "DEMOGRAPHICS",
                QgsProcessingParameterField.Numeric,
                allowMultiple=True,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "WORLDPOP",
                self.tr("Demographics: folder of WorldPop age/sex rasters"),
                QgsProcessingParameterFile.Folder,
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
        if parameters.get("POIS") and parameters.get("POI_FILE"):
            raise QgsProcessingException(self.tr("Choose POIs as a layer (POIS) or as a file (POI_FILE), not both"))
        if parameters.get("POIS"):
            sections["poi"] = self._pois(parameters, context)
        elif parameters.get("POI_FILE"):
            sections["poi"] = self._poi_file(parameters, context)
        if parameters.get("DEMOGRAPHICS") and parameters.get("WORLDPOP"):
            raise QgsProcessingException(
                self.tr("Choose demographics as zones with counts (DEMOGRAPHICS) or WorldPop rasters, not both")
            )
        if parameters.get("DEMOGRAPHICS"):
            sections["demographics"] = self._demographics(parameters, context)
        elif parameters.get("WORLDPOP"):
            sections["demographics"] = self._worldpop(parameters, context)
        if not ({"poi", "demographics"} & set(sections)):  # Train would stop with "no auxiliary modality to align"
            sections["train"] = {"clip": False, "_write": []}
            feedback.pushWarning(
                self.tr(
                    "No POIs or demographics: there is nothing to align the mobility graph with, so the config sets "
                    "[train] clip = false and the embeddings will be the graph's LINE vectors propagated over it, "
                    "untrained. Add POIs or census counts for the MobCLIP model"
                )
            )
        writers = [w for section in sections.values() for w in section.pop("_write")]
        # each input file and the config appear together, or (error, Cancel) none of them; other files in the
        # folder (an image you added to inputs/, an earlier output/) are left alone
        with output_transaction(folder) as txn:
            for i, (filename, write) in enumerate(writers):
                write(self, str(txn.path(f"inputs/{filename}")), context, feedback)
                feedback.setProgress(90 * (i + 1) / len(writers))
            staged = txn.path(CONFIG_NAME)
            staged.write_text(_toml(name, resolution, sections), encoding="utf-8")
            try:  # the config as Train will read it, its inputs beside it
                load_config(staged)
            except ConfigError as exc:
                raise QgsProcessingException(self.tr(f"The written config does not load: {exc}")) from None
        config = os.path.join(folder, CONFIG_NAME)
        inputs = os.path.join(folder, "inputs")
        others = sorted(set(os.listdir(inputs)) - {name for name, _ in writers}) if os.path.isdir(inputs) else []
        if others:  # an earlier run's inputs, or files you added: left as they are
            feedback.pushInfo(self.tr(f"inputs/ also holds {', '.join(others)}, which this config does not name"))
        feedback.pushInfo(self.tr(f"Wrote {config}: next, run 'Train embeddings from a config file' on it"))
        if os.path.realpath(folder).startswith(os.path.realpath(QgsProcessingUtils.tempFolder()) + os.sep):
            feedback.pushWarning(
                self.tr(
                    "The output folder is a temporary one, which QGIS deletes when it closes: choose an output "
                    "folder to keep the config and what training writes beside it"
                )
            )
        feedback.setProgress(100)
        return {"CONFIG": config, "OUTPUT": folder}

    # --- one section per input --------------------------------------------------------------------------------
    def _fields(self, parameters, key: str, context, source, what: str, *, numeric: bool = False) -> list[str]:
        """The chosen field names of ``key``, each checked against its layer (qgis_process and scripts pass any
        string; a missing name would otherwise read the layer's last column)."""
        names = self.parameterAsFields(parameters, key, context)
        if not names:
            raise QgsProcessingException(self.tr(f"Choose the {what} ({key})"))
        self._check_fields(key, source, names, numeric=numeric)
        return names

    def _check_fields(self, key: str, source, names: list[str], *, numeric: bool = False) -> None:
        fields = source.fields()
        for n in names:
            index = fields.indexFromName(n)
            if index < 0:
                raise QgsProcessingException(
                    self.tr(f"{key}: the layer has no field '{n}'; it has {', '.join(fields.names()[:20])}")
                )
            if numeric and not fields.at(index).isNumeric():
                raise QgsProcessingException(
                    self.tr(f"{key}: '{n}' is not numeric ({fields.at(index).typeName()}): choose a number field")
                )

    def _file(self, parameters, key: str, context) -> str:
        """The absolute path of a file (or folder) parameter that exists: the config names it where it is."""
        path = self.parameterAsFile(parameters, key, context)
        if not path or not os.path.exists(path):
            raise QgsProcessingException(self.tr(f"{key}: {path or 'no path'} does not exist"))
        return os.path.abspath(path)

    def _checked(self, key: str, check, path: str):
        """``check(path)`` (a header-only reader of the library), its refusal as this algorithm's error."""
        from mobclip_core.exceptions import InvalidInputError

        try:
            return check(path)
        except InvalidInputError as exc:
            raise QgsProcessingException(self.tr(f"{key}: {exc}")) from None

    def _mobility_files(self, parameters, context) -> list[dict]:
        """[[mobility.sources]] of the open-data files, each checked from its header or file list."""
        from mobclip_core.exceptions import InvalidInputError, UnknownTripLayoutError
        from mobclip_core.sources.gtfs import check_feed
        from mobclip_core.sources.lodes import check_od_header, crosswalk_block_column
        from mobclip_core.sources.trips import trip_table_columns

        sources = []
        if parameters.get("GTFS"):
            path = self._file(parameters, "GTFS", context)
            self._checked("GTFS", check_feed, path)
            sources.append({"kind": "gtfs", "path": path})
        if parameters.get("TRIPS"):
            path = self._file(parameters, "TRIPS", context)
            named = [c.strip() for c in self.parameterAsString(parameters, "TRIP_COLUMNS", context).split(",")]
            named = [c for c in named if c]
            if named and len(named) != 4:
                raise QgsProcessingException(
                    self.tr(
                        f"TRIP_COLUMNS: name four columns, comma-separated (start lon, start lat, end lon, end lat); "
                        f"got {len(named)}"
                    )
                )
            try:
                found = trip_table_columns(path, columns=tuple(named) or None)[0]
            except UnknownTripLayoutError as exc:
                raise QgsProcessingException(
                    self.tr(
                        f"TRIPS: MobCLIP does not recognise the coordinate columns of {os.path.basename(path)} (it "
                        f"has {', '.join(exc.columns[:20])}): name them in 'Trip table: coordinate columns' "
                        "(TRIP_COLUMNS) as start longitude, start latitude, end longitude, end latitude, "
                        "e.g. 'from_x, from_y, to_x, to_y'"
                    )
                ) from None
            except InvalidInputError as exc:
                raise QgsProcessingException(self.tr(f"TRIPS: {exc}")) from None
            self._check_trip_coordinates(path, found)
            source = {"kind": "trips", "path": path}
            if named:
                source.update(zip(("origin_lon", "origin_lat", "destination_lon", "destination_lat"), found))
            sources.append(source)
        if bool(parameters.get("LODES")) != bool(parameters.get("LODES_CROSSWALK")):
            raise QgsProcessingException(
                self.tr(
                    "LODES commutes need both the OD file (LODES, xx_od_main_JT00_YYYY.csv.gz) and the state's "
                    "crosswalk (LODES_CROSSWALK, xx_xwalk.csv.gz), from the same LODES release"
                )
            )
        if parameters.get("LODES"):
            path, crosswalk = (self._file(parameters, k, context) for k in ("LODES", "LODES_CROSSWALK"))
            self._checked("LODES", check_od_header, path)
            self._checked("LODES_CROSSWALK", crosswalk_block_column, crosswalk)
            sources.append({"kind": "lodes", "path": path, "crosswalk": crosswalk})
        return sources

    def _check_trip_coordinates(self, path: str, columns) -> None:
        """The first rows' coordinates: none at all, or longitude and latitude that look swapped or out of range,
        stop here (Train would report it after building the graph, in terms of the config file)."""
        import numpy as np

        from mobclip_core.sources.trips import iter_trips

        chunk = next(iter_trips(path, columns=tuple(columns), batch_rows=10_000), None)
        if chunk is None or chunk.o_lon.size == 0:
            raise QgsProcessingException(
                self.tr(f"TRIPS: the first rows of {os.path.basename(path)} have no trip with both ends located")
            )
        lon, lat = np.r_[chunk.o_lon, chunk.d_lon], np.r_[chunk.o_lat, chunk.d_lat]
        named = f"columns {', '.join(columns)}"
        if (np.abs(lon) > 180).mean() > 0.5 or (np.abs(lat) > 90).mean() > 0.5:
            raise QgsProcessingException(
                self.tr(
                    f"TRIPS: the {named} do not hold longitudes and latitudes in degrees (e.g. {lon[0]:g}, "
                    f"{lat[0]:g}): give coordinates in WGS84 degrees"
                )
            )
        if (lat < -60).mean() > 0.5:  # where swapped North American coordinates land
            raise QgsProcessingException(
                self.tr(
                    f"TRIPS: most trips start or end south of 60 degrees south (e.g. lon {lon[0]:g}, lat "
                    f"{lat[0]:g}): are longitude and latitude swapped? The order is start longitude, start "
                    f"latitude, end longitude, end latitude ({named})"
                )
            )

    def _mobility(self, parameters, context) -> dict:
        has_od, has_records = bool(parameters.get("OD_TABLE")), bool(parameters.get("RECORDS"))
        if has_od and has_records:
            raise QgsProcessingException(
                self.tr(
                    "Choose an origin-destination table with its zones or activity records, not both (a GTFS feed, "
                    "a trip table or LODES commutes can join either)"
                )
            )
        files = self._mobility_files(parameters, context)
        if not (has_od or has_records or files):
            raise QgsProcessingException(
                self.tr(
                    "Choose a mobility input: an origin-destination table with its zones, activity records "
                    "(points with a person id and a time), a GTFS feed, a trip table or LODES commutes"
                )
            )
        section: dict = {"_write": []}
        if has_records:
            section = self._records(parameters, context)
        elif has_od:
            section = self._od(parameters, context)
        return {**section, "_sources": files}

    def _records(self, parameters, context) -> dict:
        records = self.require_source(parameters, "RECORDS", context)
        person = self._fields(parameters, "PERSON", context, records, "person id field of the records")[0]
        time = self._fields(parameters, "TIME", context, records, "time field of the records")[0]
        section = {"records": "inputs/records.csv", "person": "person", "time": "time", "lon": "lon", "lat": "lat"}
        return {**section, "_write": [("records.csv", _records_writer(records, person, time))]}

    def _od(self, parameters, context) -> dict:
        table = self.parameterAsSource(parameters, "OD_TABLE", context)
        if table is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, "OD_TABLE"))
        origin = self._fields(parameters, "OD_ORIGIN", context, table, "origin zone field of the OD table")[0]
        destination = self._fields(parameters, "OD_DESTINATION", context, table, "destination zone field")[0]
        flow = self._fields(parameters, "OD_FLOW", context, table, "flow field of the OD table")[0]  # a CSV: text
        if not parameters.get("ZONES"):
            raise QgsProcessingException(
                self.tr("An OD table between zones needs the zone polygons (ZONES) and their id field (ZONE_ID)")
            )
        zones = self.require_source(parameters, "ZONES", context)
        zone_id = self._fields(parameters, "ZONE_ID", context, zones, "zone id field of the zones")[0]
        self._check_zone_ids(table, origin, destination, zones, zone_id)
        columns = {origin: ("origin", _zone_id), destination: ("destination", _zone_id), flow: ("flow", _flow)}
        return {
            "od": "inputs/od.csv",
            "origin": "origin",
            "destination": "destination",
            "flow": "flow",
            "zones": "inputs/zones.gpkg",
            "zone_id": ZONE,
            "_write": [("od.csv", _table_writer(table, columns)), ("zones.gpkg", _layer_writer(zones, zone_id, []))],
        }

    def _check_zone_ids(self, table, origin: str, destination: str, zones, zone_id: str) -> None:
        """The OD table's zone ids against the zone layer's, compared as training compares them: refuse a table
        that names none of the zones (a wrong id field) or the same field twice; warn about rows training skips."""
        from mobclip_core.sources.zones import normalise_zone_ids

        if origin.lower() == destination.lower():
            raise QgsProcessingException(
                self.tr(f"The OD table's origin and destination fields are the same field ({origin!r}): choose both")
            )

        def ids(values: list) -> list:  # as they will be written (``_zone_id``), then as training reads them
            return list(normalise_zone_ids([_zone_id(v) for v in values]))

        known = set(ids(_values(zones, [zone_id])[0]))
        o, d = (ids(v) for v in _values(table, [origin, destination]))
        matched = [a in known and b in known for a, b in zip(o, d)]
        if matched and not any(matched):
            raise QgsProcessingException(
                self.tr(
                    f"No zone id of the OD table's {origin!r} and {destination!r} fields is in the zones' {zone_id!r} "
                    f"field (OD ids like {list(dict.fromkeys(o))[:3]}, zone ids like {sorted(known)[:3]}): choose "
                    "the zone layer's field that holds the codes the OD table uses"
                )
            )
        lost = len(matched) - sum(matched)
        if lost:
            self._feedback.pushWarning(
                self.tr(
                    f"{lost} of {len(matched)} OD rows name a zone that the zone layer lacks (e.g. "
                    f"{next(a if a not in known else b for a, b in zip(o, d) if a not in known or b not in known)!r}): "
                    "training skips them"
                )
            )

    def _pois(self, parameters, context) -> dict:
        pois = self.require_source(parameters, "POIS", context)
        name = self.parameterAsFields(parameters, "POI_NAME", context)
        category = self.parameterAsFields(parameters, "POI_CATEGORY", context)
        if not name and not category:
            raise QgsProcessingException(self.tr("Choose the POIs' name field, category field or both"))
        name = self._fields(parameters, "POI_NAME", context, pois, "name field")[0] if name else None
        category = self._fields(parameters, "POI_CATEGORY", context, pois, "category field")[0] if category else None
        chosen = [f for f in (name, category) if f]
        for field, values in zip(chosen, _values(pois, chosen)):
            if not any(v is not None and str(v).strip() for v in values):
                raise QgsProcessingException(
                    self.tr(
                        f"The POIs' field {field!r} is empty (NULL or blank) for all {len(values)} features: choose a "
                        "field that holds names or categories"
                    )
                )
        # written as "name" and "category" (empty where not chosen): what [poi] reads by default
        section = {"path": "inputs/pois.gpkg", "name": "name", "category": "category"}
        if name is None:
            section["encoder"] = "counts"  # categories only: shares per cell, no text model needed
        texts = [(name, "name"), (category, "category")]
        return {**section, "_write": [("pois.gpkg", _layer_writer(pois, None, [], texts=texts))]}

    def _demographics(self, parameters, context) -> dict:
        layer = self.require_source(parameters, "DEMOGRAPHICS", context)
        zone_id = self._fields(parameters, "DEMOGRAPHICS_ID", context, layer, "zone id field")[0]
        chosen = self.parameterAsFields(parameters, "DEMOGRAPHICS_FIELDS", context)
        columns = list(dict.fromkeys(c for c in chosen if c.lower() != zone_id.lower()))  # the id is not a count
        self._check_fields("DEMOGRAPHICS_FIELDS", layer, columns, numeric=True)
        if len(columns) < 2:
            raise QgsProcessingException(
                self.tr(
                    "Choose at least two count fields for the demographics (one per age or age/sex group), other "
                    "than the zone id"
                )
            )
        section = {"table": "inputs/demographics.gpkg", "zone_id": ZONE, "columns": columns}
        return {**section, "_write": [("demographics.gpkg", _layer_writer(layer, zone_id, columns))]}

    def _poi_file(self, parameters, context) -> dict:
        from mobclip_core.dependencies import install_hint, missing_modules
        from mobclip_core.modalities.poi import check_poi_file

        path = self._file(parameters, "POI_FILE", context)
        kind = self._checked("POI_FILE", check_poi_file, path)
        if kind == "layer":  # a layer file is read with the config's column names: name and category
            columns = _columns(path)
            lacking = [c for c in ("name", "category") if c not in columns]
            if lacking:
                raise QgsProcessingException(
                    self.tr(
                        f"POI_FILE: {os.path.basename(path)} is a layer without {' and '.join(map(repr, lacking))} "
                        f"fields (it has {', '.join(columns[:15])}): add it to the project and choose it as "
                        "'POIs (points)' with its name and category fields"
                    )
                )
        if kind == "osm" and missing_modules(["osmium"]):  # installed by the Training tier since 0.2.0
            raise QgsProcessingException(
                self.tr(f"POI_FILE: reading an OpenStreetMap extract needs osmium. {install_hint(['osmium'])}")
            )
        return {"path": path, "_write": []}

    def _worldpop(self, parameters, context) -> dict:
        from mobclip_core.modalities.demographics import worldpop_rasters

        folder = self._file(parameters, "WORLDPOP", context)
        self._checked("WORLDPOP", worldpop_rasters, folder)
        return {"worldpop": folder, "_write": []}


# --- writers: each is called as write(algorithm, path, context, feedback) ----------------------------------------
ZONE = "zone"  # the zone id column of the written files: text, so "17031" in the OD table meets "17031" in the zones


def _values(source, names: list[str]) -> list[list]:
    """The values of fields ``names`` of every feature, one list per field (attributes only, no geometry)."""
    index = [source.fields().lookupField(n) for n in names]
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(index)
    rows = [f.attributes() for f in source.getFeatures(request)]
    return [[None if r[i] == None else r[i] for r in rows] for i in index]  # noqa: E711 - QGIS NULL equals None


def _zone_id(value) -> str:
    """A zone id as text; integral numbers without ".0" (an OD table typed Real, or a CSV written from one, against
    Integer zone ids). Other text stays as it is (leading zeros of "06037" included)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    head, dot, tail = text.partition(".")
    if dot and head.lstrip("-").isdigit() and tail and set(tail) == {"0"}:
        return head
    return text


def _flow(value) -> float:
    """A flow as a number (a CSV read without type detection gives text), or a clear error naming the value."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise QgsProcessingException(
            f"OD_FLOW: {value!r} is not a number: choose the field that holds the flows"
        ) from None


def _transform(geometry, transform, feature, source) -> None:
    try:
        geometry.transform(transform)
    except QgsCsException as exc:
        raise QgsProcessingException(
            f"Feature {feature.id()} of '{source.sourceName()}' cannot be transformed from "
            f"{source.sourceCrs().authid() or 'its CRS'} to WGS84 ({exc}): check the layer's CRS"
        ) from None


def _layer_writer(source, zone_id: str | None, columns: list[str], *, texts=()):
    """The source's geometries in WGS84 as a GeoPackage, with ``zone_id`` (as text, named "zone"), ``columns``
    (as they are) and ``texts`` ((field or None, output name): text columns, empty where no field is given)."""

    def write(alg, path: str, context, feedback) -> None:
        from qgis.core import QgsField, QgsFields
        from qgis.PyQt.QtCore import QVariant

        src = source.fields()
        out_fields, getters = QgsFields(), []
        if zone_id is not None:
            out_fields.append(QgsField(ZONE, QVariant.String))
            i = src.indexFromName(zone_id)
            getters.append(lambda attrs, i=i: None if attrs[i] == NULL else _zone_id(attrs[i]))
        for c in columns:
            i = src.indexFromName(c)
            out_fields.append(QgsField(src.at(i)))
            getters.append(lambda attrs, i=i: attrs[i])
        for field, name in texts:
            out_fields.append(QgsField(name, QVariant.String))
            i = src.indexFromName(field) if field else -1
            getters.append(lambda attrs, i=i: "" if i < 0 or attrs[i] == NULL else str(attrs[i]))
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName, options.layerName = "GPKG", os.path.splitext(os.path.basename(path))[0]
        transform = QgsCoordinateTransform(source.sourceCrs(), _wgs84(), context.transformContext())
        writer = QgsVectorFileWriter.create(
            path, out_fields, source.wkbType(), _wgs84(), context.transformContext(), options
        )
        try:
            if writer.hasError():
                raise QgsProcessingException(
                    alg.tr(f"Could not write {os.path.basename(path)}: {writer.errorMessage()}")
                )
            for n, feature in enumerate(source.getFeatures()):
                if n % 1000 == 0:
                    alg.check_cancel(feedback)
                out = QgsFeature(out_fields)
                attrs = feature.attributes()
                out.setAttributes([get(attrs) for get in getters])
                geometry = feature.geometry()
                if not geometry.isNull():
                    _transform(geometry, transform, feature, source)
                    out.setGeometry(geometry)
                writer.addFeature(out, QgsFeatureSink.FastInsert)
        finally:
            del writer  # closes the file (before a rollback removes the staging folder)

    return write


def _table_writer(source, columns: dict):
    """The source's ``columns`` as a CSV: {field: (output name, convert or None)}; rows with a NULL are left out
    (and counted in a warning): Train would stop on them."""

    def write(alg, path: str, context, feedback) -> None:
        idx = [(source.fields().indexFromName(c), convert) for c, (_, convert) in columns.items()]
        skipped = 0
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow([name for name, _ in columns.values()])
            for n, feature in enumerate(source.getFeatures()):
                if n % 10000 == 0:
                    alg.check_cancel(feedback)
                attrs = feature.attributes()
                values = [attrs[i] for i, _ in idx]
                if any(v == NULL or v == "" for v in values):  # an empty CSV cell is text, not NULL
                    skipped += 1
                    continue
                out.writerow([convert(v) if convert else v for v, (_, convert) in zip(values, idx)])
        if skipped:
            feedback.pushWarning(alg.tr(f"{skipped} rows of the OD table with a NULL zone or flow left out"))

    return write


def _records_writer(source, person: str, time: str):
    """Each record's person, time (ISO 8601 when QGIS holds a date-time) and WGS84 lon/lat, as a CSV; records with
    a NULL person, time or geometry are left out (and counted)."""

    def write(alg, path: str, context, feedback) -> None:
        from qgis.PyQt.QtCore import QDate, QDateTime, Qt

        transform = QgsCoordinateTransform(source.sourceCrs(), _wgs84(), context.transformContext())
        ip, it = source.fields().indexFromName(person), source.fields().indexFromName(time)
        skipped = 0
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["person", "time", "lon", "lat"])
            for n, feature in enumerate(source.getFeatures()):
                if n % 10000 == 0:
                    alg.check_cancel(feedback)
                geometry, attrs = feature.geometry(), feature.attributes()
                who, stamp = attrs[ip], attrs[it]
                if geometry.isNull() or geometry.isEmpty() or who == NULL or stamp == NULL:
                    skipped += 1
                    continue
                _transform(geometry, transform, feature, source)
                point = geometry.vertexAt(0)
                if isinstance(stamp, QDateTime | QDate):
                    stamp = stamp.toString(Qt.ISODate)
                out.writerow([who, stamp, f"{point.x():.7f}", f"{point.y():.7f}"])
        if skipped:
            feedback.pushWarning(alg.tr(f"{skipped} records with no geometry, person or time left out"))

    return write


def _columns(path: str) -> list[str]:
    """The attribute names of a vector file (GeoParquet: its columns), from its header."""
    if path.lower().endswith((".parquet", ".geoparquet")):
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    import pyogrio

    return [str(f) for f in pyogrio.read_info(path)["fields"]]


def _value(value) -> str:
    """A TOML value: JSON's string escapes are TOML's, except that TOML also forbids a raw DEL."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml(name: str, resolution: int, sections: dict[str, dict]) -> str:
    """The config text: paths relative to it, the training settings left at their defaults."""
    lines = [
        "# Written by QGIS: MobCLIP > Training > Write a training config from layers. Relative paths are read from "
        "this file's folder.",
        f"name = {_value(name)}",
        f"resolution = {resolution}",
        'output = "output"',
        'cache_dir = "cache"',
    ]
    for section, values in sections.items():
        values = dict(values)
        tables = [(f"[{section}]", values), *((f"[[{section}.sources]]", v) for v in values.pop("_sources", []))]
        for header, table in tables:
            if header == f"[{section}]" and not any(v is not None for v in table.values()) and len(tables) > 1:
                continue  # only [[section.sources]]: no empty table before them
            lines += ["", header]
            lines += [f"{key} = {_value(value)}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"
