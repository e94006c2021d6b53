"""The storage seam: what the ledger, devices, packets, readings and API keys need of a database.

Two backends implement `Connection`: SQLite (`storage.sqlite`, the embedded default: one
file, WAL, synchronous=FULL) and PostgreSQL (`storage.postgres`, psycopg 3: several workers
on several hosts share one database). The rest of the verifier writes portable SQL (`?`
parameters, `ON CONFLICT DO NOTHING`, savepoints) against this interface; what differs
between engines (types, pragmas, locks, placeholders, how schema is inspected and migrated)
lives in the backends and their schema modules only.

A write transaction (`transaction(conn)`) is all or nothing and holds the database's one
write lock: the next ledger index, a device's chain and every uniqueness check are decided
under it, on one host or many. Readers never take it.

Importing this package loads no database driver: a backend is imported when it connects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol


class Unavailable(Exception):
    """The database cannot be reached or refuses work right now: answer 503, retry later."""


class Conflict(Unavailable):
    """A write transaction met another one's rows (a unique key taken by rows written before
    the write lock, or a deadlock the database broke): nothing of it was written; plan again
    and retry. Where nobody retries, it is answered as Unavailable is."""


class ReadOnly(Exception):
    """A write on a read-only database: a PostgreSQL hot standby serving reads (setting
    READ_DATABASE). The request runs again on the primary."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One connection of one thread. Rows are tuples that also take column names (row["x"])."""

    engine: str  # "sqlite" or "postgresql"
    location: str  # the file or the server (no password), for messages
    # What a write transaction learnt under its lock (the ledger's tail, chains it extended),
    # for the rest of that transaction only: emptied when the next one begins.
    scratch: dict[str, Any]

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """INSERT of many rows at once, the backend's fastest way."""
        ...

    def defer_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """insert_rows, held until the transaction's next statement or its commit, so that
        the rows a transaction adds to one table go in together (one statement per table
        for a whole batch). Any statement run meanwhile sees them: it runs after them."""
        ...

    def defer_statement(self, key: str, sql: str, params: Sequence[Any]) -> None:
        """A statement run after the deferred rows; a later one with the same key replaces it
        (a counter advanced by every packet of a batch is written once)."""
        ...

    def flush(self) -> None:
        """Runs the deferred writes now (every statement and the commit do it first)."""
        ...

    def tree_nodes(self, nodes: Collection[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
        """(level, index, hash) of stored ledger tree nodes (level 0: the entries' leaf hashes),
        in the fewest round trips the backend allows; nodes not stored are left out."""
        ...

    @property
    def in_transaction(self) -> bool: ...

    def transaction(self) -> AbstractContextManager[Connection]:
        """BEGIN ... COMMIT under the write lock (ROLLBACK on any exception)."""
        ...

    def publishing(self) -> AbstractContextManager[Connection]: ...

    def take_publish_lock(self) -> None: ...

    def healthy(self) -> bool: ...

    def rollback_if_open(self) -> None:
        """Ends a transaction a failed caller left open, if any (nothing of it is kept)."""
        ...

    def close(self) -> None: ...

    def table_exists(self, name: str) -> bool: ...

    def columns(self, table: str) -> set[str]: ...

    def space(self) -> list[tuple[str, str, int]]:
        """(table, table or index name, bytes on disk): what a reading costs (bench/fleet.py)."""
        ...


class Deferred:
    """A transaction's deferred writes, in the order their tables first appeared (so that a
    row is inserted after the rows it refers to)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, tuple[str, ...]], list[Sequence[Any]]] = {}
        self.statements: dict[str, tuple[str, Sequence[Any]]] = {}

    def __bool__(self) -> bool:
        return bool(self.rows or self.statements)

    def add_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.rows.setdefault((table, tuple(columns)), []).extend(rows)

    def take(self) -> tuple[list[tuple[str, tuple[str, ...], list[Sequence[Any]]]], list[tuple[str, Sequence[Any]]]]:
        rows = [(table, columns, r) for (table, columns), r in self.rows.items() if r]
        statements = list(self.statements.values())
        self.rows, self.statements = {}, {}
        return rows, statements


def is_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def describe(target: str | Path) -> str:
    """The database named for a person: a file path, or a server URL without its password."""
    if not is_url(target):
        return str(target)
    from urllib.parse import urlsplit

    parts = urlsplit(str(target))
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{host}{port}{parts.path}"


def connect(target: str | Path, create: bool = True, upgrade: bool = True) -> Connection:
    """Opens the database named by target: a postgresql:// URL, else a SQLite file path.

    With create, a missing SQLite file is made (a PostgreSQL database must exist; its tables
    are made by the migrations). With upgrade, pending migrations run first. Without create,
    a database with no tables is an error naming it (read-only commands never make one)."""
    if is_url(target):
        from verifier.storage import postgres

        return postgres.connect(str(target), create=create, upgrade=upgrade)
    from verifier.storage import sqlite

    return sqlite.connect(target, create=create, upgrade=upgrade)


def transaction(conn: Connection) -> AbstractContextManager[Connection]:
    """BEGIN ... COMMIT under the write lock, or ROLLBACK on any exception."""
    return conn.transaction()


def schema(conn: Connection) -> Any:
    """The schema migrations (both engines'): MIGRATIONS, applied(conn), pending(conn), upgrade(conn)."""
    from verifier.storage import migrations

    return migrations
