"""Fit LightGBM (or Ridge) to a numeric attribute from embedding fields, with spatially blocked CV."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QVariant

from ..qgis_plugin.dependencies import REGRESSION
from .base import MobClipAlgorithm, nullable

BLOCKS = ["H3 parent cells (spatial blocks)", "Group field (e.g. admin unit)", "Random folds (optimistic)"]
MODELS = ["auto (Ridge under 300 rows)", "lightgbm", "ridge"]


class FitLightGBM(MobClipAlgorithm):
    algorithm_name = "fit_lightgbm"
    display_name = "Fit LightGBM to an attribute field"
    group_name = "Regression"
    requirements = REGRESSION
    help_text = (
        "Regresses a numeric field on the embedding fields (all fields starting with the prefix) plus any extra "
        "fields. Cross-validation holds out whole spatial blocks (coarse H3 parents of each feature, or a group "
        "field) so neighbouring features do not leak into the score; random folds are offered for comparison and "
        "are optimistic on spatial data. Each LightGBM fold stops adding trees once 10% of its training rows "
        "stop improving (50 rounds); the final model uses the mean number of trees. Writes the layer with "
        "'prediction' (a model refit on all rows), 'oof_prediction' (out-of-fold: the honest one) and 'residual' "
        "(target - oof), reports R2 and RMSE, and optionally predicts onto a second layer with the same fields."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource("INPUT", self.tr("Layer with embeddings and target")))
        self.addParameter(
            QgsProcessingParameterField("TARGET", self.tr("Target field (numeric)"), parentLayerParameterName="INPUT")
        )
        self.addParameter(QgsProcessingParameterString("PREFIX", self.tr("Embedding field prefix"), "emb_"))
        self.addParameter(
            QgsProcessingParameterField(
                "EXTRA_FIELDS",
                self.tr("Extra feature fields"),
                parentLayerParameterName="INPUT",
                type=QgsProcessingParameterField.Numeric,
                allowMultiple=True,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("BLOCKS", self.tr("Cross-validation folds"), BLOCKS, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "BLOCK_RESOLUTION",
                self.tr("H3 resolution of spatial blocks"),
                QgsProcessingParameterNumber.Integer,
                6,
                False,
                0,
                15,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "GROUP_FIELD", self.tr("Group field for blocks"), parentLayerParameterName="INPUT", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "FOLDS", self.tr("Number of folds"), QgsProcessingParameterNumber.Integer, 5, False, 2, 50
            )
        )
        self.addParameter(QgsProcessingParameterEnum("MODEL", self.tr("Model"), MODELS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterNumber(
                "N_ESTIMATORS",
                self.tr("LightGBM trees (at most)"),
                QgsProcessingParameterNumber.Integer,
                1000,
                False,
                10,
                10000,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_CHILD_SAMPLES",
                self.tr("LightGBM minimum rows per leaf"),
                QgsProcessingParameterNumber.Integer,
                20,
                False,
                1,
                10000,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SEED", self.tr("Random seed"), QgsProcessingParameterNumber.Integer, 0, False, 0
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource("PREDICT_LAYER", self.tr("Also predict onto this layer"), optional=True)
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", self.tr("Predictions")))
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                "OUTPUT_PREDICT", self.tr("Predictions on the second layer"), optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber("R2", self.tr("Out-of-fold R2")))
        self.addOutput(QgsProcessingOutputNumber("RMSE", self.tr("Out-of-fold RMSE")))

    def _matrix(self, features, fields, names) -> np.ndarray:
        idx = [fields.indexFromName(n) for n in names]
        x = np.array([[a[i] for i in idx] for a in (f.attributes() for f in features)], dtype=object)
        x[x == None] = np.nan  # noqa: E711 - NULL attributes
        return x.astype(np.float64)

    def execute(self, parameters, context, feedback):
        from mobclip_core.evaluation.regression import cross_validate
        from mobclip_core.grid import points_to_cells

        source = self.require_source(parameters, "INPUT", context)
        fields = source.fields()
        target = self.parameterAsString(parameters, "TARGET", context)
        tfield = fields.field(target) if fields.indexFromName(target) >= 0 else None
        if tfield is None or not tfield.isNumeric():
            kind = tfield.typeName() if tfield is not None else "missing"
            raise QgsProcessingException(
                self.tr(
                    f"Target field '{target}' is not numeric ({kind}): choose a numeric field, or convert it with "
                    'the Field calculator (to_real("field"))'
                )
            )
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        names = [f.name() for f in fields if f.name().startswith(prefix) and f.isNumeric()]
        if not names:
            raise QgsProcessingException(
                self.tr(
                    f"No numeric fields start with '{prefix}': attach or aggregate embeddings first, or fix the prefix"
                )
            )
        names += [n for n in self.parameterAsFields(parameters, "EXTRA_FIELDS", context) if n not in names]
        features, geoms = self.read_wgs84(source, context, feedback, progress_span=(0, 15))
        x = self._matrix(features, fields, names)
        y = self._matrix(features, fields, [target])[:, 0]
        ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
        if ok.sum() < 10:
            raise QgsProcessingException(self.tr(f"Only {int(ok.sum())} features have a target and all features"))
        if (~ok).any():
            feedback.pushWarning(self.tr(f"{int((~ok).sum())} features with NULL target or features are left out"))
        blocks = self.parameterAsEnum(parameters, "BLOCKS", context)
        groups = None
        if blocks == 0:
            import shapely

            pts = shapely.point_on_surface(geoms[ok])
            res = self.parameterAsInt(parameters, "BLOCK_RESOLUTION", context)
            groups = points_to_cells(shapely.get_x(pts), shapely.get_y(pts), res)
            feedback.pushInfo(self.tr(f"{len(np.unique(groups))} spatial blocks (H3 resolution {res} parents)"))
        elif blocks == 1:
            gf = self.parameterAsString(parameters, "GROUP_FIELD", context)
            if not gf:
                raise QgsProcessingException(self.tr("Choose a group field for group blocks"))
            groups = np.array([str(f[gf]) for f in features], dtype=object)[ok]
        model = ["auto", "lightgbm", "ridge"][self.parameterAsEnum(parameters, "MODEL", context)]
        params = {
            "n_estimators": self.parameterAsInt(parameters, "N_ESTIMATORS", context),
            "min_child_samples": self.parameterAsInt(parameters, "MIN_CHILD_SAMPLES", context),
        }
        seed = self.parameterAsInt(parameters, "SEED", context)

        def progress(frac: float) -> bool:
            feedback.setProgress(15 + 65 * frac)
            return feedback.isCanceled()

        try:
            cv = cross_validate(
                x[ok],
                y[ok],
                groups=groups,
                n_folds=self.parameterAsInt(parameters, "FOLDS", context),
                model=model,
                params=params,
                seed=seed,
                early_stopping=50,
                feedback=progress,
            )
        except InterruptedError:
            self.check_cancel(feedback)
            raise
        feedback.pushInfo(
            self.tr(
                f"{cv.model_kind}: out-of-fold R2 = {cv.r2:.4f}, RMSE = {cv.rmse:.4g} "
                f"(fold R2 {', '.join(f'{r:.3f}' for r in cv.fold_r2)})"
            )
        )
        pred = np.full(len(features), np.nan)
        oof = np.full(len(features), np.nan)
        pred[ok] = cv.predict(x[ok])
        oof[ok] = cv.oof
        new = QgsFields()
        for name in ("prediction", "oof_prediction", "residual"):
            new.append(QgsField(name, QVariant.Double))
        out_fields = self.merge_fields(fields, new)
        sink, dest = self.parameterAsSink(
            parameters, "OUTPUT", context, out_fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        attrs = (f.attributes() + nullable(np.array([p, o, t - o])) for f, p, o, t in zip(features, pred, oof, y))
        self.write_qgs_features(
            sink, attrs, (f.geometry() for f in features), feedback, total=len(features), span=(80, 92)
        )
        results = {"OUTPUT": dest, "R2": cv.r2, "RMSE": cv.rmse}
        other = self.parameterAsSource(parameters, "PREDICT_LAYER", context)
        if other is not None:
            ofields = other.fields()
            absent = [n for n in names if ofields.indexFromName(n) < 0]
            if absent:
                raise QgsProcessingException(self.tr(f"The second layer lacks feature fields {absent[:5]}"))
            ofeats = list(other.getFeatures())
            ox = self._matrix(ofeats, ofields, names)
            good = np.isfinite(ox).all(axis=1)
            opred = np.full(len(ofeats), np.nan)
            if good.any():
                opred[good] = cv.predict(ox[good])
            pf = QgsFields()
            pf.append(QgsField("prediction", QVariant.Double))
            osink, odest = self.parameterAsSink(
                parameters,
                "OUTPUT_PREDICT",
                context,
                self.merge_fields(ofields, pf),
                other.wkbType(),
                other.sourceCrs(),
            )
            if osink is not None:
                self.write_qgs_features(
                    osink,
                    (f.attributes() + nullable(np.array([p])) for f, p in zip(ofeats, opred)),
                    (f.geometry() for f in ofeats),
                    feedback,
                    total=len(ofeats),
                    span=(92, 100),
                )
                results["OUTPUT_PREDICT"] = odest
        return results
