"""Train MobCLIP embeddings from a config file, in a child Python process that QGIS watches."""

from __future__ import annotations

import os

from qgis.core import (
    QgsFillSymbol,
    QgsMapLayerType,
    QgsMultiBandColorRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFolder,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingUtils,
    QgsSingleSymbolRenderer,
)

from mobclip_core.dependencies import TRAINING

from .base import MobClipAlgorithm
from .child import run_in_child


class TrainEmbeddings(MobClipAlgorithm):
    algorithm_name = "train_embeddings"
    display_name = "Train embeddings from a config file"
    group_name = "Training"
    requirements = TRAINING
    help_text = (
        "Runs the MobCLIP pipeline of a TOML config (inputs, modalities, resolution, hyperparameters): builds the "
        "region dataset, pre-trains the mobility graph with LINE, trains LightGCN with CLIP alignment, and exports "
        "the embeddings (GeoParquet, GeoPackage, GeoTIFF, PCA RGB) into the config's output folder. The work runs "
        "in a separate Python process, so QGIS stays responsive and Cancel stops it within seconds without "
        "leaving half-written files. When it finishes, the embeddings and the PCA RGB map are added to the "
        "project; an earlier run's files in the same output folder are replaced then, all together (a cancelled "
        "or failed run leaves them as they were: give each config its own output folder to keep both). 'Write "
        "a training config from layers' writes a config for your own layers (an OD table and zones, "
        "or activity records; POIs; census counts) or open-data files (GTFS, trip tables, LODES, OpenStreetMap, "
        "WorldPop); Plugins > MobCLIP > Create demo data… writes a demo city with its config (mobclip.toml)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("CONFIG", self.tr("Config file (TOML)"), extension="toml"))
        self.addParameter(QgsProcessingParameterBoolean("REBUILD", self.tr("Rebuild the dataset"), False))
        threads = QgsProcessingParameterNumber(
            "THREADS",
            self.tr("CPU threads (0: as the config says, [train] threads, by default every core)"),
            QgsProcessingParameterNumber.Integer,
            0,
            True,
            0,
        )
        threads.setFlags(threads.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(threads)
        self.addOutput(QgsProcessingOutputVectorLayer("EMBEDDINGS", self.tr("Embeddings (GeoPackage)")))
        self.addOutput(QgsProcessingOutputRasterLayer("PCA_RGB", self.tr("PCA RGB map")))
        self.addOutput(QgsProcessingOutputFolder("OUTPUT_FOLDER", self.tr("Output folder")))

    def execute(self, parameters, context, feedback):
        config = self.parameterAsFile(parameters, "CONFIG", context)
        if not config or not os.path.isfile(config):
            raise QgsProcessingException(self.tr(f"Config file {config!r} does not exist: choose a .toml file"))
        args = ["train", config, *(["--rebuild"] if self.parameterAsBool(parameters, "REBUILD", context) else [])]
        threads = self.parameterAsInt(parameters, "THREADS", context) if "THREADS" in parameters else 0
        if threads > 0:
            args += ["--threads", str(threads)]
        result = run_in_child(self, args, feedback, kept_on_cancel=_kept_on_cancel)
        files = result["files"]
        feedback.setProgress(100)
        name = result.get("name") or os.path.basename(result["output"])
        load_styled(context, files["gpkg"], f"MobCLIP embeddings ({name})", "EMBEDDINGS", CellOutlines())
        load_styled(context, files["pca_rgb"], f"MobCLIP PCA RGB ({name})", "PCA_RGB", RgbAsIs())
        return {"EMBEDDINGS": files["gpkg"], "PCA_RGB": files["pca_rgb"], "OUTPUT_FOLDER": result["output"]}


def _kept_on_cancel(finished: set) -> str:
    """A run stopped after its dataset stage keeps the region dataset it built (the next run reuses it)."""
    if "dataset" not in finished:
        return ""
    return "the region dataset built so far stays in the output folder's dataset/ and the next run reuses it"


# --- adding the results to the project, styled (done by QGIS on the main thread once the run has finished) ----------
_ALIVE: set = set()  # QGIS does not own post-processors: keep them until they have run


def load_styled(context, path: str, name: str, output: str, styler: QgsProcessingLayerPostProcessorInterface) -> None:
    hint = QgsProcessingUtils.LayerHint.Raster if output == "PCA_RGB" else QgsProcessingUtils.LayerHint.Vector
    details = QgsProcessingContext.LayerDetails(name, context.project(), output, hint)
    # both runs' files are called embeddings*: the config's name tells them apart, whatever QGIS's "prefer output
    # filename for layer names" setting (on by default) says
    details.forceName = True
    details.setPostProcessor(styler)
    _ALIVE.add(styler)
    context.addLayerToLoadOnCompletion(path, details)


def reread(layer) -> None:
    """Make ``layer`` read its file as it is now. QGIS gives the post-processor the project's layer of the same file
    where there is one (an earlier run into the same output folder), and that layer still shows the replaced file:
    the earlier region's cells under the new run's name."""
    layer.reload()
    if layer.type() == QgsMapLayerType.RasterLayer:
        layer.setExtent(layer.dataProvider().extent())
    else:
        layer.updateExtents()


class RgbAsIs(QgsProcessingLayerPostProcessorInterface):
    """The PCA image is already stretched to 1..255: show bands 1-2-3 as they are (0 is transparent nodata)."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        reread(layer)
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3))
        layer.triggerRepaint()
        _ALIVE.discard(self)


class CellOutlines(QgsProcessingLayerPostProcessorInterface):
    """Cells as thin outlines over the RGB map; their embedding fields are there to query and join."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        reread(layer)
        symbol = QgsFillSymbol.createSimple(
            {"color": "0,0,0,0", "outline_color": "60,60,60,140", "outline_width": "0.1", "outline_width_unit": "MM"}
        )
        layer.setRenderer(QgsSingleSymbolRenderer(symbol))
        layer.triggerRepaint()
        _ALIVE.discard(self)
