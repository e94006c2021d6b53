"""Synthetic history for benchmarks: devices' rows written behind the ledger's back, so that a
year of data for hundreds of devices takes seconds instead of a year of ingest. Nothing in
the verifier calls these; `wattproof ledger audit` refuses a database that holds such rows
(they have no ledger entries), which is how a benchmark's database can never pass for a
real one."""

from __future__ import annotations

from collections.abc import Sequence

from verifier.devices.records import EDGE_COLUMNS
from verifier.storage import Connection


def copy_device(db: Connection, source: str, target: str) -> None:
    """Inside a write transaction: source's packets, register edges and chain head, and its
    first and last readings, as target's own (target enrolled already)."""
    ends = " AND number IN (SELECT MIN(number) FROM readings WHERE device_id = ?"
    ends += " UNION SELECT MAX(number) FROM readings WHERE device_id = ?)"
    for table, where in (("register_edges", ""), ("packets", ""), ("chain_heads", ""), ("readings", ends)):
        columns = ", ".join(c for c in db.columns(table) if c != "device_id")
        db.execute(
            f"INSERT INTO {table} (device_id, {columns}) SELECT ?, {columns} FROM {table} WHERE device_id = ?{where}",
            (target, source, *([source, source] if where else [])),
        )


def add_edges(db: Connection, device_id: str, rows: Sequence[Sequence[int | str]], last_reading: bytes) -> None:
    """Inside a write transaction: register edges (EDGE_COLUMNS rows) for a device that sent
    its first reading already, and last_reading as its last reading and last meter reading."""
    db.insert_rows("register_edges", EDGE_COLUMNS, rows)
    db.execute(
        "UPDATE chain_heads SET reading = ?, meter = ? WHERE device_id = ?", (last_reading, last_reading, device_id)
    )
