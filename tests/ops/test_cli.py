"""The `sentinel` command, run in-process against the test database."""

from __future__ import annotations

import pytest

from http_edge.auth import TokenIssuer
from ops import cli


@pytest.fixture
def env(monkeypatch, database):
    monkeypatch.setenv("SENTINEL_DATABASE_URL", database.database_url)
    monkeypatch.setenv("SENTINEL_ADMIN_DATABASE_URL", database.admin_database_url)
    monkeypatch.setenv("SENTINEL_JWT_SECRET", database.jwt_secret)
    return database


def test_token_prints_a_verifiable_token(env, capsys):
    assert cli.main(["token", "--sub", "gw", "--scope", "transactions:write",
                     "--scope", "accounts:read", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    issuer = TokenIssuer(env.jwt_secret, issuer=env.jwt_issuer, audience=env.jwt_audience)
    principal = issuer.verify(f"Bearer {token}")
    assert principal.subject == "gw"
    assert principal.scopes == {"transactions:write", "accounts:read"}


def test_token_refuses_unknown_scopes(env, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["token", "--sub", "gw", "--scope", "root"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_configuration_errors_name_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("SENTINEL_HTTP_PORT", "not-a-port")
    assert cli.main(["token", "--sub", "gw", "--scope", "admin"]) == 2
    assert "SENTINEL_HTTP_PORT" in capsys.readouterr().err


def test_migrate_is_idempotent(env, capsys):
    assert cli.main(["migrate"]) == 0
    assert "none (up to date)" in capsys.readouterr().out


def test_verify_ledger_on_the_test_database(env, capsys):
    assert cli.main(["verify-ledger"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")


def test_train_parser_defaults_match_the_train_options():
    from model.train import TrainOptions
    from ops.model_commands import TRAIN_DEFAULTS

    options = TrainOptions()
    assert TRAIN_DEFAULTS == {"trees": options.n_estimators, "seed": options.seed,
                              "target_alert_rate": options.target_alert_rate}


def test_the_cli_starts_without_the_model_packages():
    import subprocess
    import sys

    probe = ("import sys, ops.cli; heavy = sorted(m for m in ('sklearn', 'numba', 'matplotlib') "
             "if m in sys.modules); print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
