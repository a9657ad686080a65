"""`sentinel generate`, `train` and `evaluate`, run in-process on generated data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from model.artifact import read_manifest
from model.data import read_native
from model.features import FEATURES
from ops import cli


@pytest.fixture
def env(monkeypatch, database, tmp_path):
    monkeypatch.setenv("SENTINEL_DATABASE_URL", database.database_url)
    monkeypatch.setenv("SENTINEL_MODEL_KEY", "cli-test-key")
    monkeypatch.setenv("SENTINEL_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    return database


@pytest.fixture
def data(env, tmp_path, capsys) -> Path:
    path = tmp_path / "data.csv.gz"
    assert cli.main(["generate", "--accounts", "60", "--days", "20", "--seed", "5",
                     "--out", str(path)]) == 0
    assert "transactions" in capsys.readouterr().out
    return path


def test_train_writes_a_signed_artifact_with_proposed_thresholds(data, tmp_path, capsys):
    out = tmp_path / "model.joblib"
    assert cli.main(["train", "--data", str(data), "--out", str(out), "--trees", "60",
                     "--target-alert-rate", "0.03"]) == 0
    printed = capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest.model_version in printed
    assert tuple(manifest.features) == FEATURES
    assert manifest.data_rows == len(read_native(data))
    assert manifest.thresholds.target_alert_rate == 0.03
    # The proposal spends the budget on legitimate payments; caught fraud comes on top.
    assert manifest.metrics["legit_alert_rate"] == pytest.approx(0.03, abs=0.002)
    assert manifest.metrics["alert_rate"] > manifest.metrics["legit_alert_rate"]
    assert 0 < manifest.thresholds.flag < 1
    # Synthetic fraud is anomalous by construction: a sanity floor, not a tuned number.
    assert manifest.metrics["roc_auc"] > 0.8


def test_evaluate_reports_and_plots(data, tmp_path, capsys):
    model = tmp_path / "model.joblib"
    rows = read_native(data)
    cutoff = rows[len(rows) * 2 // 3].event_ms
    moment = datetime.fromtimestamp(cutoff / 1000, UTC).isoformat()
    assert cli.main(["train", "--data", str(data), "--out", str(model), "--trees", "60",
                     "--until", moment]) == 0
    capsys.readouterr()
    plot = tmp_path / "review.png"
    assert cli.main(["evaluate", "--data", str(data), "--model", str(model), "--from", moment,
                     "--rules", "live", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[:out.rindex("}") + 1])
    assert report["rows"] == sum(1 for r in rows if r.event_ms >= cutoff)
    assert report["fraud_rows"] == sum(1 for r in rows if r.event_ms >= cutoff and r.is_fraud)
    assert 0.5 < report["roc_auc"] <= 1
    assert report["rules_version"] is not None
    assert 0 <= report["alert_rate"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_without_rules_matches_model_only_metrics(data, tmp_path, capsys):
    model = tmp_path / "model.joblib"
    assert cli.main(["train", "--data", str(data), "--out", str(model), "--trees", "60"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(data), "--model", str(model),
                     "--rules", "none", "--no-plot"]) == 0
    report = json.loads(capsys.readouterr().out)
    # No rules: the decisions are the model's alone.
    assert report["alert_rate"] == pytest.approx(report["model_only"]["alert_rate"])
    assert report["recall"] == pytest.approx(report["model_only"]["recall"])


def test_bad_inputs_give_clear_errors(env, tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert cli.main(["train", "--data", str(missing), "--out", str(tmp_path / "m")]) == 2
    assert "nope.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,dataset\n1,2,3\n")
    assert cli.main(["train", "--data", str(bad), "--format", "sparkov",
                     "--out", str(tmp_path / "m")]) == 2
    assert "bad.csv" in capsys.readouterr().err
    assert cli.main(["evaluate", "--data", str(bad), "--model", str(tmp_path / "none.joblib"),
                     "--rules", "none", "--no-plot"]) == 2
    assert "sentinel evaluate" in capsys.readouterr().err
