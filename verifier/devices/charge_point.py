"""A charger's charge point as its enrollment names it (device.charge_point): the location,
EVSE and connector its CDRs carry, checked field by field by OCPI 2.2.1's rules. Pure."""

from __future__ import annotations

import re
from typing import Any

from verifier.wire.problems import Problem

# OCPI 2.2.1 section 8.4.4 ConnectorType, 8.4.3 ConnectorFormat, 8.4.7 PowerType.
CONNECTOR_STANDARDS = (
    "CHADEMO",
    "CHAOJI",
    *(f"DOMESTIC_{c}" for c in "ABCDEFGHIJKLMNO"),
    "GBT_AC",
    "GBT_DC",
    "IEC_60309_2_single_16",
    "IEC_60309_2_three_16",
    "IEC_60309_2_three_32",
    "IEC_60309_2_three_64",
    "IEC_62196_T1",
    "IEC_62196_T1_COMBO",
    "IEC_62196_T2",
    "IEC_62196_T2_COMBO",
    "IEC_62196_T3A",
    "IEC_62196_T3C",
    "NEMA_5_20",
    "NEMA_6_30",
    "NEMA_6_50",
    "NEMA_10_30",
    "NEMA_10_50",
    "NEMA_14_30",
    "NEMA_14_50",
    "PANTOGRAPH_BOTTOM_UP",
    "PANTOGRAPH_TOP_DOWN",
    "TESLA_R",
    "TESLA_S",
)
CONNECTOR_FORMATS = ("SOCKET", "CABLE")
POWER_TYPES = ("AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT", "AC_3_PHASE", "DC")

# The charge point fields of a charger's enrollment (device.charge_point): name -> (max
# length, required). Lengths are OCPI's for the CdrLocation field each one fills.
CHARGE_POINT_FIELDS: dict[str, tuple[int, bool]] = {
    "location_id": (36, True),  # CdrLocation.id
    "name": (255, False),
    "address": (45, True),
    "city": (45, True),
    "postal_code": (10, False),
    "state": (20, False),
    "country": (3, True),  # ISO 3166-1 alpha-3
    "evse_uid": (36, True),
    "evse_id": (48, True),  # eMI3, e.g. FR*WTP*E0001
    "connector_id": (36, True),
    "connector_standard": (0, True),
    "connector_format": (0, True),
    "power_type": (0, True),
}
ENUMS = {"connector_standard": CONNECTOR_STANDARDS, "connector_format": CONNECTOR_FORMATS, "power_type": POWER_TYPES}
COUNTRY3 = re.compile(r"[A-Z]{3}")


def check_charge_point(cp: Any) -> dict[str, Any]:
    """The charge point of a charger's enrollment, checked field by field (Problem otherwise)."""
    if not isinstance(cp, dict):
        raise Problem("invalid-field", "device.charge_point", "expected a map")
    for key in cp:
        if key not in CHARGE_POINT_FIELDS:
            raise Problem("invalid-field", f"device.charge_point.{key}", "unknown field")
    for key, (length, required) in CHARGE_POINT_FIELDS.items():
        value = cp.get(key)
        if value is None:
            if required:
                raise Problem("invalid-field", f"device.charge_point.{key}", "required")
            continue
        if not isinstance(value, str) or not value:
            raise Problem("invalid-field", f"device.charge_point.{key}", "expected a non-empty string")
        if key in ENUMS and value not in ENUMS[key]:
            raise Problem("invalid-field", f"device.charge_point.{key}", f"one of {', '.join(ENUMS[key])}")
        if length and len(value) > length:
            raise Problem("invalid-field", f"device.charge_point.{key}", f"at most {length} characters (OCPI)")
    if not COUNTRY3.fullmatch(cp["country"]):
        raise Problem("invalid-field", "device.charge_point.country", "ISO 3166-1 alpha-3, e.g. FRA")
    return cp
