"""Storage that holds years: each packet row keeps its readings (no row per reading); on
PostgreSQL the packets are partitioned by month, a month can be detached (archived) and
attached again, and a search by time reads only the months it needs; the rows derived from the
evidence (chain heads, register edges) are written again by `wattproof db rebuild` exactly as
ingest wrote them."""

from __future__ import annotations

import calendar
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ENGINES, Database, make_database
from tests.meters import Meter
from verifier import storage
from verifier.audit import replay
from verifier.devices import derived, records
from verifier.log import note
from verifier.storage import migrations, tables

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]
AUG_31 = calendar.timegm((2026, 8, 31, 12, 0, 0))
SEP_1 = calendar.timegm((2026, 9, 1, 0, 0, 0))


def _derived(db: storage.Connection) -> dict[str, list[Any]]:
    out = {}
    for table, order in (("chain_heads", "device_id"), ("register_edges", "device_id, t"), ("edges_unordered", "1")):
        rows = db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        out[table] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_the_derived_rows_are_rebuilt_from_the_packets_as_ingest_wrote_them(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database: Database = make_database(engine, tmp_path, request)
    db = storage.connect(database.target)
    log = note.Signer.generate("test.example/log").verifier()
    try:
        Meter(db, "pv-1", start=AUG_31).send(24 * 60, per=15)
        Meter(db, "pv-2", start=AUG_31 + 3).send(120, per=64)
        Meter(db, "home-1", role="consumer", start=AUG_31 + 7).send(600, per=10)
        before = _derived(db)
        energy = records.intervals(db, "pv-1", AUG_31, AUG_31 + 86400, 3600)
        assert before["register_edges"] and len(before["chain_heads"]) == 3
        with storage.transaction(db):
            for table in ("register_edges", "edges_unordered", "chain_heads"):
                db.execute(f"DELETE FROM {table}")
        assert not replay.audit(db, log).ok  # the audit misses them
        done = derived.rebuild(db)
        assert (done.devices, done.packets, done.readings) == (3, 96 + 2 + 60, 24 * 60 + 120 + 600)
        assert _derived(db) == before
        assert records.intervals(db, "pv-1", AUG_31, AUG_31 + 86400, 3600) == energy
        report = replay.audit(db, log)
        assert report.ok, report.problem
    finally:
        db.close()
    # The same from the command line, on a database whose derived rows are gone.
    db = storage.connect(database.target)
    with storage.transaction(db):
        db.execute("DELETE FROM register_edges")
    db.close()
    config = ["--database", database.target] if engine == "postgresql" else ["--db", database.target]
    done_cli = subprocess.run([*WATTPROOF, "db", "rebuild", *config], capture_output=True, text=True, timeout=120)
    assert done_cli.returncode == 0, done_cli.stderr
    assert "rebuilt from" in done_cli.stdout and "3 chain heads" in done_cli.stdout, done_cli.stdout
    db = storage.connect(database.target)
    try:
        assert _derived(db) == before
    finally:
        db.close()


def test_postgresql_keeps_the_packets_by_month_and_a_month_detaches_and_comes_back(pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    db = storage.connect(url)
    log = note.Signer.generate("test.example/log").verifier()
    try:
        Meter(db, "pv-1", start=AUG_31).send(24 * 60, per=15)  # 12 hours in August, 12 in September
        sizes = {name: rows for name, rows, _ in tables.partition_sizes(db)}
        assert sizes["packets_default"] == 96  # older than the months made at start-up
        with storage.transaction(db):
            made = tables.ensure_months(db, since=AUG_31)
        assert {"packets_2026_08", "packets_2026_09"} <= set(made)
        sizes = {name: rows for name, rows, _ in tables.partition_sizes(db)}
        assert (sizes["packets_2026_08"], sizes["packets_2026_09"], sizes["packets_default"]) == (48, 48, 0)
        # A search by time in September reads September's partition only.
        plan = "\n".join(
            str(r[0])
            for r in db.execute(
                "EXPLAIN SELECT readings FROM packets WHERE device_id = 'pv-1' AND first_ts >= ? AND first_ts <= ?",
                (SEP_1 + 3600, SEP_1 + 7200),
            )
        )
        assert "packets_2026_09" in plan and "packets_2026_08" not in plan, plan
        september = records.intervals(db, "pv-1", SEP_1, SEP_1 + 12 * 3600, 3600)
        # August archived: detached (then dumped and dropped, docs/operations.md), September still answers.
        db.execute("ALTER TABLE packets DETACH PARTITION packets_2026_08")
        assert records.intervals(db, "pv-1", SEP_1, SEP_1 + 12 * 3600, 3600) == september
        report = replay.audit(db, log)
        assert not report.ok and "no packets row" in str(report.problem), report.problem
        start, end = calendar.timegm((2026, 8, 1, 0, 0, 0)), SEP_1
        db.execute(f"ALTER TABLE packets ATTACH PARTITION packets_2026_08 FOR VALUES FROM ({start}) TO ({end})")
        report = replay.audit(db, log)
        assert report.ok and report.readings == 24 * 60, report.problem
        # A server that runs on (it looks every day): months ahead of a later clock, once.
        later = calendar.timegm((2027, 8, 15, 0, 0, 0))
        made = migrations.keep_partitions(db, now=later)
        assert made[-4:] == ["packets_2027_08", "packets_2027_09", "packets_2027_10", "packets_2027_11"], made
        assert migrations.keep_partitions(db, now=later) == []
    finally:
        db.close()
