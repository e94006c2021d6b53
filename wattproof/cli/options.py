"""What several commands share, declared once: where the verifier's database and its log
key are (--db, --database, --config, --log-key), the settings read from them, a connection to
a database that must exist already, one write transaction with its refusal, a listening
socket, and the times and spans options take."""

from __future__ import annotations

import functools
import importlib
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from verifier.wire import times

FILE = click.Path(path_type=Path)


class Declared(click.Choice[Any]):
    """A choice among an area's own enumeration (declared once there: `module.NAME`), read
    from the area when an option is parsed or its help shown, not when the command line loads."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[Any, ...]:
        module, name = self.where.rsplit(".", 1)
        return tuple(getattr(importlib.import_module(module), name))

    @choices.setter
    def choices(self, _: Any) -> None:
        raise AttributeError("a declared choice is the area's own")


@dataclass(frozen=True)
class Where:
    """The options that name a verifier's database: a SQLite file or a PostgreSQL URL, the
    settings file, the log's key file."""

    db: Path | None = None
    database: str | None = None
    config_file: Path | None = None
    log_key: Path | None = None

    def config(self) -> dict[str, object]:
        """Settings as the server reads them (verifier.settings.load), these options on top."""
        from verifier import settings

        if self.database and self.db:
            raise SystemExit("wattproof: give --db FILE (SQLite) or --database postgresql://... (PostgreSQL), not both")
        if self.database and not self.database.startswith(("postgresql://", "postgres://")):
            raise SystemExit(
                f"wattproof: --database takes a postgresql:// URL, not {self.database!r} (a SQLite file is --db FILE)"
            )
        overrides: dict[str, Any] = {"DATABASE": self.database or (str(self.db) if self.db else None)}
        if self.log_key:
            overrides["LOG_KEY_FILE"] = str(self.log_key)
        config = settings.load(self.config_file, overrides)
        if not config["DATABASE"]:
            raise SystemExit(
                "wattproof: say which database: --db FILE or --database postgresql://... (or DATABASE in --config"
                " FILE, or WATTPROOF_DATABASE)"
            )
        return config

    def existing(self, upgrade: bool = True) -> tuple[dict[str, object], Any]:
        """For commands that only read or add to an existing verifier: its settings and a
        connection. A mistyped path is an error, never a new empty database."""
        from verifier import storage

        config = self.config()
        target = str(config["DATABASE"])
        if storage.is_url(target):
            try:
                return config, storage.connect(target, create=False, upgrade=upgrade)
            except (FileNotFoundError, storage.Unavailable) as e:
                raise SystemExit(f"wattproof: {e}") from None
        path = Path(target)
        if not path.is_file():
            raise SystemExit(
                f"wattproof: no database at {path} (check the path; `wattproof serve --db {path}` creates one)"
            )
        return config, storage.connect(path, create=False, upgrade=upgrade)

    def in_transaction(self, make: Callable[[Any], Any], refused: str = "") -> tuple[Any, Any]:
        """make(conn) in one write transaction on the existing database: (conn, its result); a
        refusal (a Problem) exits 1 saying why."""
        from verifier.storage import transaction
        from verifier.wire.problems import Problem

        _, conn = self.existing()
        try:
            with transaction(conn):
                return conn, make(conn)
        except Problem as e:
            why = f"{refused} ({e.kind}): " if refused else ""
            raise SystemExit(f"wattproof: {why}{e.field}: {e.detail}") from None

    def entry(self, make: Callable[[Any], Any]) -> int:
        """make(conn) in one write transaction: the new entry's ledger index; a refusal exits 1."""
        return int(self.in_transaction(make)[1])


def database_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The four options that say where the verifier's database is, given to the command as
    one `where` (a Where)."""

    @functools.wraps(command)
    def run(*args: Any, db: Path | None, database: str | None, config: Path | None, log_key: Path | None,
            **kwargs: Any) -> Any:  # fmt: skip
        return command(*args, where=Where(db, database, config, log_key), **kwargs)

    for option in (
        click.option("--log-key", type=FILE, help="the log's key file (LOG_KEY_FILE; needed with PostgreSQL)"),
        click.option("--config", type=FILE, help="TOML settings file (docs/operations.md)"),
        click.option("--database", metavar="URL", help="or its PostgreSQL database: postgresql://user@host/name"),
        click.option("--db", type=FILE, help="the verifier's SQLite database file"),
    ):
        run = option(run)
    return run


def listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port))
    except OSError as e:
        raise SystemExit(f"wattproof: cannot listen on {host}:{port}: {e.strerror}") from None


def when(ts: int | None) -> str:
    return "-" if ts is None else times.strftime(ts, "%Y-%m-%d %H:%MZ")


def a_time(text: str, option: str) -> int:
    """An option's time: ISO 8601 with Z, or Unix seconds."""
    from verifier.devices.records import parse_time

    try:
        return parse_time(text)
    except ValueError as e:
        raise SystemExit(f"wattproof: {option} {text}: {e}") from None


def expiry(text: str | None) -> int | None:
    """--expires: a span from now (90d, 12h, 30m) or a time (Unix seconds, ISO 8601 with Z)."""
    from verifier.devices.records import parse_time

    if text is None:
        return None
    span = re.fullmatch(r"([0-9]{1,9})([dhm])", text)
    if span:
        at = int(time.time()) + int(span[1]) * {"d": 86400, "h": 3600, "m": 60}[span[2]]
        if not times.in_range(at):
            raise SystemExit(f"wattproof: --expires {text}: expected {times.BOUND_TEXT}")
        return at
    try:
        return parse_time(text)
    except ValueError as e:
        raise SystemExit(f"wattproof: --expires {text}: {e}; or a span such as 90d, 12h") from None


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="as JSON")(command)
