"""Settings from SENTINEL_* variables: types, stage settings, errors naming the variable."""

from __future__ import annotations

import os

import pytest

from ops.settings import DEFAULT_STAGES, SettingsError, load_settings


def test_defaults_work_on_a_developer_machine():
    settings = load_settings({})
    assert settings.http_port == 8080
    assert settings.database_url.startswith("postgresql://")
    assert settings.stages == DEFAULT_STAGES


def test_values_are_typed():
    settings = load_settings({"SENTINEL_HTTP_PORT": "9090", "SENTINEL_HTTP_REUSE_PORT": "true",
                              "SENTINEL_SHUTDOWN_TIMEOUT_S": "2.5",
                              "SENTINEL_REDIS_URL": "redis://example:6380/1"})
    assert settings.http_port == 9090
    assert settings.http_reuse_port is True
    assert settings.shutdown_timeout_s == 2.5
    assert settings.redis_url == "redis://example:6380/1"


def test_stage_settings():
    settings = load_settings({"SENTINEL_STAGE_LEDGER_WORKERS": "8",
                              "SENTINEL_STAGE_LEDGER_BATCH_MAX": "64",
                              "SENTINEL_STAGE_ADMIT_BATCH_WAIT_MS": "0.5",
                              "SENTINEL_STAGE_RESPOND_QUEUE_MAX": "100",
                              "SENTINEL_STAGE_LEDGER_WAIT_WHEN_IDLE": "true"})
    assert settings.stage("ledger").workers == 8
    assert settings.stage("ledger").batch_max == 64
    assert settings.stage("ledger").queue_max == DEFAULT_STAGES["ledger"].queue_max
    assert settings.stage("admit").batch_wait_ms == 0.5
    assert settings.stage("respond").queue_max == 100
    assert settings.stage("ledger").wait_when_idle and not DEFAULT_STAGES["ledger"].wait_when_idle


@pytest.mark.parametrize(("env", "message"), [
    ({"SENTINEL_HTTP_PORT": "eighty"}, "SENTINEL_HTTP_PORT"),
    ({"SENTINEL_HTTP_REUSE_PORT": "maybe"}, "SENTINEL_HTTP_REUSE_PORT"),
    ({"SENTINEL_REDIS_URL": ""}, "SENTINEL_REDIS_URL"),
    ({"SENTINEL_STAGE_LEDGER_WORKERS": "0"}, "SENTINEL_STAGE_LEDGER_WORKERS"),
    ({"SENTINEL_STAGE_LEDGER_WORKERS": "x"}, "SENTINEL_STAGE_LEDGER_WORKERS"),
    ({"SENTINEL_STAGE_NOPE_WORKERS": "2"}, "unknown stage 'nope'"),
    ({"SENTINEL_STAGE_LEDGER_SPEED": "2"}, "SENTINEL_STAGE_LEDGER_SPEED"),
    ({"SENTINEL_STAGE_LEDGER_WAIT_WHEN_IDLE": "2"}, "not a boolean"),
])
def test_errors_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_processes_default_to_the_usable_cores_and_must_not_be_negative():
    cores = len(os.sched_getaffinity(0))
    assert load_settings({}).processes == cores
    assert load_settings({"SENTINEL_PROCESSES": "0"}).processes == cores
    assert load_settings({"SENTINEL_PROCESSES": "3"}).processes == 3
    with pytest.raises(SettingsError, match="SENTINEL_PROCESSES='-1'"):
        load_settings({"SENTINEL_PROCESSES": "-1"})
    with pytest.raises(SettingsError, match="SENTINEL_PROCESSES"):
        load_settings({"SENTINEL_PROCESSES": "many"})
