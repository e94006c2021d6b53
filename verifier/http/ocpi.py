"""OCPI 2.2.1 for a mobility service provider's system: the versions, the version details
and the CDRs module's Sender interface (docs/charging.md).

Authorization is OCPI's `Token <base64 of the credentials token>`; the token is an API key
of the utility or auditor role (the raw key, as OCPI 2.1.1 sent it, is taken too). Every
answer, a refusal too, carries the OCPI envelope; a refusal is also problem+json."""

from __future__ import annotations

import base64
import os
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request

from verifier import auth
from verifier.charging import ocpi, sessions, tokens
from verifier.devices import records
from verifier.http import only_args, time_range
from verifier.http.access import get_db
from verifier.wire.problems import Problem

bp = Blueprint("ocpi", __name__, url_prefix="/ocpi")
ECHOED = ("X-Request-ID", "X-Correlation-ID")  # OCPI transport: answered with the values the request sent


@bp.after_app_request
def _echo(response: Response) -> Response:
    """Every OCPI answer, errors included, echoes the request's X-Request-ID and X-Correlation-ID."""
    if request.path.startswith("/ocpi/") or request.path == "/ocpi":
        for name in ECHOED:
            value = request.headers.get(name)
            if value is not None and len(value) <= 255 and value.isprintable():
                response.headers[name] = value
    return response


ROLES = ("utility", "auditor", "admin")
CLIENT_ERROR = 2001  # OCPI: invalid or missing parameters
AUTH_ERROR = 2000  # OCPI: generic client error (the HTTP status says 401 or 403)
SERVER_ERROR = 3000  # OCPI: generic server error


def _answer(data: Any, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(ocpi.envelope(data, int(time.time())))
    response.headers.update(headers or {})
    return response


def _ocpi_problem(e: Problem, code: int) -> Problem:
    return Problem(
        e.kind,
        e.field,
        e.detail,
        **e.extra,
        status_code=code,
        status_message=e.detail,
        timestamp=records.iso(int(time.time())),
        data=None,
    )


def _authorize() -> None:
    scheme, _, token = (request.headers.get("Authorization") or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "token" or not token:
        raise _ocpi_problem(
            Problem("unauthorized", "Authorization", "send Authorization: Token <base64 of the API key>"), AUTH_ERROR
        )
    if not token.startswith("wp_"):
        try:
            token = base64.b64decode(token, validate=True).decode()
        except (ValueError, UnicodeDecodeError):  # binascii.Error, non-ASCII
            raise _ocpi_problem(
                Problem("unauthorized", "Authorization", "the token is not base64 of an API key"), AUTH_ERROR
            ) from None
    try:
        caller = auth.identify(get_db(), "Bearer " + token)
    except Problem as e:
        raise _ocpi_problem(e, AUTH_ERROR) from None
    if caller.role not in ROLES:
        raise _ocpi_problem(
            Problem("forbidden", "Authorization", f"the {caller.role} role may not read CDRs: utility or auditor"),
            AUTH_ERROR,
        )


def _base() -> str:
    return request.host_url.rstrip("/") + "/ocpi"


@bp.get("/versions")
def versions() -> Response:
    _authorize()
    return _answer([{"version": ocpi.VERSION, "url": f"{_base()}/{ocpi.VERSION}"}])


@bp.get(f"/{ocpi.VERSION}")
def version_details() -> Response:
    _authorize()
    return _answer(
        {
            "version": ocpi.VERSION,
            "endpoints": [{"identifier": "cdrs", "role": "SENDER", "url": f"{_base()}/{ocpi.VERSION}/cdrs"}],
        }
    )


def _int_arg(name: str, default: int, most: int, least: int = 0) -> int:
    """A whole number of ASCII digits (no '²', no Arabic-Indic digits), at least least; a
    larger one than most counts as most."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdecimal()) or len(raw.lstrip("0")) > 19 or int(raw) < least:
        raise _ocpi_problem(Problem("bad-request", name, f"a whole number, {least} or more"), CLIENT_ERROR)
    return min(int(raw), most)


_attributions: dict[tuple[str, str, float, float], tokens.Attribution] = {}


def _attribution(settings: dict[str, Any]) -> tokens.Attribution | None:
    """The operator's token secret and token list, when both are configured: read once, and
    again only when one of the two files changed."""
    secret_file, tokens_file = settings.get("TOKEN_SECRET_FILE"), settings.get("TOKENS_FILE")
    if not secret_file or not tokens_file:
        return None
    key = (secret_file, tokens_file, os.stat(secret_file).st_mtime, os.stat(tokens_file).st_mtime)
    if key not in _attributions:
        _attributions.clear()
        _attributions[key] = tokens.Attribution(tokens.load_secret(secret_file), tokens.load_tokens(tokens_file))
    return _attributions[key]


def _token(attribution: tokens.Attribution | None, s: sessions.Session) -> tuple[str, str, str] | None:
    """Whom the CDR bills: the token found with the operator's key; else the token's OCMF
    identification (the first 16 bytes of its hash), which no one can turn back into a token."""
    if s.token_hash is None:
        return None
    found = attribution.find(s.device_id, s.token_hash) if attribution is not None else None
    if found is not None:
        return found.uid, found.contract_id, found.type
    ident = s.token_hash[:16].hex().upper()
    return ident, ident, "RFID"


def all_cdrs(
    settings: dict[str, Any], start: int, end: int, offset: int = 0, limit: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The CDRs of every charger's billable sessions stopped in [start, end), oldest first
    (last_updated is the stop time, then the id): those of [offset, offset + limit), and how
    many there are. Only the page's CDRs are built."""
    db = get_db()
    party = ocpi.Party(str(settings["OCPI_COUNTRY_CODE"]), str(settings["OCPI_PARTY_ID"]))
    tariff = ocpi.Tariff.from_settings(settings)
    attribution = _attribution(settings)
    found = []
    for attrs, point, chargers in sessions.of_chargers(db, stopped_since=start):
        if "charge_point" not in attrs or "location" not in attrs:
            continue  # enrolled without a charge point: no CDR can name its location
        for s in chargers:
            if ocpi.billable(s) and s.stop is not None and start <= s.stop.ts < end:
                found.append((records.iso(s.stop.ts), ocpi.cdr_id(s.device_id, s.session_id), s, attrs, point))
    found.sort(key=lambda x: (x[0], x[1]))
    page = found[offset:] if limit is None else found[offset : offset + limit]
    built = [ocpi.cdr(s, attrs, point, party, tariff, _token(attribution, s)) for _, _, s, attrs, point in page]
    return built, len(found)


def session_cdr(settings: dict[str, Any], attrs: dict[str, Any], point: bytes, s: sessions.Session) -> dict[str, Any]:
    """One session's CDR, as the CDRs module sends it; ValueError when it has none (not
    billable, or its charger was enrolled without a charge point)."""
    if not ocpi.billable(s) or "charge_point" not in attrs or "location" not in attrs:
        raise ValueError("no CDR: the session is not billable or its charger has no charge point")
    party = ocpi.Party(str(settings["OCPI_COUNTRY_CODE"]), str(settings["OCPI_PARTY_ID"]))
    return ocpi.cdr(s, attrs, point, party, ocpi.Tariff.from_settings(settings), _token(_attribution(settings), s))


@bp.get(f"/{ocpi.VERSION}/cdrs")
def cdrs() -> Response:
    """Sender GET: date_from (inclusive) and date_to (exclusive) on last_updated, offset, limit."""
    _authorize()
    try:
        only_args("date_from", "date_to", "offset", "limit")
        start, end = time_range("date_from", "date_to")
    except Problem as e:
        raise _ocpi_problem(e, CLIENT_ERROR) from None
    most = int(current_app.config["OCPI_PAGE_LIMIT"])
    offset = _int_arg("offset", 0, 2**62)
    limit = _int_arg("limit", most, most, least=1)  # 0 would answer a next link to the same page
    page, total = all_cdrs(current_app.config, start, end, offset, limit)
    headers = {"X-Total-Count": str(total), "X-Limit": str(most)}
    if offset + limit < total:
        query = {k: v for k, v in request.args.items() if k in ("date_from", "date_to")}
        query.update(offset=str(offset + limit), limit=str(limit))
        headers["Link"] = f'<{_base()}/{ocpi.VERSION}/cdrs?{urlencode(query)}>; rel="next"'
    return _answer(page, headers)
