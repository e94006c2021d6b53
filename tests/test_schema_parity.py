"""One migration list makes one schema on both engines: built from zero on SQLite and on
PostgreSQL, the tables, their columns (type class and nullability), primary keys, unique
constraints and indexes (columns, uniqueness, partial or not) are the same. And a PostgreSQL
database made before the one numbering (its steps recorded under their own names) upgrades
to it and audits clean."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.meters import Meter
from verifier import storage
from verifier.audit import replay
from verifier.log import note
from verifier.storage import migrations

TYPES = {"integer": "int", "bigint": "int", "blob": "bytes", "bytea": "bytes", "text": "text"}
# PostgreSQL's partitioned tables carry their partition key in their primary key: the one
# difference between the engines' schemas (packets by month of their first reading).
PARTITION_KEYS = {("packets", "first_ts")}
AFTER_0019 = [m.name for m in migrations.MIGRATIONS if m.name >= "0020"]


def undo_readings_in_packets(db: storage.Connection) -> None:
    """What a database of the release before 0020 holds for the same data: a row per reading,
    packet rows without them (not partitioned), chain heads without their span."""
    from verifier.devices import records
    from verifier.wire.packet import decode_reading

    packets = db.execute(
        "SELECT device_id, seq, header_hash, ledger_idx, reading_count, first_number, first_ts, last_ts, received_at,"
        " readings FROM packets"
    ).fetchall()
    db.execute("DROP TABLE packets")
    script = migrations.ROUND_1 if db.engine == "sqlite" else migrations.POSTGRES_0005
    for statement in script.split(";"):
        if " packets (" in statement or " readings" in statement:
            db.execute(statement.replace("IF NOT EXISTS ", ""))
    for *row, blob in packets:
        db.execute("INSERT INTO packets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        for raw in records.unpack(blob):
            r = decode_reading(raw)
            db.execute("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (row[0], r.number, row[1], r.kind, r.ts, r.quality, raw))  # fmt: skip
    db.execute("ALTER TABLE chain_heads DROP COLUMN span")
    db.execute("DELETE FROM schema_migrations WHERE name >= '0020'")
    if db.engine == "postgresql":  # 0021: the leaf hashes' index a B-tree again
        db.execute("DROP INDEX ledger_leaf")
        db.execute("CREATE INDEX ledger_leaf ON ledger (leaf)")
    db.execute("DROP INDEX ledger_device")  # 0022: with the packet entries again
    db.execute("CREATE INDEX ledger_device ON ledger (device_id, idx)")


def _sqlite_schema(db: storage.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (table,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall():
        cols = db.execute(f"PRAGMA table_info({table})").fetchall()
        columns = {str(c[1]): (TYPES[str(c[2]).lower()], bool(c[3]) or bool(c[5])) for c in cols}
        pk = tuple(str(c[1]) for c in sorted(cols, key=lambda c: c[5]) if c[5])
        unique, indexes = set(), {}
        for ix in db.execute(f"PRAGMA index_list({table})").fetchall():
            name, is_unique, origin, partial = str(ix[1]), bool(ix[2]), str(ix[3]), bool(ix[4])
            names = tuple(str(r[2]) for r in db.execute(f"PRAGMA index_info({name})").fetchall())
            if origin == "u":
                unique.add(names)
            elif origin == "c":
                indexes[name] = (names, is_unique, partial)
        out[str(table)] = {"columns": columns, "pk": pk, "unique": unique, "indexes": indexes}
    return out


def _postgres_schema(db: storage.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tables = db.execute(  # a partitioned table once, not each of its partitions
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT IN"
        " (SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid) ORDER BY table_name"
    ).fetchall()
    for (table,) in tables:
        cols = db.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = ?",
            (table,),
        ).fetchall()
        columns = {str(c[0]): (TYPES[str(c[1]).lower()], c[2] == "NO") for c in cols}
        pk: tuple[str, ...] = ()
        unique, indexes = set(), {}
        for name, definition, constraint in db.execute(
            "SELECT i.indexname, i.indexdef, c.contype FROM pg_indexes i"
            " LEFT JOIN pg_constraint c ON c.conname = i.indexname"
            " WHERE i.schemaname = 'public' AND i.tablename = ?",
            (table,),
        ).fetchall():
            names = tuple(n.strip() for n in re.search(r"\((.*?)\)", str(definition))[1].split(","))  # type: ignore[index]
            if constraint == "p":
                pk = tuple(n for n in names if (table, n) not in PARTITION_KEYS)
            elif constraint == "u":
                unique.add(names)
            else:
                indexes[str(name)] = (names, " UNIQUE " in str(definition), " WHERE " in str(definition))
        out[str(table)] = {"columns": columns, "pk": pk, "unique": unique, "indexes": indexes}
    return out


def test_both_engines_build_the_same_schema(tmp_path: Path, pg_cluster: Any) -> None:
    lite = storage.connect(str(tmp_path / "v.sqlite"))
    pg = storage.connect(pg_cluster.new_database())
    try:
        a, b = _sqlite_schema(lite), _postgres_schema(pg)
        assert not migrations.pending(lite) and not migrations.pending(pg)
    finally:
        lite.close()
        pg.close()
    assert sorted(a) == sorted(b), set(a) ^ set(b)
    assert len(a) > 20  # the comparison sees the tables (it can fail)
    differ = {t: (a[t], b[t]) for t in a if a[t] != b[t]}
    assert not differ, "\n".join(f"{t}:\n  sqlite   {x}\n  postgres {y}" for t, (x, y) in differ.items())


def test_the_comparison_sees_a_difference(tmp_path: Path, pg_cluster: Any) -> None:
    lite = storage.connect(str(tmp_path / "v.sqlite"))
    try:
        lite.execute("CREATE INDEX devices_role ON devices (role)")
        assert "devices_role" in _sqlite_schema(lite)["devices"]["indexes"]
    finally:
        lite.close()


def test_a_postgresql_database_of_the_previous_numbering_upgrades_and_audits_clean(pg_cluster: Any) -> None:
    url = pg_cluster.new_database()
    db = storage.connect(url)
    try:  # data, then what the previous release's runner left: its steps under their own names
        Meter(db, "pv-old", start=1_790_000_060).send(90)
        with storage.transaction(db):
            undo_readings_in_packets(db)
            for m in migrations.MIGRATIONS:
                if m.postgres_was is not None:
                    db.execute("UPDATE schema_migrations SET name = ? WHERE name = ?", (m.postgres_was, m.name))
        assert [m.name for m in migrations.pending(db)] == AFTER_0019  # the rest as they were
    finally:
        db.close()
    log = note.Signer.generate("test.example/log")
    db = storage.connect(url)  # the upgrade renumbers
    try:
        names = sorted(str(r[0]) for r in db.execute("SELECT name FROM schema_migrations"))
        assert names == [m.name for m in migrations.MIGRATIONS]
        report = replay.audit(db, log.verifier())
        assert report.problem is None, report.problem
        assert report.packets == 2 and report.readings == 90
    finally:
        db.close()


def test_a_sqlite_database_of_the_previous_release_upgrades_and_audits_clean(tmp_path: Path) -> None:
    path = str(tmp_path / "v.sqlite")
    db = storage.connect(path)
    try:  # data, then the previous release's schema for it: every step but the last
        Meter(db, "pv-old", start=1_790_000_060).send(90)
        with storage.transaction(db):
            undo_readings_in_packets(db)
        assert [m.name for m in migrations.pending(db)] == AFTER_0019
    finally:
        db.close()
    db = storage.connect(path)
    try:
        assert not migrations.pending(db)
        assert not db.table_exists("readings")
        report = replay.audit(db, note.Signer.generate("test.example/log").verifier())
        assert report.problem is None and report.readings == 90, report.problem
    finally:
        db.close()
