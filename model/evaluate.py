"""The accuracy review: the full decision logic replayed over a labelled file, in time order.

For every row from `start_ms` on: the rules that run before scoring (velocity rebuilt from the
rows before it), the model's risk score (features from the card's history before it, as
live), the thresholds, then the rules that read the score. Earlier rows only build history.
The report gives ROC-AUC and PR-AUC of the risk score, and the alert rate, recall and
precision of the decisions (flag or decline counts as an alert).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import numpy as np

from model.history import offline_history
from model.records import Txn
from model.scorer import Scorer
from model.train import quality
from rules.backtest import EntityHistory, HistoryRow, context, remember, velocity_features
from rules.engine import RuleSet, Verdict

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Evaluation(msgspec.Struct, kw_only=True):
    model_version: str
    rules_version: int | None
    rules: int
    rows: int
    fraud_rows: int
    roc_auc: float | None
    pr_auc: float | None
    flag_threshold: float
    alert_rate: float  # flag or decline, rules and model together
    recall: float | None
    precision: float | None
    model_only: dict[str, float]  # the same at the flag threshold, from the score alone
    reasons: dict[str, int]  # how often each reason code appeared on an alert


def _moment(txn: Txn) -> datetime:
    return (_EPOCH + timedelta(milliseconds=txn.event_ms)).astimezone(
        timezone(timedelta(minutes=txn.utc_offset_min)))


def _history_row(txn: Txn, created: dict[str, datetime]) -> HistoryRow:
    moment = _moment(txn)
    opened = (created.setdefault(txn.account_id, moment) if txn.account_created_ms is None
              else _EPOCH + timedelta(milliseconds=txn.account_created_ms))
    return HistoryRow(
        transaction_id=txn.transaction_id, account_id=txn.account_id, card_id=txn.card_id,
        merchant_id=txn.merchant_id, merchant_category=txn.merchant_category,
        amount_minor=txn.amount_minor, currency=txn.currency, country=txn.country,
        lat=txn.lat, lon=txn.lon, event_time=moment, home_country=txn.home_country,
        home_lat=txn.home_lat, home_lon=txn.home_lon, account_created_at=opened,
        risk_score=0.0, label=None)


def evaluate(rows: Sequence[Txn], scorer: Scorer, rule_set: RuleSet | None, *,
             start_ms: int | None = None) -> tuple[Evaluation, np.ndarray, np.ndarray]:
    """The report, and the risk scores and labels of the evaluated rows (for the plot)."""
    rows = sorted(rows, key=lambda r: (r.event_ms, r.transaction_id))
    first = 0 if start_ms is None else next(
        (i for i, r in enumerate(rows) if r.event_ms >= start_ms), len(rows))
    if first == len(rows):
        raise ValueError("no rows to evaluate at or after the start time")
    history = offline_history(rows)
    features = scorer.features(rows[first:], history[first:])
    risk = scorer.risk(features)
    labels = np.fromiter((bool(r.is_fraud) for r in rows[first:]), bool, len(rows) - first)
    alerts = np.zeros(len(labels), bool)
    reasons: Counter[str] = Counter()
    rules = rule_set or RuleSet(0, [])
    horizon_ms = max((vk.window_s for vk in rules.velocity), default=0) * 1000
    histories: dict[tuple[str, str], EntityHistory] = {}
    created: dict[str, datetime] = {}
    for i, txn in enumerate(rows):
        row = _history_row(txn, created)
        if i >= first:
            verdict = Verdict()
            velocity = velocity_features(row, rules.velocity, histories)
            score = float(risk[i - first])
            rules.apply(context(row, velocity, rules.lists), verdict)
            scorer.decide(verdict, score)
            if rules.after_scoring:
                ctx = context(msgspec.structs.replace(row, risk_score=score), velocity,
                              rules.lists)
                rules.apply(ctx, verdict, after_scoring=True)
            if verdict.decision != "approve":
                alerts[i - first] = True
                reasons.update(verdict.reasons)
        if rules.velocity:
            remember(row, histories, horizon_ms)
    model_only = quality(labels, risk, scorer.thresholds.flag)
    has_both = bool(labels.any() and not labels.all())
    report = Evaluation(
        model_version=scorer.version, rules_version=rule_set.version if rule_set else None,
        rules=len(rules), rows=len(labels), fraud_rows=int(labels.sum()),
        roc_auc=model_only.get("roc_auc"), pr_auc=model_only.get("pr_auc"),
        flag_threshold=scorer.thresholds.flag, alert_rate=float(alerts.mean()),
        recall=float(alerts[labels].mean()) if has_both else None,
        precision=(float(labels[alerts].mean()) if alerts.any() else 0.0) if has_both else None,
        model_only=model_only, reasons=dict(reasons.most_common()))
    return report, risk, labels


def plot(risk: np.ndarray, labels: np.ndarray, threshold: float, out: str | Path,
         title: str) -> None:
    """A PNG with the precision-recall curve and the score distributions by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if labels.any() and not labels.all():
        precision, recall, _ = precision_recall_curve(labels, risk)
        left.plot(recall, precision)
        alerts = risk >= threshold
        left.scatter([alerts[labels].mean()], [labels[alerts].mean() if alerts.any() else 0],
                     color="red", zorder=3, label=f"flag threshold {threshold:.3f}")
        left.legend()
    left.set(xlabel="recall", ylabel="precision", title="precision-recall (risk score)",
             xlim=(0, 1), ylim=(0, 1.02))
    bins = np.linspace(float(risk.min()), float(risk.max()), 60)
    right.hist(risk[~labels], bins=bins, alpha=0.6, label="legitimate", density=True)
    right.hist(risk[labels], bins=bins, alpha=0.6, label="fraud", density=True)
    right.axvline(threshold, color="red", linestyle="--", label="flag threshold")
    right.set(xlabel="risk score", ylabel="density", title="score distribution", yscale="log")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
