"""Train MobCLIP embeddings from a config file, as a background Processing task."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
)

from ..qgis_plugin.dependencies import TRAINING
from .base import MobClipAlgorithm


class TrainEmbeddings(MobClipAlgorithm):
    algorithm_name = "train_embeddings"
    display_name = "Train embeddings from a config file"
    group_name = "Training"
    requirements = TRAINING
    help_text = (
        "Runs the MobCLIP pipeline of a TOML config (inputs, modalities, resolution, hyperparameters): builds the "
        "region dataset, pre-encodes the mobility graph with LINE, trains LightGCN + CLIP alignment, and exports "
        "the embeddings (GeoParquet, GeoPackage, GeoTIFF, PCA RGB) into the config's output folder. "
        "`mobclip make-demo-data DIR` writes a demo city and a config to try."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("CONFIG", self.tr("Config file (TOML)"), extension="toml"))
        self.addParameter(QgsProcessingParameterBoolean("REBUILD", self.tr("Rebuild the dataset"), False))
        self.addOutput(QgsProcessingOutputFile("EMBEDDINGS", self.tr("Embedding table (GeoPackage)")))
        self.addOutput(QgsProcessingOutputFile("PCA_RGB", self.tr("PCA RGB GeoTIFF")))
        self.addOutput(QgsProcessingOutputFolder("OUTPUT_FOLDER", self.tr("Output folder")))

    def execute(self, parameters, context, feedback):
        from mobclip_core.config import load_config
        from mobclip_core.pipeline import run_pipeline

        cfg = load_config(self.parameterAsFile(parameters, "CONFIG", context))
        feedback.setProgress(1)
        run = run_pipeline(
            cfg, rebuild=self.parameterAsBool(parameters, "REBUILD", context), log=feedback.pushInfo, progress=False
        )
        self.check_cancel(feedback)
        feedback.setProgress(100)
        return {
            "EMBEDDINGS": str(run.files["gpkg"]),
            "PCA_RGB": str(run.files["pca_rgb"]),
            "OUTPUT_FOLDER": str(run.output),
        }
