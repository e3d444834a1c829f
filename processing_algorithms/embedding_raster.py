"""Write an embedding table as a multi-band GeoTIFF and a PCA RGB GeoTIFF to look at."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsRasterFileWriter,
)

from .base import MobClipAlgorithm


def pixels_per_cell_parameter(description: str) -> QgsProcessingParameterNumber:
    """How finely a raster of cells is drawn (shared by the algorithms that write one)."""
    param = QgsProcessingParameterNumber(
        "PIXELS_PER_CELL", description, QgsProcessingParameterNumber.Double, 4.0, False, 1.0, 50.0
    )
    param.setMetadata({"widget_wrapper": {"decimals": 1}})  # "4.0", not the spin box's default "4.000000"
    return param


class EmbeddingRaster(MobClipAlgorithm):
    algorithm_name = "embedding_raster"
    display_name = "Embedding raster (multi-band and PCA RGB)"
    group_name = "Maps"
    help_text = (
        "Rasterises an embedding table in EPSG:4326: one float32 band per embedding dimension (NaN outside the "
        "cells), and a 3-band RGB image of the first three principal components (2-98 % stretch) in which cells "
        "that play similar roles get similar colours. The table is a file written by mobclip or an embedding "
        "layer of the project."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_embedding_table_parameters()
        self.addParameter(pixels_per_cell_parameter(self.tr("Pixels across one cell")))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT", self.tr("Embedding bands"), optional=True, createByDefault=False
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_RGB", self.tr("PCA RGB")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.rasterize import embedding_image

        table = self.embedding_table(parameters, context)
        ppc = self.parameterAsDouble(parameters, "PIXELS_PER_CELL", context)
        results = {}
        # the bands first: an image too large for memory is refused before any work, not after the RGB is written
        for name, rgb, progress, optional in (("OUTPUT", False, 50, True), ("OUTPUT_RGB", True, 100, False)):
            if optional:  # skipped, or a blank cell of the batch dialog
                path = self.optional_output(parameters, name, context)
            else:
                path = self.parameterAsOutputLayer(parameters, name, context)
            if not path:
                continue
            existed = os.path.exists(path)
            write_gdal_raster(embedding_image(table, pixels_per_cell=ppc, rgb=rgb), path, rgb=rgb)
            self.record_file(path, existed)
            results[name] = path
            self.check_cancel(feedback)
            feedback.setProgress(progress)
        return results


def write_gdal_raster(image, path: str, *, rgb: bool) -> None:
    """Write an ``EmbeddingImage`` with QGIS's own GDAL (never rasterio inside QGIS), all at once or not at all."""
    from osgeo import gdal, osr

    from mobclip_core.exceptions import InvalidInputError
    from mobclip_core.io import atomic_path

    ext = os.path.splitext(path)[1].lstrip(".")
    driver_name = QgsRasterFileWriter.driverForExtension(ext) or "GTiff"
    driver = gdal.GetDriverByName(driver_name)
    if driver is None or driver.GetMetadataItem(gdal.DCAP_CREATE) != "YES":
        raise InvalidInputError(f"GDAL cannot create .{ext} rasters here: choose a .tif output")
    options = ["COMPRESS=DEFLATE", *(["PHOTOMETRIC=RGB"] if rgb else [])] if driver_name == "GTiff" else []
    bands, height, width = image.data.shape
    data_type = {"uint8": gdal.GDT_Byte, "int16": gdal.GDT_Int16}.get(image.data.dtype.name, gdal.GDT_Float32)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    with atomic_path(path) as tmp:
        ds = driver.Create(str(tmp), width, height, bands, data_type, options)
        if ds is None:
            raise InvalidInputError(f"GDAL could not create {path} ({gdal.GetLastErrorMsg()})")
        ds.SetGeoTransform(image.geotransform)
        ds.SetProjection(srs.ExportToWkt())
        for i, name in enumerate(image.band_names):
            band = ds.GetRasterBand(i + 1)
            band.WriteArray(image.data[i])
            band.SetNoDataValue(image.nodata)
            band.SetDescription(name)
        ds.FlushCache()
        ds = None
