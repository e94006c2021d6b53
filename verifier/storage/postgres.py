"""The PostgreSQL backend (psycopg 3): several stateless workers on several hosts, one database.

Statements arrive in the verifier's portable SQL with `?` parameters and are rewritten once
to psycopg's `%s`. Connections run in autocommit; a write transaction is BEGIN, then the
transaction-scoped advisory lock `LEDGER_LOCK` (the database's one write lock, as Tessera's
SQL backends hold theirs), then the work, then COMMIT. Under the lock the next ledger index
is read from `ledger_head` and advanced, a device's chain is checked and extended, and the
uniqueness checks run: two workers, on one host or two, never assign one index twice or
chain a packet twice. Readers never wait for it. A lost server becomes `storage.Unavailable`
(503 with Retry-After); the connection is then replaced on its thread's next request.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from verifier.storage import Conflict, Deferred, ReadOnly, Unavailable, describe

LEDGER_LOCK = 0x77617474  # pg_advisory_xact_lock key of write transactions ("watt")
PUBLISH_LOCK = 0x63686B70  # ... of the checkpoint publisher ("chkp")
MIGRATE_LOCK = 0x6D696772  # ... of schema migrations ("migr")


class Row(tuple[Any, ...]):
    """A result row: a tuple that also answers row["column"], as sqlite3.Row does."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _rows(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    return _row_class(tuple(c.name for c in desc))


# Up to this many rows of a table go in by INSERT within the transaction's pipeline, more by
# COPY (its text is formatted at C speed, and PostgreSQL takes it fastest).
FEW_ROWS = 32


@functools.lru_cache(maxsize=1024)
def _sql(statement: str) -> str:
    return statement.replace("%", "%%").replace("?", "%s")


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in COPY's text format (bytea as \\x hex, NULL as \\N)."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return str(value).translate(_COPY_ESCAPES)


def _copy_column(values: Sequence[Any]) -> list[str]:
    """A column's values in COPY's text format: whole columns of one type at C speed."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return list(map(str, values))
    if kinds == {bytes}:
        return ["\\\\x" + h for h in map(bytes.hex, values)]
    if kinds == {str}:
        return [v.translate(_COPY_ESCAPES) for v in values]
    return [_copy_text(v) for v in values]


_TREE_NODES = """
SELECT n.level, n.idx, n.hash
  FROM unnest(%s::bigint[], %s::bigint[]) AS k(level, idx)
  JOIN ledger_nodes n ON n.level = k.level AND n.idx = k.idx
UNION ALL
SELECT 0, l.idx, l.leaf FROM ledger l WHERE l.idx = ANY(%s::bigint[])
"""
# The same nodes as one value: their hashes concatenated in the order asked (the ids travel
# as array literals, one text each). A proof's 20 to 40 rows cost the client more to receive
# and build than the server to find; one bytea of 32-byte hashes is split in C.
_TREE_HASHES = """
SELECT count(*), string_agg(x.hash, ''::bytea ORDER BY x.o) FROM (
  SELECT k.o, n.hash FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY AS k(level, idx, o)
    JOIN ledger_nodes n ON n.level = k.level AND n.idx = k.idx
  UNION ALL
  SELECT %s + k.o, l.leaf FROM unnest(%s::bigint[]) WITH ORDINALITY AS k(idx, o) JOIN ledger l ON l.idx = k.idx
) x
"""


def _array(values: Sequence[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


class PostgresConnection:
    """storage.Connection over one psycopg connection."""

    engine = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = describe(url)
        try:
            self.raw = psycopg.connect(url, autocommit=True, row_factory=_rows, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise Unavailable(f"PostgreSQL at {self.location} did not answer: {_first_line(e)}") from e
        self.scratch: dict[str, Any] = {}
        self.deferred = Deferred()

    def _read_only(self, e: psycopg.Error) -> ReadOnly:
        return ReadOnly(f"PostgreSQL at {self.location} is read-only (a standby): {_first_line(e)}")

    def _failed(self, e: psycopg.OperationalError) -> Unavailable:
        """What a failed statement means: a deadlock the server broke (a transaction writing
        rows before the write lock met one holding it) is a Conflict, to plan again; anything
        else, a server lost or refusing."""
        if isinstance(e, psycopg.errors.DeadlockDetected):
            return Conflict(f"PostgreSQL at {self.location} broke a deadlock: {_first_line(e)}")
        return Unavailable(f"PostgreSQL at {self.location}: {_first_line(e)}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.deferred:
            self.flush()
        try:
            if params:
                return self.raw.execute(_sql(sql), params)
            return self.raw.execute(sql)  # no parameters: psycopg leaves the text as it is
        except psycopg.errors.ReadOnlySqlTransaction as e:
            raise self._read_only(e) from e
        except psycopg.OperationalError as e:
            raise self._failed(e) from e

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        if self.deferred:
            self.flush()
        try:
            with self.raw.cursor() as cur:
                cur.executemany(_sql(sql), list(params))
        except psycopg.errors.ReadOnlySqlTransaction as e:
            raise self._read_only(e) from e
        except psycopg.OperationalError as e:
            raise self._failed(e) from e

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY ... FROM STDIN of the rows, formatted here in COPY's text format: no
        per-value adaptation in Python and one statement, whatever the number of rows."""
        if self.deferred:
            self.flush()
        self._copy(table, columns, rows)

    def _copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        columns_text = [_copy_column(column) for column in zip(*rows, strict=True)]
        text = "\n".join(map("\t".join, zip(*columns_text, strict=True))) + "\n"
        try:
            with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write(text.encode())
        except psycopg.errors.ReadOnlySqlTransaction as e:
            raise self._read_only(e) from e
        except psycopg.OperationalError as e:
            raise self._failed(e) from e

    def defer_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.deferred.add_rows(table, columns, rows)

    def defer_statement(self, key: str, sql: str, params: Sequence[Any]) -> None:
        self.deferred.statements[key] = (sql, params)

    def flush(self, commit: bool = False) -> None:
        """Runs the deferred writes now: a table's many rows by COPY, its few by an INSERT in
        the one pipeline of the deferred statements (a COPY is three round trips of its own:
        one packet's transaction wrote 4 tables so, 12 round trips where 1 does)."""
        if not self.deferred:
            if commit:
                self.execute("COMMIT")
            return
        rows, statements = self.deferred.take()
        few = []
        for table, columns, r in rows:
            if len(r) > FEW_ROWS:
                self._copy(table, columns, r)
            else:
                few.append((table, columns, r))
        try:
            with self.raw.pipeline():  # one round trip (COPY cannot be pipelined)
                for table, columns, r in few:
                    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
                    self.raw.execute(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(r))}",
                        [v for row in r for v in row],
                    )
                for sql, params in statements:
                    self.raw.execute(_sql(sql), params)
                if commit:  # in the same round trip
                    self.raw.execute("COMMIT")
        except psycopg.errors.ReadOnlySqlTransaction as e:
            raise self._read_only(e) from e
        except psycopg.OperationalError as e:
            raise self._failed(e) from e

    def tree_nodes(self, nodes: Collection[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
        if self.deferred:
            self.flush()
        # One round trip for a whole proof, whatever its levels, in one statement text (so
        # psycopg prepares it once per connection): the nodes travel as two arrays.
        inner = [(level, i) for level, i in nodes if level > 0]
        leaves = [i for level, i in nodes if level == 0]
        levels, ids = [lv for lv, _ in inner], [i for _, i in inner]
        try:
            row = self.raw.execute(_TREE_HASHES, (_array(levels), _array(ids), len(inner), _array(leaves))).fetchone()
            assert row is not None  # an aggregate: always one row
            found, joined = row
            if found == len(inner) + len(leaves):  # all there: each hash in the order asked
                asked = [*inner, *((0, i) for i in leaves)]
                return [(level, i, joined[32 * k : 32 * k + 32]) for k, (level, i) in enumerate(asked)]
            rows = self.raw.execute(_TREE_NODES, (levels, ids, leaves)).fetchall()  # which are missing
        except psycopg.errors.ReadOnlySqlTransaction as e:
            raise self._read_only(e) from e
        except psycopg.OperationalError as e:
            raise self._failed(e) from e
        return [(int(level), int(i), bytes(h)) for level, i, h in rows]

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def healthy(self) -> bool:
        return not self.raw.closed and self.raw.info.status == pq.ConnStatus.OK

    def close(self) -> None:
        self.raw.close()

    def rollback_if_open(self) -> None:
        if self.healthy() and self.in_transaction:
            self.raw.execute("ROLLBACK")

    @contextmanager
    def locked(self, key: int) -> Iterator[PostgresConnection]:
        """A transaction holding advisory lock key until it ends."""
        self.scratch = {}
        self.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(key)})")  # one round trip
        try:
            yield self
            self.flush(commit=True)  # the deferred writes and COMMIT: one round trip
        except BaseException:
            self.deferred.take()
            if self.healthy() and self.in_transaction:
                self.raw.execute("ROLLBACK")
            raise

    def transaction(self) -> Any:
        return self.locked(LEDGER_LOCK)

    def publishing(self) -> Any:
        """The checkpoint publisher's lock: apart from the write lock, so ingest goes on."""
        return self.locked(PUBLISH_LOCK)

    def take_publish_lock(self) -> None:
        """Inside a write transaction: the publishing lock too (always after the write lock)."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (PUBLISH_LOCK,))

    # -- inspection, for the schema module ---------------------------------------------------

    def table_exists(self, name: str) -> bool:
        row = self.execute("SELECT to_regclass(?)", (name,)).fetchone()
        return row[0] is not None

    def columns(self, table: str) -> set[str]:
        rows = self.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,))
        return {str(r[0]) for r in rows}

    def space(self) -> list[tuple[str, str, int]]:
        """(table, table or index name, bytes on disk) for every table and index of the schema
        (a table's own bytes with its TOAST; a partition counted under its parent)."""
        rows = self.execute(
            "SELECT COALESCE(p.relname, t.relname), t.relname, pg_table_size(t.oid) FROM pg_class t"
            " LEFT JOIN pg_inherits i ON i.inhrelid = t.oid LEFT JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE t.relkind = 'r' AND t.relnamespace = current_schema()::regnamespace"
            " UNION ALL SELECT COALESCE(p.relname, t.relname), x.relname, pg_relation_size(x.oid) FROM pg_index ix"
            " JOIN pg_class x ON x.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid"
            " LEFT JOIN pg_inherits i ON i.inhrelid = t.oid LEFT JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE t.relnamespace = current_schema()::regnamespace"
        ).fetchall()
        return [(str(a), str(b), int(c)) for a, b, c in rows]


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def connect(url: str, create: bool = True, upgrade: bool = True) -> PostgresConnection:
    """Connects; with upgrade, runs the pending migrations; without create, a database that
    has no wattproof tables is an error naming it."""
    from verifier.storage import migrations

    conn = PostgresConnection(url)
    if not create and not conn.table_exists("schema_migrations"):
        conn.close()
        raise FileNotFoundError(f"no wattproof database at {describe(url)} (run `wattproof db upgrade` first)")
    if upgrade:
        migrations.upgrade(conn)
    return conn
