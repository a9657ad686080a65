"""Rate-limit settings: defaults, variables, errors naming the variable."""

from __future__ import annotations

import pytest

from ops.settings import SettingsError, load_settings


def test_defaults_limit_a_gateway_loosely_and_a_card_tightly():
    settings = load_settings({})
    assert (settings.rate_limit_client_per_s, settings.rate_limit_client_burst) == (5000, 5000)
    assert (settings.rate_limit_card_per_s, settings.rate_limit_card_burst) == (3, 5)
    assert next(iter(settings.stages)) == "admit"


def test_variables():
    settings = load_settings({"SENTINEL_RATE_LIMIT_CLIENT_PER_S": "250.5",
                              "SENTINEL_RATE_LIMIT_CLIENT_BURST": "100",
                              "SENTINEL_RATE_LIMIT_CARD_PER_S": "0",
                              "SENTINEL_RATE_LIMIT_CARD_BURST": "0",
                              "SENTINEL_STAGE_ADMIT_WORKERS": "3"})
    assert (settings.rate_limit_client_per_s, settings.rate_limit_client_burst) == (250.5, 100)
    assert settings.rate_limit_card_per_s == 0  # off: a burst of 0 is then fine
    assert settings.stage("admit").workers == 3


@pytest.mark.parametrize(("env", "message"), [
    ({"SENTINEL_RATE_LIMIT_CLIENT_PER_S": "-1"}, "SENTINEL_RATE_LIMIT_CLIENT_PER_S"),
    ({"SENTINEL_RATE_LIMIT_CARD_PER_S": "fast"}, "SENTINEL_RATE_LIMIT_CARD_PER_S"),
    ({"SENTINEL_RATE_LIMIT_CARD_BURST": "0"}, "SENTINEL_RATE_LIMIT_CARD_BURST"),
])
def test_errors_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
