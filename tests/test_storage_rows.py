"""Rows written in bulk (insert_rows and deferred rows) arrive complete and exact on each
engine, whatever their count: SQLite writes them in blocks of several rows per statement,
PostgreSQL with COPY, and a count that is no multiple of a block leaves a remainder."""

from __future__ import annotations

import pytest

from tests.conftest import Database
from verifier import storage

COLUMNS = ("device_id", "number", "seq", "kind", "ts", "quality", "raw")
COUNTS = (1, 7, 8, 9, 15, 63, 64, 65, 120, 127, 129, 1024, 1031)


def _rows(device: str, n: int) -> list[tuple[object, ...]]:
    return [(device, i, i // 64, 1, 1_700_000_000 + 60 * i, i % 3, bytes([i % 256]) * (1 + i % 40)) for i in range(n)]


@pytest.mark.parametrize("deferred", [False, True], ids=["insert_rows", "defer_rows"])
def test_every_row_arrives_exactly(database: Database, deferred: bool) -> None:
    conn = storage.connect(database.target)
    integer, blob = ("INTEGER", "BLOB") if conn.engine == "sqlite" else ("BIGINT", "BYTEA")
    conn.execute(
        f"CREATE TABLE bulk_rows (device_id TEXT NOT NULL, number {integer} NOT NULL, seq {integer} NOT NULL,"
        f" kind {integer} NOT NULL, ts {integer} NOT NULL, quality {integer} NOT NULL, raw {blob} NOT NULL,"
        " PRIMARY KEY (device_id, number))"
    )  # a row per reading, as readings were once kept: many small rows
    try:
        with storage.transaction(conn):
            for n in COUNTS:
                write = conn.defer_rows if deferred else conn.insert_rows
                write("bulk_rows", COLUMNS, _rows(f"dev-{n}", n))
        for n in COUNTS:
            stored = conn.execute(
                "SELECT device_id, number, seq, kind, ts, quality, raw FROM bulk_rows WHERE device_id = ?"
                " ORDER BY number",
                (f"dev-{n}",),
            ).fetchall()
            assert [(*row[:6], bytes(row[6])) for row in stored] == _rows(f"dev-{n}", n), n
    finally:
        conn.close()
