"""Distil an embedding table into a coordinate encoder, in a child Python process that QGIS watches."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingUtils,
)

from mobclip_core.dependencies import TRAINING

from .base import MobClipAlgorithm
from .child import run_in_child

DEFAULT_EPOCHS = 1500  # DistilConfig.epochs (torch stays out of QGIS's process, so it is not imported for it)


class DistilEncoder(MobClipAlgorithm):
    algorithm_name = "distil_encoder"
    display_name = "Distil a coordinate encoder from embeddings"
    group_name = "Training"
    requirements = TRAINING
    help_text = (
        "Fits a small network that gives the embedding of any location (longitude, latitude) inside the area of an "
        "embedding table: each cell's embedding is learned from the coordinates of its centre. Use it to embed "
        "places between or without cells (points of your own, a finer grid) with 'Attach embeddings to features' "
        "or 'Similar places' (their 'distilled model' input: the model.pth in the output folder). The output "
        "folder holds model.pth and config.json, which records the training area: locations outside it are "
        "flagged when the model is used. The work runs in a separate Python process (on a GPU when one is found), "
        "reports its progress and stops within seconds on Cancel, writing nothing. A city of 5,000 cells takes "
        "15 to 30 minutes on 2 CPU cores (under a minute on a GPU); Advanced: fewer epochs for a quicker, coarser "
        "fit (150 reach R2 0.97 on Chicago; the log warns below 0.8). Save it to a folder of your own: a temporary "
        "folder is deleted when QGIS closes. The log gives the R2 with which the model reproduces the table on "
        "its own cells (1 = exactly)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_embedding_table_parameters()
        epochs = QgsProcessingParameterNumber(
            "EPOCHS",
            self.tr("At most this many epochs (training stops earlier when the fit stops improving)"),
            QgsProcessingParameterNumber.Integer,
            DEFAULT_EPOCHS,
            False,
            1,
        )
        epochs.setFlags(epochs.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(epochs)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", self.tr("Distilled model folder")))
        self.addOutput(QgsProcessingOutputFile("MODEL", self.tr("Distilled model (model.pth)")))
        self.addOutput(QgsProcessingOutputNumber("R2", self.tr("R2 of the table on its own cells")))

    def execute(self, parameters, context, feedback):
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)  # a file there is refused before (base)
        table = self.embedding_table(parameters, context)
        feedback.pushInfo(self.tr(f"{len(table)} cells x {table.shape[1]} dimensions to distil"))
        staged = os.path.join(QgsProcessingUtils.tempFolder(), f"distil-{os.getpid()}-{id(self)}.parquet")
        table.to_parquet(staged)  # pandas and pyarrow only: the child reads it (no geometry library in QGIS)
        try:
            epochs = self.parameterAsInt(parameters, "EPOCHS", context) if "EPOCHS" in parameters else DEFAULT_EPOCHS
            result = run_in_child(self, ["distil", staged, out, "--epochs", str(epochs)], feedback)
        finally:
            os.remove(staged)
        feedback.setProgress(100)
        if os.path.abspath(out).startswith(os.path.abspath(QgsProcessingUtils.tempFolder())):
            feedback.pushWarning(
                self.tr(
                    f"The model was saved in a temporary folder ({out}) that QGIS deletes when it closes: run again "
                    "with a folder of your own as 'Distilled model folder' to keep it"
                )
            )
        feedback.pushInfo(
            self.tr(
                f"Use {result['model']} as the distilled model in 'Attach embeddings to features' or 'Similar places'"
            )
        )
        return {"OUTPUT": result["output"], "MODEL": result["model"], "R2": result["r2"]}
