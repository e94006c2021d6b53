"""What the pages share: the log's signer, days and dates, the query's arguments, downloads."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app, request

from verifier.devices import records
from verifier.http.access import get_db
from verifier.log import note
from verifier.web import caller
from verifier.wire import times
from verifier.wire.problems import Problem

DAY, HOUR = 86400, 3600
WINDOWS = {"1": 1, "7": 7, "31": 31, "365": 365}  # days a device page can show
MAX_UPLOAD = 2 * 1024 * 1024  # a provenance certificate of a packet of 256 readings is ~100 KB
PAGE = 50
LEDGER_PAGE = 15  # ledger entries a page lists
LAST_DAY = times.MAX_TIME + 1 - 400 * DAY  # the latest day a page starts from: a year of days after it fit


def log_signer() -> note.Signer:
    signer: note.Signer = current_app.extensions["wattproof.log_signer"]
    return signer


def day_start(ts: int) -> int:
    return ts - ts % DAY


def date_arg(name: str, default: int) -> int:
    """A YYYY-MM-DD query argument as the Unix time of that UTC midnight."""
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        day = int(datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise Problem("bad-request", name, f"{name} is a date, YYYY-MM-DD, not {raw!r}") from None
    if day > LAST_DAY:  # a page shows the days after it too
        raise Problem("bad-request", name, f"{name} is a date before {times.strftime(LAST_DAY, '%Y-%m-%d')}")
    return day


def int_query(name: str, default: int | None = None) -> int | None:
    """An integer query argument of ASCII digits that fits the database (0 to 2^63 - 1)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 19 or int(raw) >= 2**63:
        raise Problem("bad-request", name, f"{name} is a whole number from 0 to 2^63 - 1")
    return int(raw)


def date_text(ts: int) -> str:
    return times.strftime(ts, "%Y-%m-%d")


def first_data(db: Any) -> int:
    span = records.data_span(db)
    return span[0] if span else int(time.time())


def latest_data(db: Any) -> int:
    """The time of the newest reading anywhere (the pages open on the days that have data)."""
    span = records.data_span(db)
    return span[1] if span else int(time.time())


def provenance_download(make: Any, field: str, name: str, *args: Any) -> Response:
    """A provenance file made by make(db, signer, *args) as a download; 404 naming field."""
    try:
        data = make(get_db(), log_signer(), *args)
    except LookupError as e:
        raise Problem("not-found", field, str(e)) from None
    return download(data, name, "application/json")


def account_scope() -> str | None:
    """An account key sees its own account only."""
    who = caller()
    return who.account if who is not None and who.role == "account" else None


def download(data: bytes, name: str, mimetype: str) -> Response:
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})
