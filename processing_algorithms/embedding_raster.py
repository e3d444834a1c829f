"""Write an embedding table as a multi-band GeoTIFF and a PCA RGB GeoTIFF to look at."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from ..qgis_plugin.dependencies import RASTER
from ._embeddings import load_embedding_table
from .base import MobClipAlgorithm


class EmbeddingRaster(MobClipAlgorithm):
    algorithm_name = "embedding_raster"
    display_name = "Embedding raster (multi-band and PCA RGB)"
    group_name = "Maps"
    requirements = RASTER
    help_text = (
        "Rasterises an embedding table in EPSG:4326: one float32 band per embedding dimension (NaN outside the "
        "cells), and a 3-band RGB image of the first three principal components (2-98 % stretch) in which cells "
        "that play similar roles get similar colours."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFile(
                "EMBEDDINGS", self.tr("Embedding table"), fileFilter="Embedding tables (*.parquet *.gpkg)"
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "PIXELS_PER_CELL",
                self.tr("Pixels across one cell"),
                QgsProcessingParameterNumber.Double,
                4.0,
                False,
                1.0,
                50.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT", self.tr("Embedding bands"), optional=True, createByDefault=False
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_RGB", self.tr("PCA RGB")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.export import write_geotiff

        table, _, _ = load_embedding_table(self.parameterAsFile(parameters, "EMBEDDINGS", context))
        ppc = self.parameterAsDouble(parameters, "PIXELS_PER_CELL", context)
        results = {}
        rgb = self.parameterAsOutputLayer(parameters, "OUTPUT_RGB", context)
        if rgb:
            write_geotiff(table, rgb, pixels_per_cell=ppc, rgb=True)
            results["OUTPUT_RGB"] = rgb
        feedback.setProgress(50)
        self.check_cancel(feedback)
        bands = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if bands:
            write_geotiff(table, bands, pixels_per_cell=ppc)
            results["OUTPUT"] = bands
        feedback.setProgress(100)
        return results
