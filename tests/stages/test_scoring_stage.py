"""The scoring stage: scores batches, flags with reasons, degrades on a short deadline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ledger.records import AccountState, PaymentRequest
from model.artifact import Thresholds
from model.generate import generate
from model.history import HISTORY_FIELDS
from model.scorer import ModelHolder, Scorer
from model.train import TrainOptions, train
from rules.engine import RuleSet, RuleSetHolder, Verdict
from rules.store import RuleVersion
from stages.rules import RulesStage
from stages.scoring import ScoringStage, txn_of
from stages.screening import Screening

KEY = b"test-model-key"
NOW = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    path = Path(tmp_path_factory.mktemp("model")) / "model.joblib"
    train(generate(40, 14, 3), options=TrainOptions(n_estimators=50), out=path, key=KEY,
          data_sha256="test")
    return Scorer.load(path, key=KEY)


def screening(i: int, *, deadline_s: float, amount_minor: int = 1250) -> Screening:
    request = PaymentRequest(
        client_id="c", idem_key=f"k{i}", fingerprint="f", transaction_id=f"t{i}",
        account_id="a", card_id="card", merchant_id="m", amount_minor=amount_minor,
        currency="EUR", merchant_category="grocery_pos", country="DE", lat=None, lon=None,
        event_time=NOW)
    account = AccountState(account_id="a", currency="EUR", home_country="DE", home_lat=None,
                           home_lon=None, overdraft_limit_minor=0, balance_minor=0,
                           created_at=datetime(2026, 1, 1, tzinfo=UTC))
    history = np.array([3.0, 1.0, NOW.timestamp() * 1000 - 60_000, 40.0, 40 * 7.0, 10.0])
    assert len(history) == len(HISTORY_FIELDS)
    return Screening(request=request, cache_key="x", account=account, history=history,
                     deadline_s=deadline_s)


def rule(name: str, expression: str, action: str, change_id: int) -> RuleVersion:
    return RuleVersion(rule_id=change_id, name=name, version=1, change_id=change_id,
                       description="", expression=expression, action=action, priority=1,
                       status="active", author="t", created_at=NOW)


async def run(stage: ScoringStage, items: list[Screening],
              rule_set: RuleSet | None = None) -> list[Screening]:
    await RulesStage(RuleSetHolder(rule_set or RuleSet(1, [])))(items)
    out = await stage(items)
    assert out == items
    return items


async def test_scores_the_batch_and_records_the_model_version(scorer: Scorer):
    stage = ScoringStage(ModelHolder(scorer), min_budget_ms=5, clock=lambda: 100.0)
    items = await run(stage, [screening(i, deadline_s=101.0, amount_minor=10 ** (i + 2))
                              for i in range(4)])
    scores = [item.request.risk_score for item in items]
    assert all(0 < s <= 1 for s in scores)
    assert len(set(scores)) > 1  # different amounts, different scores
    expected = scorer.risk(scorer.features([txn_of(i.request, i.account) for i in items],
                                            np.vstack([i.history for i in items])))
    assert scores == pytest.approx(np.round(expected, 6).tolist(), abs=1e-6)
    assert {item.request.model_version for item in items} == {scorer.version}


async def test_short_deadline_skips_the_model_and_says_so(scorer: Scorer):
    stage = ScoringStage(ModelHolder(scorer), min_budget_ms=5, clock=lambda: 100.0)
    roomy, short = screening(1, deadline_s=100.010), screening(2, deadline_s=100.004)
    await run(stage, [roomy, short])
    assert short.request.reasons == ["ml_skipped_deadline"]
    assert short.request.risk_score == 0.0 and short.request.model_version is None
    assert short.request.decision == "approve"
    assert roomy.request.model_version == scorer.version
    assert "ml_skipped_deadline" not in roomy.request.reasons


async def test_skipped_payment_keeps_the_rules_decision(scorer: Scorer):
    stage = ScoringStage(ModelHolder(scorer), min_budget_ms=5, clock=lambda: 100.0)
    item = screening(1, deadline_s=100.001)
    await run(stage, [item], RuleSet(7, [rule("big", "amount > 5", "decline", 1)]))
    assert item.request.decision == "decline"
    assert item.request.reasons == ["rule:big", "ml_skipped_deadline"]


async def test_high_score_flags_with_the_top_three_features(scorer: Scorer):
    low = Scorer(scorer.model, scorer.manifest,
                 thresholds=Thresholds(flag=0.0001, decline=None, target_alert_rate=0.5))
    stage = ScoringStage(ModelHolder(low), min_budget_ms=5, clock=lambda: 100.0)
    (item,) = await run(stage, [screening(1, deadline_s=101.0)])
    assert item.request.decision == "flag"
    reasons = item.request.reasons
    assert reasons[0] == "ml_high_risk"
    factors = [r for r in reasons if r.startswith("ml_factor:")]
    assert len(factors) == 3 and len(set(factors)) == 3


async def test_allow_rule_suppresses_an_ml_only_flag(scorer: Scorer):
    low = Scorer(scorer.model, scorer.manifest,
                 thresholds=Thresholds(flag=0.0001, decline=None, target_alert_rate=0.5))
    stage = ScoringStage(ModelHolder(low), min_budget_ms=5, clock=lambda: 100.0)
    rules = RuleSet(3, [rule("trusted", "merchant_id = 'm'", "allow", 1)])
    (item,) = await run(stage, [screening(1, deadline_s=101.0)], rules)
    assert item.request.decision == "approve"
    assert item.request.reasons == ["rule:trusted"]
    assert item.request.risk_score > 0


async def test_decline_threshold_declines(scorer: Scorer):
    strict = Scorer(scorer.model, scorer.manifest,
                    thresholds=Thresholds(flag=0.0001, decline=0.0002, target_alert_rate=0.5))
    stage = ScoringStage(ModelHolder(strict), min_budget_ms=5, clock=lambda: 100.0)
    (item,) = await run(stage, [screening(1, deadline_s=101.0)])
    assert item.request.decision == "decline"
    assert item.request.reasons[0] == "ml_very_high_risk"


async def test_rules_on_risk_score_run_after_scoring(scorer: Scorer):
    stage = ScoringStage(ModelHolder(scorer), min_budget_ms=5, clock=lambda: 100.0)
    rules = RuleSet(4, [rule("risky", "risk_score >= 0.0", "decline", 11),
                        rule("never", "risk_score > 1.5", "flag", 12)])
    assert len(rules.after_scoring) == 2
    (item,) = await run(stage, [screening(1, deadline_s=101.0)], rules)
    assert item.request.decision == "decline"
    assert "rule:risky" in item.request.reasons and "rule:never" not in item.request.reasons
    assert [hit.change_id for hit in item.request.hits] == [11]


async def test_without_a_model_the_rules_decide_alone():
    stage = ScoringStage(ModelHolder(), min_budget_ms=5, clock=lambda: 100.0)
    item = screening(1, deadline_s=101.0)
    await run(stage, [item])
    assert item.request.reasons == ["ml_unavailable"] and item.request.model_version is None


def test_verdict_fold_is_reused_by_the_offline_evaluation(scorer: Scorer):
    verdict = Verdict()
    assert scorer.decide(verdict, 1.0) is True
    assert verdict.decision == "flag" and verdict.reasons == ["ml_high_risk"]
    assert scorer.decide(Verdict(), 0.0) is False
