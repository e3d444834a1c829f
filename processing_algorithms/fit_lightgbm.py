"""Predict a numeric field from embedding fields with LightGBM (or Ridge), spatially blocked cross-validation."""

from __future__ import annotations

from typing import NamedTuple

from qgis.core import (
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QVariant

from ._places import Styler, graduated_style, style_on_load
from .base import (
    Cancelled,
    MobClipAlgorithm,
    existing_destination,
    nullable,
    numbers,
    output_chosen,
    project_embedding_layer,
)

BLOCKS = ["H3 parent cells (spatial blocks)", "Group field (e.g. admin unit)", "Random folds (optimistic)"]
MODELS = ["Automatic: LightGBM, or Ridge under 300 features", "LightGBM", "Ridge"]
MODEL_KEYS = ["auto", "lightgbm", "ridge"]
FEW_FEATURES = 50  # under this many usable features the out-of-fold R2 is a rough guide, and the log says so


class FitLightGBM(MobClipAlgorithm):
    algorithm_name = "fit_lightgbm"
    display_name = "Predict a field from embeddings (LightGBM or Ridge)"
    group_name = "Regression"
    resolution_parameters = ("BLOCK_RESOLUTION",)
    help_text = (
        "Learns to predict a numeric field (the target) from the embedding fields, i.e. every numeric field whose "
        "name starts with the prefix, plus any extra fields you pick. The model is LightGBM (gradient-boosted "
        "trees), or Ridge regression (linear) under 300 usable features or when you choose it; the log, the MODEL "
        "output and the name of the layer added to the project say which one was fitted.\n\n"
        "How good is it? Cross-validation holds out whole spatial blocks (the coarse H3 cell each feature lies in, "
        "or a group field such as the admin unit), so neighbouring features cannot leak into the score. Random "
        "folds are offered for comparison; on spatial data they are optimistic. Each LightGBM fold stops adding "
        "trees once a tenth of its training rows stops improving for 50 rounds.\n\n"
        "Output fields: prediction (a model refit on all features: the one to map), oof_prediction (out-of-fold: "
        "each feature predicted by a model that never saw its block; the honest one) and residual (target minus "
        "out-of-fold prediction). Outputs R2 and RMSE are out-of-fold. Features with a NULL target or NULL "
        "embedding fields are left out of the fit; those with a NULL target still get a prediction (fill the gaps "
        "of a field this way). Optionally predicts onto a second layer that has the same fields (into a "
        "temporary layer of the project unless you choose a file; qgis_process needs a file).\n\n"
        "Add location features: a multi-scale code of each feature's position (Sphere2Vec sphereC+ of its "
        "representative point, 96 fields) joins the embedding fields. Where the target also follows a city-wide "
        "trend (one side of town against another) this helps: on Chicago's census tracts (MobCLIP embeddings "
        "aggregated over the tracts, folds by community area) the mean out-of-fold R2 of ten census targets went "
        "from 0.459 to 0.478, eight of them up."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "INPUT",
                self.tr("Layer with embeddings and target"),
                defaultValue=project_embedding_layer(cells_only=False),  # the dialog opens on a layer with emb_ fields
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "TARGET",
                self.tr("Target field to predict (numeric)"),
                parentLayerParameterName="INPUT",
                type=QgsProcessingParameterField.Numeric,
            )
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
            QgsProcessingParameterBoolean(
                "LOCATION", self.tr("Add location features (a multi-scale code of each feature's position)"), False
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
                self.tr("LightGBM minimum features per leaf"),
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
        self.addOutput(QgsProcessingOutputString("MODEL", self.tr("Model fitted (LightGBM or Ridge)")))

    def execute(self, parameters, context, feedback):
        source = self.require_source(parameters, "INPUT", context)
        target, names = self._target_and_features(parameters, context, source.fields())
        parameters = self._second_layer_output(parameters, context, names)  # its problems before a long fit
        features, wkbs = self.read_wgs84(source, context, feedback, span=(0, 15))
        x = self._matrix(features, source.fields(), names)
        location = self.parameterAsBoolean(parameters, "LOCATION", context)
        if location:
            x = self._with_location(x, wkbs)
            feedback.pushInfo(self.tr(f"{x.shape[1] - len(names)} location features added (Sphere2Vec sphereC+)"))
        y = self._matrix(features, source.fields(), [target])[:, 0]
        other = self._read_second_layer(parameters, context, feedback, names, location)
        # a new output is created before the fit, so a destination QGIS cannot create fails now, not after minutes of
        # fitting; one that exists (an earlier result, the input itself) is created after it: creating replaces it,
        # and a cancelled or failed fit must leave it as it was
        columns = {"OUTPUT": ("prediction", "oof_prediction", "residual"), "OUTPUT_PREDICT": ("prediction",)}
        layers = {"OUTPUT": source, "OUTPUT_PREDICT": other.source if other else None}
        opened = {
            name: self._open_output(parameters, context, name, layer, columns[name])
            for name, layer in layers.items()
            if layer is not None and not self._replaces(parameters, name)
        }
        fit = self._fit(parameters, context, feedback, x, y, target, self._blocks(parameters, context, features, wkbs))
        for name, layer in layers.items():
            if layer is not None and name not in opened:
                opened[name] = self._open_output(parameters, context, name, layer, columns[name])
        output, second = opened["OUTPUT"], opened.get("OUTPUT_PREDICT")
        feedback.pushInfo(  # the description names what was fitted: "Ridge (alpha 31.6, chosen by ...)"
            self.tr(
                f"Fitted {fit.cv.description} on {int(fit.used.sum())} features: out-of-fold R2 = {fit.r2:.4f}, "
                f"RMSE = {fit.rmse:.4g} (fold R2 {', '.join(f'{r:.3f}' for r in fit.cv.fold_r2)})"
            )
        )
        if (~fit.used).any():
            filled = int((~fit.used & (fit.prediction == fit.prediction)).sum())  # a NULL target, complete fields
            feedback.pushWarning(
                self.tr(
                    f"{int((~fit.used).sum())} features with a NULL target or field left out of the fit"
                    + (f"; the {filled} with a NULL target got a prediction (no out-of-fold one)" if filled else "")
                )
            )
        if fit.used.sum() < FEW_FEATURES:
            feedback.pushWarning(
                self.tr(
                    f"Only {int(fit.used.sum())} features to learn from: with so few, the out-of-fold R2 moves a lot "
                    "with the folds and the seed (try another seed to see how much); read it as a rough guide"
                )
            )
        below = sum(r < 0 for r in fit.cv.fold_r2)
        if below * 2 > len(fit.cv.fold_r2) and fit.r2 > 0:
            feedback.pushWarning(
                self.tr(
                    f"{below} of {len(fit.cv.fold_r2)} folds score below zero: inside most held-out folds the "
                    "predictions do worse than the fold's own mean. The out-of-fold R2 above pools all features, so "
                    "it credits the model for telling the held-out areas apart (a city-wide trend), not for what "
                    "varies within them"
                )
            )
        output = self._write_predictions(output, feedback, features, fit)
        if context.willLoadLayerOnCompletion(output):  # the layer in the project says which model it maps...
            details = context.layerToLoadOnCompletionDetails(output)
            if details.name in ("", self.parameterDefinition("OUTPUT").description()):  # ...unless a model named it
                details.name = f"{target} predicted by {fit.model_name}"
        style_on_load(context, output, Styler(graduated_style, "prediction"))
        results = {"OUTPUT": output, "R2": fit.r2, "RMSE": fit.rmse, "MODEL": fit.model_name}
        if other is not None:
            fitted_on = [w for w, used in zip(wkbs, fit.used) if used] if location else None
            results["OUTPUT_PREDICT"] = self._predict_second_layer(context, feedback, other, second, fit, fitted_on)
        return results

    def _target_and_features(self, parameters, context, fields) -> tuple[str, list[str]]:
        target = self.parameterAsString(parameters, "TARGET", context)
        if not target:
            raise QgsProcessingException(self.tr("Choose the target field: the numeric field to predict"))
        if target.lower() == "fid":  # what a dialog preselects on a GeoPackage layer: the first numeric field
            raise QgsProcessingException(
                self.tr("'fid' is the layer's feature id, not a value to predict: choose the target field")
            )
        prefix = self.parameterAsString(parameters, "PREFIX", context)
        if prefix and target.startswith(prefix):  # what a dialog preselects on a layer whose first field is emb_0
            raise QgsProcessingException(
                self.tr(f"'{target}' is an embedding field, not a value to predict: choose the target field")
            )
        if fields.indexFromName(target) < 0:
            numeric = [f.name() for f in fields if f.isNumeric() and not (prefix and f.name().startswith(prefix))]
            shown = ", ".join(numeric[:8]) + (", ..." if len(numeric) > 8 else "")
            raise QgsProcessingException(
                self.tr(
                    f"The layer has no field '{target}': choose one of its numeric fields ({shown or 'none found'})"
                )
            )
        field = fields.field(target)
        if not field.isNumeric():
            raise QgsProcessingException(
                self.tr(
                    f"Target field '{target}' is not numeric ({field.typeName()}): choose a numeric field, or convert "
                    'it with the Field calculator (to_real("field"))'
                )
            )
        names = [f.name() for f in fields if f.name().startswith(prefix) and f.isNumeric() and f.name() != target]
        if not names:
            raise QgsProcessingException(
                self.tr(
                    f"No numeric fields start with '{prefix}': attach or aggregate embeddings first, or fix the prefix"
                )
            )
        extra = self.parameterAsFields(parameters, "EXTRA_FIELDS", context)
        for name in extra:
            if fields.indexFromName(name) < 0:
                raise QgsProcessingException(self.tr(f"The layer has no field '{name}' (an extra feature field)"))
            if not fields.field(name).isNumeric():
                kind = fields.field(name).typeName()
                raise QgsProcessingException(
                    self.tr(
                        f"Extra feature field '{name}' is not numeric ({kind}): leave it out, or convert it with the "
                        'Field calculator (to_real("field"))'
                    )
                )
        return target, names + [n for n in extra if n not in names and n != target]

    def _second_layer_output(self, parameters, context, names) -> dict:
        """``parameters``, with the second layer's predictions going to a temporary layer of the project when a
        second layer is chosen without an output (the dialog skips that output by default); checked before the fit:
        the second layer must have the feature fields."""
        other = self.parameterAsSource(parameters, "PREDICT_LAYER", context)
        if other is None:
            return parameters
        absent = [n for n in names if other.fields().indexFromName(n) < 0]
        if absent:
            raise QgsProcessingException(
                self.tr(
                    f"The layer to predict onto lacks the feature fields {absent[:5]}: attach the same embeddings to "
                    "it first (Attach embeddings to features, or Aggregate embeddings over polygons)"
                )
            )
        if output_chosen(parameters.get("OUTPUT_PREDICT")):
            return parameters
        if context.project() is None:
            raise QgsProcessingException(
                self.tr("Choose where to write the predictions on the second layer (OUTPUT_PREDICT)")
            )
        return {
            **parameters,
            "OUTPUT_PREDICT": QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT", context.project()),
        }

    @staticmethod
    def _with_location(x, wkbs):
        """``x`` with the Sphere2Vec sphereC+ code of each feature's representative point (NaN without one)."""
        import numpy as np

        from mobclip_core.encoders import sphere2vec_sphere_c_plus
        from mobclip_core.grid import representative_points

        lon, lat = representative_points(wkbs)
        located = np.isfinite(lon) & np.isfinite(lat)
        probe = sphere2vec_sphere_c_plus(np.zeros(1), np.zeros(1))
        code = np.full((len(x), probe.shape[1]), np.nan)
        if located.any():
            code[located] = sphere2vec_sphere_c_plus(lon[located], lat[located])
        return np.c_[x, code]

    @staticmethod
    def _matrix(features, fields, names):
        idx = [fields.indexFromName(n) for n in names]
        return numbers([[a[i] for i in idx] for a in (f.attributes() for f in features)], len(idx))

    def _blocks(self, parameters, context, features, wkbs):
        """Spatial block per feature (H3 parent of its point), group labels, or None for random folds."""
        import numpy as np

        choice = self.parameterAsEnum(parameters, "BLOCKS", context)
        if choice == 2:
            return None
        if choice == 1:
            group = self.parameterAsString(parameters, "GROUP_FIELD", context)
            if not group:
                raise QgsProcessingException(self.tr("Choose a group field for group blocks (e.g. the admin unit id)"))
            labels = np.array([str(f[group]) for f in features], dtype=object)
            n_groups = np.unique(labels).size
            if len(labels) >= 20 and n_groups > 0.5 * len(labels):  # most groups hold one feature: random folds
                self._feedback.pushWarning(
                    self.tr(
                        f"'{group}' has {n_groups} groups for {len(labels)} features: with about one feature per group "
                        "the folds are random, not blocked, and the R2 is optimistic where neighbours are alike; "
                        "choose a field that groups neighbouring features (e.g. the district or county id)"
                    )
                )
            return labels
        from mobclip_core.grid import point_blocks, representative_points

        res = self.parameterAsInt(parameters, "BLOCK_RESOLUTION", context)
        lon, lat = representative_points(wkbs)
        located = np.isfinite(lon) & np.isfinite(lat)
        blocks = np.zeros(len(features), dtype=np.uint64)  # features without a geometry share one block
        blocks[located] = point_blocks(lon[located], lat[located], res)
        return blocks

    def _fit(self, parameters, context, feedback, x, y, target, blocks):
        from mobclip_core.evaluation.layer_regression import regress_layer

        model = MODEL_KEYS[self.parameterAsEnum(parameters, "MODEL", context)]
        params = {
            "n_estimators": self.parameterAsInt(parameters, "N_ESTIMATORS", context),
            "min_child_samples": self.parameterAsInt(parameters, "MIN_CHILD_SAMPLES", context),
        }

        def progress(fraction: float) -> bool:
            feedback.setProgress(15 + 65 * fraction)
            return feedback.isCanceled()

        try:
            fit = regress_layer(
                x,
                y,
                target_name=target,
                blocks=blocks,
                n_folds=self.parameterAsInt(parameters, "FOLDS", context),
                model=model,
                params=params,
                seed=self.parameterAsInt(parameters, "SEED", context),
                feedback=progress,
            )
        except InterruptedError:
            raise Cancelled() from None
        if blocks is not None and self.parameterAsEnum(parameters, "BLOCKS", context) == 0:
            import numpy as np

            res = self.parameterAsInt(parameters, "BLOCK_RESOLUTION", context)
            n_blocks = len(np.unique(blocks[fit.used]))
            feedback.pushInfo(self.tr(f"{n_blocks} spatial blocks (H3 resolution {res} cells)"))
        return fit

    def _replaces(self, parameters, name: str) -> bool:
        """Output ``name`` names an existing file or GeoPackage layer; refused now if that cannot be written."""
        import os

        path = existing_destination(parameters.get(name))
        if path is not None and not os.access(path, os.W_OK):
            raise QgsProcessingException(self.tr(f"{name}: {path} exists and cannot be written: choose another file"))
        return path is not None

    def _open_output(self, parameters, context, name: str, source, new_fields: tuple[str, ...]) -> _Output:
        """The sink ``name`` for ``source``'s features with ``new_fields`` (doubles) appended or replaced."""
        new = QgsFields()
        for field in new_fields:
            new.append(QgsField(field, QVariant.Double))
        out = self.output_fields(source.fields(), new)
        sink, dest = self.create_sink(parameters, name, context, out.fields, source.wkbType(), source.sourceCrs())
        return _Output(sink, dest, out)

    def _write_predictions(self, output: _Output, feedback, features, fit) -> str:
        import numpy as np

        values = np.c_[fit.prediction, fit.oof, fit.residual]
        rows = (output.fields.row(f.attributes(), nullable(v)) for f, v in zip(features, values))
        geometries = (f.geometry() for f in features)
        self.write_features(output.sink, rows, geometries, feedback, total=len(features), span=(80, 92))
        return output.dest

    def _read_second_layer(self, parameters, context, feedback, names, location: bool) -> _SecondLayer | None:
        """PREDICT_LAYER's features and their feature matrix (with location features when the fit has them)."""
        other = self.parameterAsSource(parameters, "PREDICT_LAYER", context)
        if other is None:
            return None
        fields = other.fields()  # checked before: it has the feature fields (``_second_layer_output``)
        if location:  # the same location features as the fit, from this layer's geometries
            features, wkbs = self.read_wgs84(other, context, feedback, span=(15, 17))
            return _SecondLayer(other, features, self._with_location(self._matrix(features, fields, names), wkbs), wkbs)
        features = list(other.getFeatures())
        return _SecondLayer(other, features, self._matrix(features, fields, names), None)

    def _predict_second_layer(self, context, feedback, other: _SecondLayer, output: _Output, fit, fitted_on) -> str:
        """Predictions on PREDICT_LAYER; ``fitted_on``: the fit's geometries when location features were used (None
        otherwise), to warn where this layer lies outside them (the location code is then extrapolated)."""
        if fitted_on is not None:
            outside = _outside_extent(other.wkbs, fitted_on)
            if outside:
                feedback.pushWarning(
                    self.tr(
                        f"{outside} of {len(other.features)} features of the second layer lie outside the area the "
                        "model was fitted on: their location features are beyond anything it learned from, so their "
                        "predictions are extrapolations (leave out location features to predict elsewhere)"
                    )
                )
        predicted = fit.predict(other.x)
        rows = (output.fields.row(f.attributes(), nullable([p])) for f, p in zip(other.features, predicted))
        geometries = (f.geometry() for f in other.features)
        self.write_features(output.sink, rows, geometries, feedback, total=len(other.features), span=(92, 100))
        style_on_load(context, output.dest, Styler(graduated_style, "prediction"))
        return output.dest


class _Output(NamedTuple):
    sink: object
    dest: str
    fields: object  # OutputFields: the output's fields and how a row of the input maps onto them


class _SecondLayer(NamedTuple):
    source: object
    features: list
    x: object  # the feature matrix, as the fit's
    wkbs: list | None  # WGS84 geometries, read only with location features


def _outside_extent(wkbs, fitted_on, margin: float = 0.05) -> int:
    """How many of ``wkbs``' representative points lie outside the bounding box of ``fitted_on``'s, widened by
    ``margin`` of its size on each side (the edge of a city is not "elsewhere")."""
    import numpy as np

    from mobclip_core.grid import representative_points

    lon0, lat0 = representative_points(fitted_on)
    lon, lat = representative_points(wkbs)
    ok0 = np.isfinite(lon0) & np.isfinite(lat0)
    if not ok0.any():
        return 0
    west, east, south, north = lon0[ok0].min(), lon0[ok0].max(), lat0[ok0].min(), lat0[ok0].max()
    pad_x, pad_y = margin * max(east - west, 1e-3), margin * max(north - south, 1e-3)
    inside = (lon >= west - pad_x) & (lon <= east + pad_x) & (lat >= south - pad_y) & (lat <= north + pad_y)
    return int((np.isfinite(lon) & ~inside).sum())
