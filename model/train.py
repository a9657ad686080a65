"""Training: labelled or unlabelled transactions in, a signed model artifact out.

The forest learns what normal payments look like: with labels it is fitted on the
legitimate rows only (fraud would teach it that fraud is normal), without labels on all of
them. The flag threshold proposed in the manifest is the score quantile that alerts on
`target_alert_rate` of the legitimate *warm* training rows (of all warm rows without labels):
the alert budget spent on good customers, which does not move with the fraud rate of the
period, unlike the total alert rate (that is the budget plus the fraud caught). Warm rows are
those after the first 30 days of the file, whose cards have a full history behind them as
live traffic does (the cold first month scores differently and would skew the quantile).
`SENTINEL_MODEL_FLAG_THRESHOLD` overrides the proposal.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline

from model.artifact import Manifest, Thresholds, save
from model.features import FEATURES, FeatureSpec, feature_matrix, fit_spec
from model.forest import CompiledForest
from model.history import PROFILE_WINDOW_MS, offline_history
from model.records import Txn


class TrainOptions(msgspec.Struct, frozen=True, kw_only=True):
    n_estimators: int = 200
    max_samples: int = 256
    seed: int = 42
    target_alert_rate: float = 0.03  # of legitimate payments
    decline_alert_rate: float | None = None  # None: the model alone never declines


class Fitted(NamedTuple):
    pipeline: Pipeline
    spec: FeatureSpec
    features: np.ndarray  # of every row, in order (for the threshold and the metrics)


def fit(rows: Sequence[Txn], options: TrainOptions) -> Fitted:
    """The fitted pipeline and the feature spec it needs, from time-sorted `rows`."""
    legit = np.fromiter((not r.is_fraud for r in rows), bool, len(rows))
    if not legit.any():
        raise ValueError("training needs at least one legitimate transaction")
    spec = fit_spec([r for r, ok in zip(rows, legit, strict=True) if ok])
    features = feature_matrix(rows, offline_history(rows), spec)
    pipeline = Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("forest", IsolationForest(n_estimators=options.n_estimators,
                                   max_samples=min(options.max_samples, int(legit.sum())),
                                   random_state=options.seed)),
    ])
    pipeline.fit(features[legit])
    return Fitted(pipeline, spec, features)


def warm_rows(rows: Sequence[Txn]) -> np.ndarray:
    """A mask of the rows at least PROFILE_WINDOW_MS after the first one (all rows when
    that would leave fewer than half of them)."""
    at = np.fromiter((r.event_ms for r in rows), np.int64, len(rows))
    warm = at >= at.min() + PROFILE_WINDOW_MS
    return warm if warm.sum() * 2 >= len(rows) else np.ones(len(rows), bool)


def quality(labels: np.ndarray, risk: np.ndarray, threshold: float) -> dict[str, float]:
    """Alert rate, precision, recall at `threshold`, and ROC-AUC / PR-AUC where labels exist."""
    alerts = risk >= threshold
    out = {"rows": float(len(risk)), "alert_rate": float(alerts.mean()) if len(risk) else 0.0}
    if labels.any() and not labels.all():
        out["fraud_rows"] = float(labels.sum())
        out["legit_alert_rate"] = float(alerts[~labels].mean())
        out["roc_auc"] = float(roc_auc_score(labels, risk))
        out["pr_auc"] = float(average_precision_score(labels, risk))
        out["recall"] = float(alerts[labels].mean())
        out["precision"] = float(labels[alerts].mean()) if alerts.any() else 0.0
    return out


def train(rows: Sequence[Txn], *, options: TrainOptions, out: str | Path, key: bytes,
          data_sha256: str) -> Manifest:
    """Fit, propose thresholds, and save a signed artifact at `out`."""
    if not rows:
        raise ValueError("no transactions to train on")
    rows = sorted(rows, key=lambda r: (r.event_ms, r.transaction_id))
    pipeline, spec, features = fit(rows, options)
    warm = warm_rows(rows)
    risk = CompiledForest.from_pipeline(pipeline).risk(features[warm])
    labels = np.fromiter((bool(r.is_fraud) for r in rows), bool, len(rows))[warm]
    budget = risk[~labels] if (~labels).any() else risk
    flag = float(np.quantile(budget, 1 - options.target_alert_rate))
    decline = (None if options.decline_alert_rate is None
               else float(np.quantile(budget, 1 - options.decline_alert_rate)))
    params: dict[str, object] = {**msgspec.to_builtins(options),
                                 "feature_spec": msgspec.to_builtins(spec),
                                 "python": platform.python_version()}
    return save(pipeline, out, key=key, features=list(FEATURES), data_sha256=data_sha256,
                data_rows=len(rows), params=params,
                thresholds=Thresholds(flag=flag, decline=decline,
                                      target_alert_rate=options.target_alert_rate),
                metrics=quality(labels, risk, flag))
