"""Tables both backends share from schema 0006 on: written once, the integer type a
parameter (SQLite INTEGER, PostgreSQL BIGINT), with the migrations' shared steps."""

from __future__ import annotations

import json

from verifier.storage import Connection

CERTIFICATES = """
CREATE TABLE certificates (
    issuance_id           TEXT PRIMARY KEY,          -- device_id/hour start
    device_id             TEXT NOT NULL,
    production_start      {int} NOT NULL,           -- the hour, Unix seconds
    bundle_id_range_start {int} NOT NULL UNIQUE,    -- certificate ids (1 Wh each), inclusive
    bundle_id_range_end   {int} NOT NULL,
    bundle_quantity       {int} NOT NULL,           -- Wh
    status                TEXT NOT NULL,
    issued_at             {int} NOT NULL,
    expires_at            {int} NOT NULL,
    ledger_idx            {int} NOT NULL,           -- the issuance entry
    fields                TEXT NOT NULL,             -- the entry's fields, JSON
    UNIQUE (device_id, production_start)
);
CREATE INDEX certificates_hour ON certificates (production_start);
CREATE TABLE certificate_progress (
    device_id       TEXT PRIMARY KEY,
    decided_through {int} NOT NULL                  -- every hour before this is decided
)"""

METERS = """
CREATE TABLE meters (
    meter_model  TEXT NOT NULL,
    meter_serial TEXT NOT NULL,
    device_id    TEXT NOT NULL,           -- the active device that measures with it
    PRIMARY KEY (meter_model, meter_serial)
)"""


def run_script(db: Connection, script: str) -> None:
    """Runs ;-separated DDL statements one by one."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def certificates(db: Connection, integer: str) -> None:
    run_script(db, CERTIFICATES.format(int=integer))


def meters_of_active_devices(db: Connection) -> None:
    # Earlier releases let two devices share a meter: the first enrolled keeps it here.
    from verifier.identity import UNKNOWN_SERIAL  # the record's rules, needed only by this step

    db.execute(METERS)
    for device_id, raw in db.execute(
        "SELECT device_id, attributes FROM devices WHERE status = 'active' ORDER BY enrolled_idx"
    ).fetchall():
        attributes = json.loads(raw)
        if attributes.get("meter_serial", UNKNOWN_SERIAL) != UNKNOWN_SERIAL:
            db.execute(
                "INSERT INTO meters (meter_model, meter_serial, device_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (attributes["meter_model"], attributes["meter_serial"], device_id),
            )
