"""Synthetic history for benchmarks: devices' rows written behind the ledger's back, so that a
year of data for hundreds of devices takes seconds instead of a year of ingest. Nothing in
the verifier calls these; `wattproof ledger audit` refuses a database that holds such rows
(they have no ledger entries), which is how a benchmark's database can never pass for a
real one."""

from __future__ import annotations

from collections.abc import Sequence

from verifier.devices import records
from verifier.devices.records import EDGE_COLUMNS
from verifier.storage import Connection


def copy_device(db: Connection, source: str, target: str) -> None:
    """Inside a write transaction: source's packets, register edges and chain head as target's
    own (target enrolled already); of the packets' readings, only the first and the last
    packet's (an empty array in the others: a year of copies stays small)."""
    for table in ("register_edges", "packets", "chain_heads"):
        columns = ", ".join(c for c in db.columns(table) if c != "device_id")
        db.execute(
            f"INSERT INTO {table} (device_id, {columns}) SELECT ?, {columns} FROM {table} WHERE device_id = ?",
            (target, source),
        )
    db.execute(
        "UPDATE packets SET readings = ? WHERE device_id = ?"
        " AND seq > (SELECT MIN(seq) FROM packets WHERE device_id = ?)"
        " AND seq < (SELECT MAX(seq) FROM packets WHERE device_id = ?)",
        (records.pack([]), target, target, target),
    )


def add_edges(db: Connection, device_id: str, rows: Sequence[Sequence[int | str]], last_reading: bytes) -> None:
    """Inside a write transaction: register edges (EDGE_COLUMNS rows) for a device that sent
    its first reading already, and last_reading as its last reading and last meter reading."""
    db.insert_rows("register_edges", EDGE_COLUMNS, rows)
    db.execute(
        "UPDATE chain_heads SET reading = ?, meter = ? WHERE device_id = ?", (last_reading, last_reading, device_id)
    )
