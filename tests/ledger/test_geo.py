"""Country codes and great-circle distances: known values and geometric properties."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.geo import COUNTRY_CODES, EARTH_RADIUS_KM, UnknownCountry, check_country, distance_km

HALF_CIRCUMFERENCE_KM = math.pi * EARTH_RADIUS_KM

latitudes = st.floats(min_value=-90, max_value=90)
longitudes = st.floats(min_value=-180, max_value=180)


def test_country_codes_are_the_249_assigned_upper_case_pairs() -> None:
    assert len(COUNTRY_CODES) == 249
    assert all(re.fullmatch("[A-Z]{2}", code) for code in COUNTRY_CODES)
    assert {"US", "GB", "DE", "FR", "JP", "AQ", "AX", "SS", "BQ", "CW", "SX"} <= COUNTRY_CODES


@pytest.mark.parametrize("code", ["XK", "UK", "EU", "AN", "CS", "YU", "ZZ", "AA", "XX"])
def test_country_codes_leave_out_user_assigned_reserved_and_withdrawn(code: str) -> None:
    assert code not in COUNTRY_CODES


def test_check_country_returns_the_code() -> None:
    assert check_country("DE") == "DE"


@pytest.mark.parametrize(("code", "message"), [
    ("us", "country 'us' is not an ISO 3166-1 alpha-2 code (codes are upper case)"),
    ("Us", "(codes are upper case)"),
    ("XK", "country 'XK' is not an ISO 3166-1 alpha-2 code"),
    ("USA", "country 'USA' is not an ISO 3166-1 alpha-2 code"),
    ("", "country '' is not"),
    (" US", "country ' US' is not"),
])
def test_check_country_rejects(code: str, message: str) -> None:
    with pytest.raises(UnknownCountry) as caught:
        check_country(code)
    assert caught.value.code == "unknown_country"
    assert caught.value.country == code
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unknown_country_hint_only_for_case() -> None:
    with pytest.raises(UnknownCountry) as caught:
        check_country("xk")
    assert "upper case" not in str(caught.value)


@pytest.mark.parametrize(("a", "b", "km", "tolerance_km"), [
    ((51.5074, -0.1278), (48.8566, 2.3522), 343.5, 1.0),       # London - Paris
    ((40.6413, -73.7781), (51.4700, -0.4543), 5540.0, 15.0),   # JFK - Heathrow
    ((0.0, 0.0), (0.0, 1.0), 111.195, 0.01),                   # one degree on the equator
    ((90.0, 0.0), (-90.0, 0.0), HALF_CIRCUMFERENCE_KM, 1e-6),  # pole to pole
    ((0.0, 0.0), (0.0, 180.0), 20015.1, 0.1),                  # antipodes on the equator
    ((10.0, 179.5), (10.0, -179.5), 109.5, 0.5),               # across the date line
])
def test_known_distances(a: tuple[float, float], b: tuple[float, float], km: float,
                         tolerance_km: float) -> None:
    assert distance_km(*a, *b) == pytest.approx(km, abs=tolerance_km)


def test_same_point_is_zero() -> None:
    assert distance_km(48.8566, 2.3522, 48.8566, 2.3522) == 0.0


def test_nan_stays_nan() -> None:
    assert math.isnan(distance_km(math.nan, 0.0, 0.0, 0.0))


@given(latitudes, longitudes, latitudes, longitudes)
def test_distance_is_symmetric_and_bounded(lat1: float, lon1: float, lat2: float,
                                           lon2: float) -> None:
    there = distance_km(lat1, lon1, lat2, lon2)
    assert there == pytest.approx(distance_km(lat2, lon2, lat1, lon1), abs=1e-6)
    assert 0.0 <= there <= HALF_CIRCUMFERENCE_KM + 1e-6


@given(latitudes, longitudes)
def test_distance_to_self_and_antipode(lat: float, lon: float) -> None:
    assert distance_km(lat, lon, lat, lon) == 0.0
    antipode_lon = lon - 180 if lon > 0 else lon + 180
    assert distance_km(lat, lon, -lat, antipode_lon) == pytest.approx(HALF_CIRCUMFERENCE_KM,
                                                                      abs=1e-3)


@given(latitudes, longitudes, latitudes, longitudes, latitudes, longitudes)
def test_triangle_inequality(lat1: float, lon1: float, lat2: float, lon2: float, lat3: float,
                             lon3: float) -> None:
    direct = distance_km(lat1, lon1, lat3, lon3)
    via = distance_km(lat1, lon1, lat2, lon2) + distance_km(lat2, lon2, lat3, lon3)
    assert direct <= via + 1e-6
