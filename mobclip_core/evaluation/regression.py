"""Regress downstream targets on embeddings: LightGBM (Ridge for small samples) with blocked or random CV."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from .._optional import import_optional
from ..exceptions import InvalidInputError
from ..threads import resolve_threads
from .splits import kfold_splits

GRID_PARAMS = dict(learning_rate=0.05, max_depth=7, n_estimators=1000, num_leaves=63, min_child_samples=30)
ADMIN_PARAMS = dict(learning_rate=0.05, max_depth=7, n_estimators=1000, num_leaves=31, min_child_samples=50)
RIDGE_BELOW = 300  # samples: the public protocol uses Ridge for city-level tasks this small
RIDGE_ALPHAS = np.logspace(-3, 5, 17)
"""Ridge penalties tried by leave-one-out inside each training fold (the test fold never chooses alpha)."""
MEMORY_FOR_FITS = 2 << 30
"""Bytes the side-by-side fits of ``cross_validate`` may hold in copies of the rows (fewer fits at once above it)."""


@dataclass
class CVResult:
    """Out-of-fold predictions and scores of one cross-validated fit, plus a model refit on all rows."""

    oof: np.ndarray
    r2: float
    rmse: float
    fold_r2: list[float]
    model_kind: str
    model: object = field(repr=False, default=None)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)

    @property
    def description(self) -> str:
        """The model actually fitted, in words (for logs, layer names and reports)."""
        return describe_model(self.model_kind, self.model)


def describe_model(kind: str, est) -> str:
    """'Ridge (alpha 31.6, chosen by leave-one-out)' or 'LightGBM (250 trees)'."""
    if est is None:
        return {"ridge": "Ridge", "lightgbm": "LightGBM"}.get(kind, kind)
    if kind == "ridge":
        return f"Ridge (alpha {est[-1].alpha_:.3g}, chosen by leave-one-out)"
    return f"LightGBM ({est.n_estimators} trees)"


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


def make_model(kind: str, n_samples: int, params: dict | None, seed: int, n_jobs: int):
    if kind == "auto":
        kind = "ridge" if n_samples < RIDGE_BELOW else "lightgbm"
    if kind == "ridge":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # alpha chosen by efficient leave-one-out over the rows it is fitted on: with 128 features and ~60 rows a
        # fixed alpha of 1 fits the training rows almost perfectly and predicts new ones badly
        return kind, make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    if kind == "lightgbm":
        lgb = import_optional("lightgbm")
        # 63 histogram bins, column-wise: about 3x faster than LightGBM's defaults on a few hundred rows
        p = {"max_bin": 63, **GRID_PARAMS, **(params or {})}
        return kind, lgb.LGBMRegressor(
            objective="regression",
            random_state=seed,
            verbose=-1,
            n_jobs=n_jobs,
            deterministic=True,
            force_col_wise=True,
            **p,
        )
    raise InvalidInputError(f"model must be 'auto', 'lightgbm' or 'ridge', got {kind!r}")


def fit_model(
    est,
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray | None,
    early_stopping: int | None,
    seed: int,
    stop: threading.Event | None = None,
    until=None,
):
    """Fit ``est`` on ``rows``; with ``early_stopping`` (rounds), a LightGBM model holds out a seeded 10% of those
    rows and stops adding trees when they stop improving. Returns the number of trees kept (None otherwise).
    ``stop``: once set, a LightGBM fit raises ``InterruptedError`` at its next tree (Cancel within a fit);
    ``until``: a further LightGBM callback (``_stop_at``)."""
    every = rows is None
    rows = np.arange(len(y)) if every else rows

    def chosen():  # the rows to fit on; every row without a copy
        return (x, y) if every else (x[rows], y[rows])

    if kind != "lightgbm":
        est.fit(*chosen())
        return None
    callbacks = ([] if stop is None else [_stop_when(stop)]) + ([] if until is None else [until])
    if not early_stopping:
        est.fit(*chosen(), callbacks=callbacks)
        return None
    import lightgbm as lgb

    inner = np.random.default_rng(seed).permutation(rows)
    n_val = max(1, len(inner) // 10)
    val, fit_rows = inner[:n_val], inner[n_val:]
    est.fit(
        x[fit_rows],
        y[fit_rows],
        eval_X=(x[val],),
        eval_y=(y[val],),
        callbacks=[*callbacks, lgb.early_stopping(early_stopping, verbose=False)],
    )
    return int(est.best_iteration_ or est.n_estimators)


def _stop_at(agreed: list[int]):
    """A LightGBM callback that ends the fit at ``agreed[0]`` trees once that number is known (it is appended while
    the fit runs); a fit already past it stops at its next tree and predicts with its first ``agreed[0]``."""
    from lightgbm.callback import EarlyStopException

    def callback(env) -> None:
        if agreed and env.iteration + 1 >= agreed[0]:
            raise EarlyStopException(agreed[0] - 1, env.evaluation_result_list or [])

    callback.order = 1
    return callback


def _stop_when(stop: threading.Event):
    """A LightGBM callback that ends the fit once ``stop`` is set."""

    def callback(env) -> None:
        if stop.is_set():
            raise InterruptedError("cancelled")

    callback.order = 0  # before early stopping's own check
    return callback


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_folds: int = 5,
    model: str = "auto",
    params: dict | None = None,
    seed: int = 0,
    n_jobs: int = 0,
    refit: bool = True,
    early_stopping: int | None = None,
    feedback=None,
) -> CVResult:
    """K-fold CV; with ``groups`` whole groups (admin units, coarse H3 parents) are held out together.

    ``feedback(fraction) -> bool`` reports progress and returns True to cancel; a fit in progress then stops at its
    next tree. With ``early_stopping`` (rounds), each LightGBM fold holds out 10% of its training rows to stop adding
    trees, and the final refit uses the mean best number of trees; the test fold is never seen while fitting.

    The folds and the refit are fitted side by side on ``n_jobs`` threads (0: every usable core), each fit on one
    thread. On a few thousand rows LightGBM's own threads gain little and wait for each other at every tree: beside
    one busy process (QGIS drawing, a second job) two of them ran 3.5x slower than one. Independent one-thread fits
    keep their share of the machine, and the result does not depend on how many run at once.
    """
    import_optional("sklearn")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InvalidInputError(f"features {x.shape} and target {y.shape} do not line up")
    if not np.isfinite(y).all():
        raise InvalidInputError("the target has missing or infinite values: drop those rows first")
    if y.size and np.ptp(y) == 0:
        raise InvalidInputError(f"the target is constant ({y[0]:g} everywhere): there is nothing to predict")
    splits = kfold_splits(x.shape[0], n_folds, groups, seed)
    # one kind for every fold and the refit, from the rows the user gave ("auto": Ridge under RIDGE_BELOW), so the
    # score reported is the score of the model mapped
    kind = model if model != "auto" else ("ridge" if len(y) < RIDGE_BELOW else "lightgbm")
    make_model(kind, len(y), params, seed, 1)  # an unknown model is refused here, before any fit
    stop = threading.Event()

    def fit_fold(k: int):
        if stop.is_set():  # cancelled while queued: no copy of the rows, no fit
            raise InterruptedError("cancelled")
        tr, te = splits[k]
        _, est = make_model(kind, len(tr), params, seed, 1)
        n_trees = fit_model(est, kind, x, y, tr, early_stopping, seed + k, stop)
        return n_trees, est.predict(x[te])

    agreed: list[int] = []  # with early stopping: the folds' mean best number of trees, once every fold is done

    def fit_all():
        if stop.is_set():
            raise InterruptedError("cancelled")
        _, est = make_model(kind, len(y), params, seed, 1)
        fit_model(est, kind, x, y, None, None, seed, stop, _stop_at(agreed) if early_stopping else None)
        return est

    total = len(splits) + int(refit)
    # every fit holds its own copy of its rows (float64) and LightGBM's binned copy: at most about MEMORY_FOR_FITS
    copies = max(1, int(MEMORY_FOR_FITS // max(2 * x.nbytes, 1)))
    workers = max(1, min(resolve_threads(n_jobs), total, copies))
    with ThreadPoolExecutor(workers, thread_name_prefix="mobclip-cv") as pool:
        try:
            folds = [pool.submit(fit_fold, k) for k in range(len(splits))]
            # the refit starts beside the last folds; with early stopping it stops at the folds' agreed trees
            final_job = pool.submit(fit_all) if refit else None
            _wait(folds, stop, feedback, total, also=final_job)
            results = [f.result() for f in folds]
            trees = [n for n, _ in results if n is not None]
            if trees:
                agreed.append(max(1, int(np.mean(trees))))
            if final_job is not None:
                _wait([final_job], stop, feedback, total, done_before=len(folds))
        except BaseException:  # Cancel, a fit's error, the caller's feedback raising, Ctrl-C: end the fits now
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    oof = np.empty_like(y)
    fold_r2 = []
    for (_, te), (_, pred) in zip(splits, results):
        oof[te] = pred
        fold_r2.append(r2_score(y[te], pred))
    final = final_job.result() if final_job is not None else None
    if agreed and final is not None and kind == "lightgbm":  # the first k trees of a boosted model: the k-tree model
        final.booster_.best_iteration = agreed[0]
        final.set_params(n_estimators=agreed[0])
    rmse = float(np.sqrt(np.mean((y - oof) ** 2)))
    return CVResult(oof, r2_score(y, oof), rmse, fold_r2, kind, final)


def _wait(jobs: list, stop: threading.Event, feedback, total: int, done_before: int = 0, also=None) -> None:
    """Wait for ``jobs``, telling ``feedback`` the share of ``total`` fits done a few times a second; on Cancel (or
    a fit's error, also one in ``also``, a job running beside them) set ``stop`` and raise."""
    pending = set(jobs)
    while pending:
        finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        failed = next((f for f in [*finished, also] if f is not None and f.done() and f.exception() is not None), None)
        if failed is not None:
            raise failed.exception()
        done = done_before + len(jobs) - len(pending)
        if feedback is not None and feedback(done / total):
            raise InterruptedError("cancelled")
