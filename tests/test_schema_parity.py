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
    tables = db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
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
                pk = names
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
    db = storage.connect(url, upgrade=False)
    try:  # what the previous release's runner made: its steps, recorded under their own names
        db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        for m in migrations.MIGRATIONS:
            if m.postgres is not None:
                with storage.transaction(db):
                    m.postgres(db)
                    db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (m.postgres_was, 1_700_000_000))
        assert not migrations.pending(db)  # read as the steps they were
        Meter(db, "pv-old", start=1_790_000_060).send(90)
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
    db = storage.connect(path, upgrade=False)
    try:  # the previous release: every step but the last, and data written by it
        db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)")
        for m in migrations.MIGRATIONS[:-1]:
            with storage.transaction(db):
                m.sqlite(db)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (m.name, 1_700_000_000))
        assert [m.name for m in migrations.pending(db)] == [migrations.MIGRATIONS[-1].name]
        Meter(db, "pv-old", start=1_790_000_060).send(90)
    finally:
        db.close()
    db = storage.connect(path)
    try:
        assert not migrations.pending(db)
        report = replay.audit(db, note.Signer.generate("test.example/log").verifier())
        assert report.problem is None and report.readings == 90, report.problem
    finally:
        db.close()
