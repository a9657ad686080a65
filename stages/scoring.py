"""The scoring stage: the model's risk score for a micro-batch, then the rules that read it.

It is the one stage that writes the decision (rules' and model's verdict, rule-set and model
versions, score) into the payment request the ledger records.

One feature matrix and one forest evaluation per batch (plain numpy, no I/O). A score at or
above the flag threshold flags (`ml_high_risk`, plus `ml_factor:<feature>` for the three
features that did most to isolate the payment) unless an allow rule matched; at or above the
decline threshold (when configured) it declines (`ml_very_high_risk`). A payment whose
remaining deadline is below `min_budget_ms` is not scored: the decision is the rules' alone,
with reason `ml_skipped_deadline` (risk_score 0, model_version null). Rules that use
`risk_score` run here, after the score.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec
import numpy as np

from ledger.money import exponent
from ledger.records import AccountState, PaymentRequest
from model.records import Txn
from model.scorer import ModelHolder, Scorer
from stages.rules import rule_context
from stages.screening import Screening
from stages.velocity import event_ms, utc_offset_min


def txn_of(request: PaymentRequest, account: AccountState) -> Txn:
    """A screened payment and its account profile, as the model sees them."""
    return Txn(
        transaction_id=request.transaction_id, event_ms=event_ms(request.event_time),
        utc_offset_min=utc_offset_min(request.event_time), account_id=request.account_id,
        card_id=request.card_id, merchant_id=request.merchant_id,
        merchant_category=request.merchant_category, amount_minor=request.amount_minor,
        currency=request.currency, exponent=exponent(request.currency),
        country=request.country, lat=request.lat, lon=request.lon,
        home_country=account.home_country, home_lat=account.home_lat,
        home_lon=account.home_lon,
        account_created_ms=event_ms(account.created_at))


class ScoringStage:
    def __init__(self, models: ModelHolder, *, min_budget_ms: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._models = models
        self._min_budget_s = min_budget_ms / 1000
        self._clock = clock

    async def __call__(self, batch: list[Screening]) -> list[object]:
        scorer = self._models.current  # one model for the whole batch, even during a swap
        now = self._clock()
        scored = [] if scorer is None else [
            item for item in batch if item.history is not None and item.account is not None
            and item.deadline_s - now >= self._min_budget_s]
        risks = self._score(scorer, scored) if scorer is not None and scored else {}
        for item in batch:
            verdict, rule_set = item.verdict, item.rule_set
            risk = risks.get(id(item))
            if risk is None:
                verdict.reasons.append("ml_skipped_deadline" if scorer is not None
                                       else "ml_unavailable")
            elif rule_set is not None and rule_set.after_scoring:
                rule_set.apply(rule_context(item, rule_set, risk), verdict, after_scoring=True)
            item.request = msgspec.structs.replace(
                item.request, decision=verdict.decision, reasons=verdict.reasons,
                hits=verdict.hits, rules_version=None if rule_set is None else rule_set.version,
                risk_score=0.0 if risk is None else risk,
                model_version=None if risk is None or scorer is None else scorer.version)
        return list(batch)

    def _score(self, scorer: Scorer, items: list[Screening]) -> dict[int, float]:
        """Score `items` (all with account and history), fold the scores into their verdicts;
        the rounded score of each, by id(item)."""
        txns = [txn_of(item.request, item.account) for item in items
                if item.account is not None]
        history = np.vstack([item.history for item in items if item.history is not None])
        features = scorer.features(txns, history)
        risk = scorer.risk(features)
        flagged = [i for i, item in enumerate(items) if scorer.decide(item.verdict, float(risk[i]))]
        if flagged:
            for i, names in zip(flagged, scorer.top_features(features[flagged]), strict=True):
                items[i].verdict.reasons.extend(f"ml_factor:{name}" for name in names)
        return {id(item): _rounded(float(risk[i])) for i, item in enumerate(items)}


def _rounded(score: float) -> float:
    # The ledger keeps numeric(7, 6): round here so the answer, the ledger row and its hash
    # all carry the same value.
    return round(min(max(score, 0.0), 1.0), 6) if math.isfinite(score) else 1.0
