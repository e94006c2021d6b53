"""Granular certificates: one bundle per producer device and complete, measured hour.

Field names follow the EnergyTag Granular Certificate Scheme's registry API (v2, as the
Future Energy Associates reference registry names them). A certificate is one Wh (face
value 1 Wh); a bundle is a range of consecutive certificate ids, so that a part of it can
later move on its own. docs/certificates.md says when an hour is issued and why not.

Issuance runs inside a write transaction (`issue_pending`): the next bundle ids and each
device's progress are read and advanced under the database's write lock, and a device-hour
has at most one bundle (a primary key), so several workers never issue one hour twice.
Every issuance is a ledger entry; `wattproof ledger audit` derives each quantity again from
the readings (verifier/audit/replay.py).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from verifier.certificates import registry
from verifier.devices import records
from verifier.jobs import Periodic
from verifier.log import ledger
from verifier.storage import Connection, transaction
from verifier.wire.packet import decode_reading

log = logging.getLogger("wattproof.verifier")

HOUR = 3600
CAPACITY_SLACK = 1.1  # never more than capacity x 1 h x 1.1 in one hour
FACE_VALUE_WH = 1
ENERGY_CARRIER = "electricity"
STATUS_ACTIVE = "Active"
DEFAULT_EXPIRY_S = 2 * 365 * 86400  # settings CERTIFICATE_EXPIRY_S
# An hour is decided once readings this far past its end have arrived: anomalies of the
# readings next to it (which make it disputed) are known by then (records.GAP_S).
SETTLE_S = records.GAP_S
ENERGY_SOURCES = {  # technology -> energy source
    "solar-pv": "solar",
    "wind": "wind",
    "hydro": "hydro",
    "biomass": "biomass",
    "geothermal": "geothermal",
    "chp": "gas",
    "battery": "storage",
}
_COUNTRY = re.compile(r"([A-Z]{2})(?:-|$)")


@dataclass(frozen=True)
class Skipped:
    """An hour that was decided without a bundle, and why (for operators' reports)."""

    device_id: str
    start: int
    reason: str


def hour_key(device_id: str, start: int) -> str:
    return f"{device_id}/{start}"


def bundle_fields(
    device_id: str, attributes: dict[str, Any], start: int, quantity: int, range_start: int, issued_at: int,
    issuing_body: str, expiry_s: int, account_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The bundle as the ledger entry records it (everything but its ledger index); issued to
    the account that owns the device (none: held by the issuing body)."""
    technology = str(attributes.get("technology", "unknown"))
    grid_area = str(attributes.get("grid_area", ""))
    country = _COUNTRY.match(grid_area)
    return {
        "issuance_id": hour_key(device_id, start),
        "bundle_id_range_start": range_start,
        "bundle_id_range_end": range_start + quantity - 1,
        "bundle_quantity": quantity,
        "face_value": FACE_VALUE_WH,
        "energy_carrier": ENERGY_CARRIER,
        "energy_source": ENERGY_SOURCES.get(technology, technology),
        "technology": technology,
        "device_id": device_id,
        "device_capacity_w": int(attributes["capacity_w"]),
        "device_location": list(attributes.get("location", [])),
        "grid_area": grid_area,
        "country": country.group(1) if country else "",
        "production_starting_interval": start,
        "production_ending_interval": start + HOUR,
        "issuance_date": issued_at,
        "issuing_body": issuing_body,
        "status": STATUS_ACTIVE,
        "expiry_date": issued_at + expiry_s,
        **({} if account_id is None else {"account_id": account_id}),
    }


def hour_quantity(db: Connection, device_id: str, attributes: dict[str, Any], start: int) -> tuple[int, str]:
    """The Wh one hour may be issued for (0 when none), and why none: the hour's measured
    generation in whole Wh (records.energy), never for a hour that is not "measured", never
    above capacity x 1 h x CAPACITY_SLACK. The audit calls this too."""
    register = records.generation_register({"role": "producer", **attributes})
    assert register is not None
    (hour,) = records.energy(db, device_id, start, start + HOUR, "1h", register)
    if hour["quality"] != "measured":
        return 0, hour["quality"]
    quantity = int(hour["generation_wh"])
    if quantity <= 0:
        return 0, "no generation"
    if quantity > int(attributes["capacity_w"]) * CAPACITY_SLACK:
        return 0, f"{quantity} Wh exceeds the capacity of {attributes['capacity_w']} W"
    return quantity, ""


def issue_pending(
    db: Connection,
    now: int,
    issuing_body: str,
    expiry_s: int = DEFAULT_EXPIRY_S,
    device_ids: list[str] | None = None,
    budget: int = 0,
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Inside a write transaction: issues every complete hour of every active producer (or
    of device_ids) not decided yet. Returns the bundles issued and the hours skipped. With a
    budget, decides at most that many hours (a device's long history is then decided over
    several transactions, so that none holds the write lock long: see issue_all)."""
    if not db.in_transaction:
        raise RuntimeError("certificates.issue_pending outside a write transaction")
    # Everything read first, in few statements (each a round trip on PostgreSQL): the
    # producers with their last meter reading, and how far each is decided.
    wanted = None if device_ids is None else set(device_ids)
    producers = [p for p in records.producers_last_meter(db) if wanted is None or p[0] in wanted]
    decided = {str(r[0]): int(r[1]) for r in db.execute("SELECT device_id, decided_through FROM certificate_progress")}
    owners = {str(r[0]): str(r[1]) for r in db.execute("SELECT device_id, account_id FROM device_accounts")}
    (next_id,) = db.execute("SELECT COALESCE(MAX(bundle_id_range_end), 0) + 1 FROM certificates").fetchone()
    next_id = int(next_id)
    issued: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    planned: list[tuple[str, list[dict[str, Any]]]] = []  # per device, its new bundles' fields
    progress: list[tuple[str, int]] = []
    for device_id, attributes, meter in producers:
        last_ts = decode_reading(meter).ts
        complete_through = (last_ts - SETTLE_S) // HOUR * HOUR  # hours ending at or before this
        start = decided.get(device_id)
        if start is None:  # never looked at: from the hour of its first meter reading
            first = records.first_meter_time(db, device_id)
            assert first is not None, "a producer with a last meter reading has a first"
            start = first // HOUR * HOUR
        elif start + HOUR > complete_through:
            continue  # nothing new complete: the usual case on an interval
        hour, bundles_of_device = start, []
        while hour + HOUR <= complete_through and not (budget and len(issued) + len(skipped) >= budget):
            quantity, why = hour_quantity(db, device_id, attributes, hour)
            if quantity:
                fields = bundle_fields(
                    device_id, attributes, hour, quantity, next_id, now, issuing_body, expiry_s, owners.get(device_id)
                )
                bundles_of_device.append(fields)
                issued.append(fields)
                next_id += quantity
            else:
                skipped.append(Skipped(device_id, hour, why))
            hour += HOUR
        if bundles_of_device:
            planned.append((device_id, bundles_of_device))
        if hour != start or device_id not in decided:
            progress.append((device_id, hour))
    # Then the writes: each device's entries in one append, the bundles in one statement.
    rows_out, bundle_rows = [], []
    for device_id, fields_list in planned:
        first_index = ledger.append_many(
            db, "issuance", device_id, [ledger.encode_entry("issuance", f) for f in fields_list]
        )
        for offset, fields in enumerate(fields_list):
            fields["ledger_index"] = first_index + offset
            rows_out.append(
                (
                    fields["issuance_id"],
                    device_id,
                    fields["production_starting_interval"],
                    fields["bundle_id_range_start"],
                    fields["bundle_id_range_end"],
                    fields["bundle_quantity"],
                    STATUS_ACTIVE,
                    now,
                    fields["expiry_date"],
                    fields["ledger_index"],
                    json.dumps({k: v for k, v in fields.items() if k != "ledger_index"}),
                )
            )
            bundle_rows.append(
                registry.bundle_row(
                    registry.Bundle(
                        fields["bundle_id_range_start"], fields["bundle_id_range_end"], fields["issuance_id"],
                        device_id, fields["production_starting_interval"], fields.get("account_id"), registry.ACTIVE,
                        fields["expiry_date"], None, fields["ledger_index"],
                    )
                )
            )  # fmt: skip
    if rows_out:
        db.insert_rows(
            "certificates",
            (
                "issuance_id", "device_id", "production_start", "bundle_id_range_start", "bundle_id_range_end",
                "bundle_quantity", "status", "issued_at", "expires_at", "ledger_idx", "fields",
            ),
            rows_out,
        )  # fmt: skip
        db.insert_rows("bundles", registry.BUNDLE_COLUMNS, bundle_rows)
    if progress:
        db.executemany(
            "INSERT INTO certificate_progress (device_id, decided_through) VALUES (?, ?)"
            " ON CONFLICT (device_id) DO UPDATE SET decided_through = excluded.decided_through",
            progress,
        )
    return issued, skipped


ROUND_HOURS = 2000  # hours decided per transaction by issue_all


def issue_all(
    db: Connection, now: int, issuing_body: str, expiry_s: int = DEFAULT_EXPIRY_S, device_ids: list[str] | None = None
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """issue_pending until nothing is left, ROUND_HOURS decisions a transaction (each its own
    commit: ingest waits for the write lock one round at a time, never for a whole backlog)."""
    issued: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    while True:
        with transaction(db):
            more, passed = issue_pending(db, now, issuing_body, expiry_s, device_ids, budget=ROUND_HOURS)
        issued += more
        skipped += passed
        if len(more) + len(passed) < ROUND_HOURS:
            return issued, skipped


class IntervalIssuer(Periodic):
    """Issues the complete hours every interval seconds (one per server process; several
    processes at once issue each hour once: issue_pending runs under the write lock)."""

    def __init__(self, connect: Any, issuing_body: str, expiry_s: int, interval: float) -> None:
        def work(db: Connection) -> None:
            issued, _ = issue_all(db, int(time.time()), issuing_body, expiry_s)
            if issued:
                log.info("issued %d certificate bundles, %d Wh", len(issued), sum(b["bundle_quantity"] for b in issued))

        super().__init__("certificate issuer", connect, work, interval)


def first_issued(db: Connection) -> int | None:
    """The ledger index of the first bundle issued, or None before any."""
    row = db.execute("SELECT MIN(ledger_idx) FROM certificates").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def decided_through(db: Connection, device_id: str) -> int:
    """The end of the last hour of a producer that issuance has decided (0: none yet)."""
    row = db.execute("SELECT decided_through FROM certificate_progress WHERE device_id = ?", (device_id,)).fetchone()
    return int(row[0]) if row else 0


def issued_for(db: Connection, device_id: str) -> list[int]:
    """The ledger indexes of a producer's issued bundles, by hour."""
    rows = db.execute(
        "SELECT ledger_idx FROM certificates WHERE device_id = ? ORDER BY production_start", (device_id,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def issued_by(db: Connection, ledger_index: int) -> tuple[str, str, int] | None:
    """(issuance id, device, production start) of the bundle a ledger entry issued, or None."""
    row = db.execute(
        "SELECT issuance_id, device_id, production_start FROM certificates WHERE ledger_idx = ?", (ledger_index,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), int(row[2]))
