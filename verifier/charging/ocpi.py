"""OCPI 2.2.1 charge detail records (CDRs) from charging sessions, and the field rules
of the spec they must keep. Pure: no Flask, no database (docs/charging.md).

A CDR is made only for a session that stopped and is not disputed, at a charger whose
enrollment carries its charge point (location, EVSE, connector) and its coordinates.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from verifier.devices.charge_point import CONNECTOR_FORMATS, CONNECTOR_STANDARDS, POWER_TYPES
from verifier.devices.records import iso
from verifier.wire import cose

if TYPE_CHECKING:
    from verifier.charging.sessions import Session

VERSION = "2.2.1"

UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


@dataclass(frozen=True)
class Party:
    """Who sends the CDRs: the charge point operator's OCPI identity."""

    country_code: str  # ISO 3166-1 alpha-2
    party_id: str  # 3 characters (ISO 15118)


@dataclass(frozen=True)
class Tariff:
    """One flat tariff: a price per kWh and per hour of charging, VAT on top."""

    currency: str  # ISO 4217
    per_kwh: Decimal
    per_hour: Decimal
    vat: Decimal  # 0.20 for 20 %

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Tariff:
        return cls(
            str(settings["TARIFF_CURRENCY"]),
            Decimal(str(settings["TARIFF_PER_KWH"])),
            Decimal(str(settings["TARIFF_PER_HOUR"])),
            Decimal(str(settings["TARIFF_VAT"])),
        )


CENT = Decimal("0.01")


def _money(amount: Decimal) -> float:
    return float(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def cdr_id(device_id: str, session_id: str) -> str:
    """A CDR's id (at most 39 characters): the same for a session every time it is asked."""
    return hashlib.sha256(f"{device_id}/{session_id}".encode()).hexdigest()[:36]


def _kwh(wh: int) -> float:
    return wh / 1000  # integer Wh: exact in three decimals


def _hours(seconds: int) -> float:
    return round(seconds / 3600, 6)


def _period(start: int, hours: float, wh: int) -> dict[str, Any]:
    return {
        "start_date_time": iso(start),
        "dimensions": [
            {"type": "ENERGY", "volume": _kwh(wh)},
            {"type": "TIME", "volume": hours},
        ],
    }


def _meter_id(attributes: Mapping[str, Any]) -> str | None:
    serial = str(attributes.get("meter_serial", ""))
    return serial[:255] if serial and serial != "unknown" else None  # identity.UNKNOWN_SERIAL


def billable(s: Session) -> bool:
    return s.stop is not None and s.state != "disputed" and s.stop.ts >= s.start.ts


def cdr(
    s: Session,
    attributes: Mapping[str, Any],
    public_key: bytes,
    party: Party,
    tariff: Tariff,
    token: tuple[str, str, str] | None,
) -> dict[str, Any]:
    """The CDR of one stopped session. token is (uid, contract_id, OCPI token type) the
    operator attributes the session to (docs/charging.md), or None: free charging."""
    if not billable(s) or s.stop is None:
        raise ValueError(f"session {s.session_id} is not a billable session ({s.state})")
    cp = attributes.get("charge_point")
    location = attributes.get("location")
    if cp is None or location is None:
        raise ValueError(f"charger {s.device_id} was enrolled without its charge point and coordinates")
    points = [s.start, *s.samples, s.stop]
    # A period from each reading to the next. Hours are the differences of the rounded time
    # since the start, so that the periods' TIME adds up to total_time exactly.
    periods = [
        _period(
            a.ts,
            round(_hours(b.ts - s.start.ts) - _hours(a.ts - s.start.ts), 6),
            int(b.values["register_wh"]) - int(a.values["register_wh"]),
        )
        for a, b in zip(points, points[1:], strict=False)
        if b.ts > a.ts or b.values["register_wh"] != a.values["register_wh"]
    ] or [_period(s.start.ts, 0.0, 0)]
    energy_wh = s.energy_wh or 0
    seconds = s.stop.ts - s.start.ts
    energy_cost = tariff.per_kwh * Decimal(energy_wh) / 1000
    time_cost = tariff.per_hour * Decimal(seconds) / 3600
    total = energy_cost + time_cost

    def price(amount: Decimal) -> dict[str, float]:
        return {"excl_vat": _money(amount), "incl_vat": _money(amount * (1 + tariff.vat))}

    uid, contract_id, kind = token or ("FREE-CHARGING", "FREE-CHARGING", "AD_HOC_USER")
    out: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": cdr_id(s.device_id, s.session_id),
        "start_date_time": iso(s.start.ts),
        "end_date_time": iso(s.stop.ts),
        "session_id": s.session_id[:36],
        "cdr_token": {
            "country_code": party.country_code,
            "party_id": party.party_id,
            "uid": uid[:36],
            "type": kind,
            "contract_id": contract_id[:36],
        },
        "auth_method": "WHITELIST",  # the charger authorises a token locally (OCMF IT LOCAL)
        "cdr_location": {
            "id": cp["location_id"],
            **({"name": cp["name"]} if "name" in cp else {}),
            "address": cp["address"],
            "city": cp["city"],
            **({"postal_code": cp["postal_code"]} if "postal_code" in cp else {}),
            **({"state": cp["state"]} if "state" in cp else {}),
            "country": cp["country"],
            "coordinates": {"latitude": f"{location[0] / 1e6:.6f}", "longitude": f"{location[1] / 1e6:.6f}"},
            "evse_uid": cp["evse_uid"],
            "evse_id": cp["evse_id"],
            "connector_id": cp["connector_id"],
            "connector_standard": cp["connector_standard"],
            "connector_format": cp["connector_format"],
            "connector_power_type": cp["power_type"],
        },
        "meter_id": _meter_id(attributes),
        "currency": tariff.currency,
        "charging_periods": periods,
        "total_cost": price(total),
        "total_fixed_cost": price(Decimal(0)),
        "total_energy": _kwh(energy_wh),
        "total_energy_cost": price(energy_cost),
        "total_time": _hours(seconds),
        "total_time_cost": price(time_cost),
        "last_updated": iso(s.stop.ts),
    }
    if out["meter_id"] is None:
        del out["meter_id"]
    payload = s.ocmf_payload()
    record = s.ocmf_record(payload)
    if payload is not None and record is not None:
        # One signed value for the whole OCMF record (docs/charging.md): plain_data is the
        # payload exactly as the charger signed it, signed_data the record a driver pastes
        # (two, Start and End, where the charger signed its begin and its end apart).
        out["signed_data"] = {
            "encoding_method": "OCMF",
            "encoding_method_version": 1,
            "public_key": base64.b64encode(cose.spki_der(s.public_key or public_key)).decode(),
            # OCPI 2.2.1 names the natures Start, End and Intermediate: the record is signed at the stop
            "signed_values": [{"nature": "End", "plain_data": payload, "signed_data": record}],
        }
        if s.begin_record is not None:  # a charger that signed the begin in a record of its own
            begin = s.begin_record[1]
            out["signed_data"]["signed_values"].insert(
                0, {"nature": "Start", "plain_data": begin.payload, "signed_data": begin.text}
            )
    return out


# -- the field rules of OCPI 2.2.1 that a type check does not see -----------------------

_STRING_LIMITS = {
    "country_code": 2,
    "party_id": 3,
    "id": 39,
    "session_id": 36,
    "currency": 3,
    "meter_id": 255,
    "cdr_token.uid": 36,
    "cdr_token.contract_id": 36,
    "cdr_token.country_code": 2,
    "cdr_token.party_id": 3,
    "cdr_location.id": 36,
    "cdr_location.name": 255,
    "cdr_location.address": 45,
    "cdr_location.city": 45,
    "cdr_location.postal_code": 10,
    "cdr_location.state": 20,
    "cdr_location.country": 3,
    "cdr_location.evse_uid": 36,
    "cdr_location.evse_id": 48,
    "cdr_location.connector_id": 36,
    "signed_data.encoding_method": 36,
    "signed_data.public_key": 512,
}
_LATITUDE = re.compile(r"-?[0-9]{1,2}\.[0-9]{5,7}")
_LONGITUDE = re.compile(r"-?[0-9]{1,3}\.[0-9]{5,7}")


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    value: Any = d
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def field_errors(c: Mapping[str, Any]) -> list[str]:
    """What in a CDR breaks the field rules of OCPI 2.2.1 (lengths, enums, UTC, sums)."""
    errors = []
    for name, limit in _STRING_LIMITS.items():
        value = _get(c, name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors.append(f"{name}: at most {limit} characters")
    for name in ("start_date_time", "end_date_time", "last_updated"):
        if not UTC_TIME.fullmatch(str(c.get(name))):
            errors.append(f"{name}: not a UTC time with Z")
    for p in c.get("charging_periods", []):
        if not UTC_TIME.fullmatch(str(p.get("start_date_time"))):
            errors.append("charging_periods.start_date_time: not a UTC time with Z")
    if not c.get("charging_periods"):
        errors.append("charging_periods: at least one")
    loc = c.get("cdr_location", {})
    if loc.get("connector_standard") not in CONNECTOR_STANDARDS:
        errors.append("cdr_location.connector_standard: not a ConnectorType")
    if loc.get("connector_format") not in CONNECTOR_FORMATS:
        errors.append("cdr_location.connector_format: not a ConnectorFormat")
    if loc.get("connector_power_type") not in POWER_TYPES:
        errors.append("cdr_location.connector_power_type: not a PowerType")
    coords = loc.get("coordinates", {})
    if not _LATITUDE.fullmatch(str(coords.get("latitude"))):
        errors.append("cdr_location.coordinates.latitude: -?[0-9]{1,2}.[0-9]{5,7}")
    if not _LONGITUDE.fullmatch(str(coords.get("longitude"))):
        errors.append("cdr_location.coordinates.longitude: -?[0-9]{1,3}.[0-9]{5,7}")
    if c.get("auth_method") not in ("AUTH_REQUEST", "COMMAND", "WHITELIST"):
        errors.append("auth_method: not an AuthMethod")
    if _get(c, "cdr_token.type") not in ("AD_HOC_USER", "APP_USER", "OTHER", "RFID"):
        errors.append("cdr_token.type: not a TokenType")
    energy = sum(d["volume"] for p in c.get("charging_periods", []) for d in p["dimensions"] if d["type"] == "ENERGY")
    if round(energy * 1000) != round(c.get("total_energy", -1) * 1000):
        errors.append("total_energy: not the sum of the charging periods' ENERGY")
    signed = c.get("signed_data")
    if signed is not None:
        for v in signed.get("signed_values", []):
            if len(v.get("nature", "")) > 32 or len(v.get("plain_data", "")) > 512:
                errors.append("signed_data.signed_values: nature at most 32, plain_data at most 512 characters")
            if len(v.get("signed_data", "")) > 5000:
                errors.append("signed_data.signed_values.signed_data: at most 5000 characters")
    return errors


def envelope(data: Any, timestamp: int, status_code: int = 1000, message: str = "Success") -> dict[str, Any]:
    """The OCPI response envelope."""
    return {"data": data, "status_code": status_code, "status_message": message, "timestamp": iso(timestamp)}
