"""Functional zones: k-means or HDBSCAN clusters of places by embedding, described in the inputs' own terms."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ._places import (
    Styler,
    add_places_parameters,
    read_places,
    style_on_load,
    write_cells_raster,
    write_places,
    zone_style,
)
from .base import MobClipAlgorithm

METHODS = [
    "k-means, number of zones suggested (best silhouette)",
    "k-means, number of zones suggested (best BIC)",
    "k-means with the number of zones below",
    "HDBSCAN (density-based: as many zones as dense groups)",
]


class FunctionalZones(MobClipAlgorithm):
    algorithm_name = "functional_zones"
    display_name = "Functional zones"
    group_name = "Analysis"
    help_text = (
        "Groups places whose embeddings are alike into functional zones, and says what makes each zone "
        "different. k-means makes the number of zones you ask for, or suggests one (the best silhouette or BIC "
        "between 2 and the maximum); HDBSCAN finds as many dense groups as there are and leaves the rest in "
        "'No zone'. Zone 1 is the largest. Zones follow the embedding's strongest differences: with the default "
        "neighbourhood context (1.4 and 2.8 km) those are mostly parts of the city; for zones of land use a few "
        "blocks across, train with [train] context_m = [] (README: Asking the map questions).\n\n"
        "Places: the cells of an embedding table (a file or a project layer with an h3_cell field), or the "
        "features of a layer whose emb_ fields hold embeddings.\n\n"
        "Describing the zones (cells only): give the region dataset folder the embeddings were trained on "
        "(written by mobclip build or train) and/or a POI layer with a category field. Each zone is then "
        "profiled by the inputs that built the embedding: its most over-represented POI categories, the mean "
        "age of its people against the region's, how busy its cells are on the mobility graph; the label keeps "
        "what stands out, e.g. 'Zone 3: many supermarkets, young, busy'. The layer is styled one colour per "
        "zone with these labels in the legend; the profiles table has the numbers."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_places_parameters(self)
        self.addParameter(QgsProcessingParameterEnum("METHOD", self.tr("Method"), METHODS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterNumber(
                "K",
                self.tr("Number of zones (for 'k-means with the number of zones below')"),
                QgsProcessingParameterNumber.Integer,
                6,
                False,
                1,
                200,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "K_MAX",
                self.tr("Largest number of zones to try (suggested k)"),
                QgsProcessingParameterNumber.Integer,
                12,
                False,
                2,
                100,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_SIZE",
                self.tr("Smallest zone, in places (HDBSCAN; 0 = 2 % of the places)"),
                QgsProcessingParameterNumber.Integer,
                0,
                False,
                0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "DATASET",
                self.tr("Region dataset folder (to describe the zones; found beside a trained run's embeddings)"),
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "POIS",
                self.tr("POI layer (to name each zone's typical categories)"),
                [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "POI_CATEGORY",
                self.tr("POI category field"),
                "category",
                parentLayerParameterName="POIS",
                type=QgsProcessingParameterField.String,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SEED", self.tr("Random seed"), QgsProcessingParameterNumber.Integer, 0, False, 0
            )
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("Zones")))
        self.addParameter(
            QgsProcessingParameterFeatureSink("OUTPUT_PROFILES", self.tr("Zone profiles"), QgsProcessing.TypeVector)
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_RASTER", self.tr("Zone raster (cells only)"), optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber("ZONES", self.tr("Number of zones")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.analysis.zones import NO_ZONE

        places = read_places(self, parameters, context, feedback)
        zones = self._zones(parameters, context, feedback, places)
        self.check_cancel(feedback)
        feedback.setProgress(60)
        if zones.scores is not None:
            feedback.pushInfo(self.tr("k-means scores per number of zones:\n" + zones.scores.to_string(index=False)))
        for note in zones.notes:
            feedback.pushWarning(self.tr(note[0].upper() + note[1:]))
        # the raster first: a late failure there must not come after an existing layer was replaced by the zones
        raster = self.optional_output(parameters, "OUTPUT_RASTER", context)
        raster = self._write_raster(raster, places, zones) if raster else ""
        dest, names = self._write_zones(parameters, context, feedback, places, zones)
        results = {
            "OUTPUT": dest,
            "OUTPUT_PROFILES": self._write_profiles(parameters, context, zones),
            "ZONES": zones.k,
            **({"OUTPUT_RASTER": raster} if raster else {}),
        }
        sizes = zones.sizes()
        for z, label in names.items():  # each zone's size: the labels carry it only when nothing describes them
            n = int(sizes.get(z, 0))
            if z == NO_ZONE:
                feedback.pushInfo(self.tr(f"{label}: {n} places (in no dense group)"))
            else:
                feedback.pushInfo(label if label.endswith(" places)") else self.tr(f"{label} ({n} places)"))
        return results

    def _zone_options(self, parameters, context) -> dict:
        """The clustering options the METHOD choice and its parameters stand for."""
        method = self.parameterAsEnum(parameters, "METHOD", context)
        return {
            "method": "hdbscan" if method == 3 else "kmeans",
            "k": self.parameterAsInt(parameters, "K", context) if method == 2 else "auto",
            "k_range": (2, self.parameterAsInt(parameters, "K_MAX", context)),
            "criterion": "bic" if method == 1 else "silhouette",
            "min_cluster_size": self.parameterAsInt(parameters, "MIN_SIZE", context) or None,
            "seed": self.parameterAsInt(parameters, "SEED", context),
        }

    def _zones(self, parameters, context, feedback, places):
        """The zones with their descriptions; a region dataset or POIs can describe cells only."""
        from mobclip_core.analysis.describe import table_zones
        from mobclip_core.analysis.zones import functional_zones

        options = self._zone_options(parameters, context)
        dataset = self.parameterAsFile(parameters, "DATASET", context) or self._dataset_beside(parameters, context)
        if dataset and not self.parameterAsFile(parameters, "DATASET", context) and places.cells:
            feedback.pushInfo(self.tr(f"Zones described with the region dataset beside the embeddings: {dataset}"))
        pois = self._pois(parameters, context, feedback)
        feedback.setProgress(30)
        if places.cells:
            return table_zones(places.table, dataset=dataset, pois=pois, **options)
        if dataset or pois is not None:
            raise QgsProcessingException(
                self.tr("Zone descriptions from a region dataset or POIs need cells: use an embedding table")
            )
        zones = functional_zones(places.values, **options)
        from mobclip_core.analysis.describe import describe_zones

        describe_zones(zones, [str(i) for i in range(len(places.values))])
        return zones

    def _dataset_beside(self, parameters, context) -> str | None:
        """The region dataset a training run wrote beside its embeddings (``<output>/dataset``), if there is one."""
        import os

        path = self.parameterAsFile(parameters, "EMBEDDINGS", context)
        layer = self.embedding_layer(parameters, context)
        source = path or (layer.source().split("|")[0] if layer is not None else "")
        folder = os.path.join(os.path.dirname(source), "dataset") if source else ""
        return folder if folder and os.path.isfile(os.path.join(folder, "metadata.json")) else None

    def _write_zones(self, parameters, context, feedback, places, zones):
        """The places with zone and zone_label, styled one colour per zone; returns (destination, zone names)."""
        extra = QgsFields()
        extra.append(QgsField("zone", QVariant.Int))
        extra.append(QgsField("zone_label", QVariant.String))
        rows = ([int(z), zones.name_of(z)] for z in zones.labels.tolist())
        dest = write_places(self, parameters, context, feedback, places, extra, rows)
        names = {z: zones.name_of(z) for z in sorted(set(zones.labels.tolist()))}
        style_on_load(context, dest, Styler(zone_style, names))
        return dest, names

    def _write_raster(self, raster: str, places, zones) -> str:
        """The zones as a GeoTIFF (cells only: features have no grid)."""
        import numpy as np

        return write_cells_raster(self, places, zones.labels.astype(np.int16), "zone", -1, raster, "zone")

    def _pois(self, parameters, context, feedback):
        """The POI layer as lon, lat, category (polygons by a point on their surface), or None."""
        source = self.parameterAsSource(parameters, "POIS", context)
        if source is None:
            return None
        self.check_geometry_type(source, "POIS")
        import pandas as pd

        from mobclip_core.grid import representative_points

        field = self.parameterAsString(parameters, "POI_CATEGORY", context) or "category"
        if source.fields().indexOf(field) < 0:
            raise QgsProcessingException(self.tr(f"The POI layer has no field '{field}': choose its category field"))
        features, wkbs = self.read_wgs84(source, context, feedback, span=(5, 25))
        lon, lat = representative_points(wkbs)
        values = [None if f[field] == None else str(f[field]) for f in features]  # noqa: E711 - QGIS NULL
        return pd.DataFrame({"lon": lon, "lat": lat, "category": values})

    def _write_profiles(self, parameters, context, zones):
        import pandas as pd

        prof = zones.profiles.reset_index()
        fields = QgsFields()
        for col in prof.columns:
            if pd.api.types.is_integer_dtype(prof[col]):
                fields.append(QgsField(str(col), QVariant.Int))
            elif pd.api.types.is_float_dtype(prof[col]):
                fields.append(QgsField(str(col), QVariant.Double))
            else:
                fields.append(QgsField(str(col), QVariant.String))
        sink, dest = self.create_sink(
            parameters, "OUTPUT_PROFILES", context, fields, QgsWkbTypes.NoGeometry, QgsCoordinateReferenceSystem()
        )
        features = []
        for row in prof.itertuples(index=False):
            f = QgsFeature(fields)
            f.setAttributes(
                [None if (isinstance(v, float) and v != v) else (v.item() if hasattr(v, "item") else v) for v in row]
            )
            features.append(f)
        sink.addFeatures(features)
        self.sink_written(sink)
        return dest
