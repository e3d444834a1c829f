"""PCA RGB of an embedding table on a colour scale saved from another run, so that two maps can be compared."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
)

from .base import MobClipAlgorithm
from .embedding_raster import pixels_per_cell_parameter, write_gdal_raster
from .train_embeddings import _ALIVE, RgbAsIs


class SharedPcaRgb(MobClipAlgorithm):
    algorithm_name = "shared_pca_rgb"
    display_name = "PCA RGB on a shared colour scale"
    group_name = "Analysis"
    help_text = (
        "Draws an embedding table as an RGB raster of its first three principal components, on a colour scale "
        "you can save and reuse. The first run fits the scale (principal axes and a 2-98 % stretch) on its table "
        "and saves it as a .json file; later runs given that file colour their tables on the same scale, so the "
        "same colour means the same embedding on both maps (two years, two regions, before and after "
        "retraining). The tables must come from models with the same dimension; tables of two different trainings "
        "are only comparable after alignment (see 'Change between two embeddings')."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_embedding_table_parameters()
        self.addParameter(
            QgsProcessingParameterFile(
                "SCALE",
                self.tr("Colour scale to apply (.json; empty: fit one on this table)"),
                extension="json",
                optional=True,
            )
        )
        self.addParameter(pixels_per_cell_parameter(self.tr("Pixels across one cell")))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_RGB", self.tr("PCA RGB")))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "SCALE_OUT",
                self.tr("Save the colour scale used"),
                fileFilter="Colour scale (*.json)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputFile("SCALE_USED", self.tr("Colour scale used")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.rasterize import PcaColourScale, embedding_image

        table = self.embedding_table(parameters, context)
        scale_path = self.parameterAsFile(parameters, "SCALE", context)
        scale = PcaColourScale.load(scale_path) if scale_path else PcaColourScale.fit(table.to_numpy())
        feedback.setProgress(20)
        ppc = self.parameterAsDouble(parameters, "PIXELS_PER_CELL", context)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT_RGB", context)
        image = embedding_image(table, pixels_per_cell=ppc, rgb=True, colour_scale=scale)
        self.check_cancel(feedback)
        feedback.setProgress(60)
        write_gdal_raster(image, out, rgb=True)
        feedback.setProgress(90)
        if context.willLoadLayerOnCompletion(out):
            styler = RgbAsIs()
            _ALIVE.add(styler)
            context.layerToLoadOnCompletionDetails(out).setPostProcessor(styler)
        results = {"OUTPUT_RGB": out, "SCALE_USED": scale_path}
        save = self.parameterAsFileOutput(parameters, "SCALE_OUT", context)
        if save:
            scale.save(save)
            results["SCALE_OUT"] = results["SCALE_USED"] = save
        feedback.setProgress(100)
        return results
