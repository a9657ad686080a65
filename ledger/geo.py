"""Geography: ISO 3166-1 alpha-2 country codes and great-circle distances."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)

COUNTRY_CODES: frozenset[str] = frozenset((
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW "
).split())


class UnknownCountry(ValueError):
    code = "unknown_country"

    def __init__(self, country: str) -> None:
        hint = " (codes are upper case)" if country.upper() in COUNTRY_CODES else ""
        super().__init__(f"country {country!r} is not an ISO 3166-1 alpha-2 code{hint}")
        self.country = country


def check_country(code: str) -> str:
    """The code itself when it is an assigned ISO 3166-1 alpha-2 code, else UnknownCountry."""
    if code in COUNTRY_CODES:
        return code
    raise UnknownCountry(code)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    # Rounding can push `a` a hair past 1 near antipodes; clamp with a comparison rather
    # than min() so a NaN input stays NaN instead of becoming half the circumference.
    if a > 1.0:
        a = 1.0
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))
