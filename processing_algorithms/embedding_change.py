"""Change between two embeddings of the same cells: per-cell distance after an orthogonal (Procrustes) alignment."""

from __future__ import annotations

import os

from qgis.core import (
    QgsField,
    QgsFields,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterRasterDestination,
)
from qgis.PyQt.QtCore import QVariant

from ._places import Places, Styler, graduated_style, pseudocolour_style, style_on_load, write_places
from .base import MobClipAlgorithm
from .embedding_raster import write_gdal_raster


class EmbeddingChange(MobClipAlgorithm):
    algorithm_name = "embedding_change"
    display_name = "Change between two embeddings"
    group_name = "Analysis"
    help_text = (
        "Compares two embedding tables of the same cells (two years, two models, two trainings). Two trainings "
        "never share axes, so the second table is first rotated onto the first (orthogonal Procrustes, after "
        "centring both and scaling them to the same spread); then each common cell's change is the distance "
        "between its two embeddings, in units of the first table's typical distance from its mean: 0 is no "
        "change, about 1.4 is as different as two unrelated places. Outputs the cells with their change (styled), "
        "optionally a raster, and the median change and the disparity (mean squared change)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        # no preselection: one layer preselected for both would compare a table with itself
        self.add_embedding_table_parameters("BEFORE", "First embedding table (before)", preselect=None)
        self.add_embedding_table_parameters("AFTER", "Second embedding table (after)", preselect=None)
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("Change per cell")))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_RASTER", self.tr("Change raster"), optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber("MEDIAN", self.tr("Median change")))
        self.addOutput(QgsProcessingOutputNumber("DISPARITY", self.tr("Disparity (mean squared change)")))

    def execute(self, parameters, context, feedback):
        import numpy as np

        from mobclip_core.analysis.change import embedding_change

        before = self.embedding_table(parameters, context, name="BEFORE")
        after = self.embedding_table(parameters, context, name="AFTER")
        feedback.setProgress(30)
        change = embedding_change(before, after)
        self.check_cancel(feedback)
        summary = change.summary()
        frame = change.distance.to_frame()
        places = Places(frame.to_numpy(np.float32), frame, name="cells")
        extra = QgsFields()
        extra.append(QgsField("change", QVariant.Double))
        rows = ([None if v != v else float(v)] for v in change.distance.tolist())
        # the raster first: a late failure there must not come after an existing layer was replaced by the table
        raster = self.optional_output(parameters, "OUTPUT_RASTER", context)
        if raster:
            from mobclip_core.grid import strings_to_cells
            from mobclip_core.rasterize import cells_image

            image = cells_image(
                strings_to_cells(frame.index.to_numpy()),
                change.distance.to_numpy(np.float32),
                band_names=["change"],
                nodata=np.float32(np.nan),
            )
            existed = os.path.exists(raster)
            write_gdal_raster(image, raster, rgb=False)
            self.record_file(raster, existed)
            style_on_load(context, raster, Styler(pseudocolour_style, "Magma"))
        dest = write_places(self, parameters, context, feedback, places, extra, rows)
        style_on_load(context, dest, Styler(graduated_style, "change", "Magma"))
        results = {"OUTPUT": dest, "MEDIAN": summary["median"], "DISPARITY": summary["disparity"]}
        if raster:
            results["OUTPUT_RASTER"] = raster
        feedback.pushInfo(
            self.tr(
                f"{summary['cells']} common cells compared: median change {summary['median']:.4f}, 90th percentile "
                f"{summary['p90']:.4f}; {summary['incomplete']} common cells left out (a missing value in either "
                f"table: NULL change), {summary['only_before']} cells only in the first table, "
                f"{summary['only_after']} only in the second"
            )
        )
        return results
