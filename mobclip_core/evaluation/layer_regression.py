"""Predict a numeric attribute of a layer from its embedding fields, with spatially blocked cross-validation.

The library side of QGIS's "Fit LightGBM or Ridge" algorithm: the algorithm reads the fields into arrays and
writes the arrays this returns; everything else (which rows count, blocks, the model, out-of-fold predictions) is
decided here, where a test can call it without QGIS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..exceptions import InvalidInputError
from .regression import CVResult, cross_validate

MODEL_NAMES = {"lightgbm": "LightGBM", "ridge": "Ridge"}
MIN_ROWS = 10


@dataclass
class LayerRegression:
    """Scores and per-feature predictions (NaN where a feature was left out)."""

    model_name: str  # what was fitted: "LightGBM" or "Ridge"
    used: np.ndarray  # bool per feature: had a target and every feature field
    prediction: np.ndarray  # the model refit on all used rows (the one to map), for every row with complete fields:
    # also where the target is missing, the gaps a user wants filled
    oof: np.ndarray  # out-of-fold prediction (the honest one)
    residual: np.ndarray  # target - oof
    cv: CVResult

    @property
    def r2(self) -> float:
        return self.cv.r2

    @property
    def rmse(self) -> float:
        return self.cv.rmse

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions of the refit model for new rows; NaN for rows with a missing feature."""
        x = np.asarray(x, dtype=np.float64)
        out = np.full(x.shape[0], np.nan)
        good = np.isfinite(x).all(axis=1)
        if good.any():
            out[good] = self.cv.predict(x[good])
        return out


def usable_rows(x: np.ndarray, y: np.ndarray, target_name: str) -> np.ndarray:
    """Rows with a finite target and finite features; refuses inputs with nothing to learn from."""
    has_target = np.isfinite(y)
    if not has_target.any():
        raise InvalidInputError(
            f"the target field '{target_name}' is NULL for every feature: choose a field that has values"
        )
    used = has_target & np.isfinite(x).all(axis=1)
    if used.sum() < MIN_ROWS:
        raise InvalidInputError(
            f"only {int(used.sum())} features have both a '{target_name}' value and every feature field "
            f"({int(has_target.sum())} have a target; {int((~np.isfinite(x).all(axis=1)).sum())} miss a feature "
            f"field); at least {MIN_ROWS} are needed: attach embeddings to more features, or drop extra fields "
            "that are often NULL"
        )
    values = y[used]
    if np.ptp(values) == 0:
        raise InvalidInputError(
            f"the target field '{target_name}' has the same value ({values[0]:g}) for every usable feature: there is "
            "nothing to predict; choose a field that varies"
        )
    return used


def regress_layer(
    x: np.ndarray,
    y: np.ndarray,
    *,
    target_name: str,
    blocks: np.ndarray | None = None,
    n_folds: int = 5,
    model: str = "auto",
    params: dict | None = None,
    seed: int = 0,
    early_stopping: int | None = 50,
    feedback: Callable[[float], bool] | None = None,
) -> LayerRegression:
    """Cross-validate a model of ``y`` on ``x`` (rows with NaN left out), holding out whole ``blocks`` (per row; None
    for random folds), and refit it on all usable rows. ``feedback(fraction) -> True`` cancels (InterruptedError)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    used = usable_rows(x, y, target_name)
    groups = None if blocks is None else np.asarray(blocks)[used]
    cv = cross_validate(
        x[used],
        y[used],
        groups=groups,
        n_folds=n_folds,
        model=model,
        params=params,
        seed=seed,
        early_stopping=early_stopping,
        feedback=feedback,
    )
    n = len(y)
    prediction, oof = np.full(n, np.nan), np.full(n, np.nan)
    complete = np.isfinite(x).all(axis=1)
    prediction[complete] = cv.predict(x[complete])
    oof[used] = cv.oof
    return LayerRegression(MODEL_NAMES[cv.model_kind], used, prediction, oof, y - oof, cv)
