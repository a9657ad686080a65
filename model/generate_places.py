"""Where the generator's accounts live and pay: countries with their cities and standard UTC
offsets, and the summer-time rules that turn a city's wall clock into UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import numpy as np

MINUTE_MS = 60_000


class Country(NamedTuple):
    code: str
    home_share: float  # of the accounts; 0 for a country that is only a fraud origin
    dst: str  # "eu", "us" or "none"
    cities: tuple[tuple[float, float, int], ...]  # lat, lon, standard UTC offset in minutes


COUNTRIES = (
    Country("DE", 0.19, "eu", ((52.520, 13.405, 60), (48.137, 11.575, 60),
                               (53.551, 9.994, 60), (50.938, 6.960, 60))),
    Country("FR", 0.16, "eu", ((48.857, 2.352, 60), (45.764, 4.836, 60),
                               (43.296, 5.370, 60), (43.605, 1.444, 60))),
    Country("ES", 0.11, "eu", ((40.417, -3.704, 60), (41.385, 2.173, 60),
                               (39.470, -0.376, 60), (37.389, -5.984, 60))),
    Country("IT", 0.11, "eu", ((41.903, 12.496, 60), (45.464, 9.190, 60),
                               (40.852, 14.268, 60), (45.070, 7.687, 60))),
    Country("NL", 0.07, "eu", ((52.370, 4.895, 60), (51.924, 4.478, 60), (52.091, 5.122, 60))),
    Country("GB", 0.14, "eu", ((51.507, -0.128, 0), (53.481, -2.243, 0),
                               (52.486, -1.890, 0), (55.864, -4.252, 0))),
    Country("US", 0.19, "us", ((40.713, -74.006, -300), (41.878, -87.630, -360),
                               (29.760, -95.370, -360), (39.739, -104.990, -420),
                               (34.052, -118.244, -480))),
    Country("JP", 0.03, "none", ((35.677, 139.650, 540), (34.694, 135.502, 540))),
    Country("BR", 0.0, "none", ((-23.551, -46.633, -180),)),
    Country("NG", 0.0, "none", ((6.524, 3.379, 60),)),
    Country("RO", 0.0, "eu", ((44.427, 26.103, 120),)),
    Country("UA", 0.0, "eu", ((50.450, 30.524, 120),)),
    Country("ID", 0.0, "none", ((-6.208, 106.846, 420),)),
    Country("VN", 0.0, "none", ((10.823, 106.630, 420),)),
    Country("PH", 0.0, "none", ((14.600, 120.984, 480),)),
    Country("MX", 0.0, "none", ((19.433, -99.133, -360),)),
    Country("TH", 0.0, "none", ((13.756, 100.502, 420),)),
    Country("ZA", 0.0, "none", ((-26.204, 28.047, 120),)),
)


def _last_sunday(year: int, month: int) -> date:
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(1)
    return last - timedelta((last.weekday() - 6) % 7)


def _nth_sunday(year: int, month: int, nth: int) -> date:
    first = date(year, month, 1)
    return first + timedelta((6 - first.weekday()) % 7 + 7 * (nth - 1))


def _ms(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()) * 1000


def in_dst(rule: str, local_ms: np.ndarray, offset_min: np.ndarray) -> np.ndarray:
    """Summer time: EU from the last Sunday of March to that of October, 01:00 UTC; US from
    the second Sunday of March to the first of November, 02:00 local."""
    if rule == "none" or len(local_ms) == 0:
        return np.zeros(len(local_ms), bool)
    utc_ms = local_ms - offset_min * MINUTE_MS  # in standard time: off by an hour at most
    first, last = (datetime.fromtimestamp(int(ms) // 1000, UTC).year
                   for ms in (local_ms.min(), local_ms.max()))
    summer = np.zeros(len(local_ms), bool)
    for year in range(first, last + 1):
        if rule == "eu":
            begin, end = _ms(_last_sunday(year, 3), 1), _ms(_last_sunday(year, 10), 1)
            summer |= (utc_ms >= begin) & (utc_ms < end)
        else:
            begin, end = _ms(_nth_sunday(year, 3, 2), 2), _ms(_nth_sunday(year, 11, 1), 1)
            summer |= (local_ms >= begin) & (local_ms < end)
    return summer
