"""A loaded, verified model ready to score micro-batches, and the holder that swaps it live.

`Scorer.load` verifies the artifact (model/artifact.py), compiles the fitted forest into the
fast evaluator (model/forest.py) and keeps the feature spec and thresholds from the signed
manifest. Scoring a batch is plain synchronous numpy: features -> risk scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from model.artifact import Manifest, Thresholds, load
from model.features import FEATURES, FeatureSpec, feature_matrix
from model.forest import CompiledForest
from model.records import Txn
from rules.engine import Verdict


class ModelMismatch(Exception):
    """The artifact's features are not the ones this code computes."""

    code = "model_features_mismatch"


class Scorer:
    def __init__(self, model: object, manifest: Manifest, *,
                 thresholds: Thresholds | None = None) -> None:
        if tuple(manifest.features) != FEATURES:
            raise ModelMismatch(
                f"model {manifest.model_version} was trained on features {manifest.features}, "
                f"this version computes {list(FEATURES)}: retrain with `sentinel train`")
        self.model = model
        self.manifest = manifest
        self.version = manifest.model_version
        self.forest = CompiledForest.from_pipeline(model)
        self.spec = msgspec.convert(manifest.params["feature_spec"], FeatureSpec)
        self.thresholds = thresholds or manifest.thresholds

    @classmethod
    def load(cls, path: str | Path, *, key: bytes, flag_threshold: float = 0.0,
             decline_threshold: float = 0.0) -> Scorer:
        """Verify and load `path`; a threshold > 0 overrides the manifest's proposal."""
        model, manifest = load(path, key=key)
        proposed = manifest.thresholds
        thresholds = Thresholds(
            flag=flag_threshold if flag_threshold > 0 else proposed.flag,
            decline=decline_threshold if decline_threshold > 0 else proposed.decline,
            target_alert_rate=proposed.target_alert_rate)
        return cls(model, manifest, thresholds=thresholds)

    def features(self, txns: Sequence[Txn], history: np.ndarray) -> np.ndarray:
        return feature_matrix(txns, history, self.spec)

    def risk(self, features: np.ndarray) -> np.ndarray:
        """Risk scores in (0, 1]: the IsolationForest anomaly score, -score_samples."""
        return self.forest.risk(features)

    def decide(self, verdict: Verdict, score: float) -> bool:
        """Fold `score` into `verdict`; True when the model itself raised an alert.

        At or above the decline threshold (when one is set) the model declines; at or above
        the flag threshold it flags, unless an allow rule matched (allow suppresses an
        ML-only flag, never a decline).
        """
        decline = self.thresholds.decline
        if decline is not None and score >= decline:
            verdict.escalate("decline")
            verdict.reasons.append("ml_very_high_risk")
            return True
        if score >= self.thresholds.flag and not verdict.allowed:
            verdict.escalate("flag")
            verdict.reasons.append("ml_high_risk")
            return True
        return False

    def top_features(self, features: np.ndarray, k: int = 3) -> list[list[str]]:
        return [[FEATURES[j] for j in row] for row in self.forest.top_features(features, k)]


class ModelHolder:
    """The current Scorer of this process; the reloader swaps it, the scoring stage reads it."""

    def __init__(self, scorer: Scorer | None = None) -> None:
        self.current = scorer
