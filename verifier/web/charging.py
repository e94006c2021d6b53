"""Charging sessions: the list, a session with its OCMF record, CDR and provenance file."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, render_template, request

from verifier.charging import green_share, sessions
from verifier.http import ocpi as ocpi_views
from verifier.http.access import get_db
from verifier.provenance import build as pf
from verifier.web import bp, charts, page
from verifier.web.common import DAY, LAST_DAY, PAGE, date_arg, download, int_query, provenance_download
from verifier.wire import ocmf
from verifier.wire.problems import Problem


def _all_sessions(db: Any) -> list[tuple[dict[str, Any], bytes, sessions.Session]]:
    return [(attrs, point, s) for attrs, point, found in sessions.of_chargers(db) for s in found]


@bp.get("/sessions", endpoint="sessions")
@page("utility", "auditor")
def sessions_list() -> str:
    db = get_db()
    charger = request.args.get("charger") or None
    state = request.args.get("state") or None
    if state is not None and state not in sessions.STATES:
        raise Problem("bad-request", "state", f"one of {', '.join(sessions.STATES)}")
    start = date_arg("from", 0)
    end = date_arg("to", LAST_DAY) + DAY
    if start >= end:
        raise Problem("bad-request", "from", "from must be on or before to")
    every = _all_sessions(db)
    chargers = sorted({s.device_id for _, _, s in every})
    found = [
        s
        for _, _, s in every
        if (charger is None or s.device_id == charger) and (state is None or s.state == state)
        and start <= s.start.ts < end
    ]  # fmt: skip
    found.sort(key=lambda s: (-s.start.ts, s.device_id))
    offset = int_query("offset", 0) or 0
    return render_template(
        "sessions.html",
        sessions=found[offset : offset + PAGE],
        total=len(found),
        offset=offset,
        page=PAGE,
        chargers=chargers,
        charger=charger,
        state=state,
        states=sessions.STATES,
        from_date=request.args.get("from", ""),
        to_date=request.args.get("to", ""),
    )


def _session(db: Any, device_id: str, session_id: str) -> tuple[dict[str, Any], bytes, sessions.Session]:
    for attrs, point, s in ((a, p, s) for a, p, found in sessions.of_chargers(db, device_id=device_id) for s in found):
        if s.device_id == device_id and s.session_id == session_id:
            return attrs, point, s
    raise Problem("not-found", "session_id", f"no session {session_id} on {device_id}")


@bp.get("/sessions/<device_id>/<session_id>")
@page("utility", "auditor")
def session_page(device_id: str, session_id: str) -> str:
    db = get_db()
    attrs, point, s = _session(db, device_id, session_id)
    shares = green_share.of_sessions(db, device_id, [s], sessions.for_device(db, device_id), hours=True)
    share = shares.get(s.session_id)
    points = [s.start, *s.samples, *([s.stop] if s.stop else [])]
    power = [
        (b.ts, (int(b.values["register_wh"]) - int(a.values["register_wh"])) * 3600 / (b.ts - a.ts))
        for a, b in zip(points, points[1:], strict=False)
        if b.ts > a.ts
    ]
    chart = charts.curve(f"Charging power of session {session_id[:12]}", power, "W",
                         desc=f"mean power between {len(points)} register readings") if power else ""  # fmt: skip
    try:
        ocpi_views.session_cdr(current_app.config, attrs, point, s)
        has_cdr = True
    except ValueError:
        has_cdr = False
    return render_template(
        "session.html",
        s=s,
        record=sessions.session_json(s, samples=True),
        green=None if share is None else share.as_json(True),
        chart=chart,
        has_ocmf=s.ocmf_record() is not None,
        has_cdr=has_cdr,
        has_certificate=s.record is None,
    )


@bp.get("/sessions/<device_id>/<session_id>/ocmf.txt")
@page("utility", "auditor")
def session_ocmf(device_id: str, session_id: str) -> Response:
    _, point, s = _session(get_db(), device_id, session_id)
    record = s.ocmf_record()
    if record is None:
        raise Problem("not-found", "session_id", f"session {session_id} has no OCMF record")
    return download(ocmf.two_lines(record, s.public_key or point).encode(), f"ocmf-{session_id[:16]}.txt",
                     "text/plain")  # fmt: skip


@bp.get("/sessions/<device_id>/<session_id>/cdr.json")
@page("utility", "auditor")
def session_cdr(device_id: str, session_id: str) -> Response:
    attrs, point, s = _session(get_db(), device_id, session_id)
    try:
        cdr = ocpi_views.session_cdr(current_app.config, attrs, point, s)
    except ValueError as e:
        raise Problem("not-found", "session_id", str(e)) from None
    return download(json.dumps(cdr, indent=1).encode(), f"cdr-{session_id[:16]}.json", "application/json")


@bp.get("/sessions/<device_id>/<session_id>/certificate.json")
@page("utility", "auditor")
def session_certificate(device_id: str, session_id: str) -> Response:
    return provenance_download(pf.for_session, "session_id", f"session-{session_id[:16]}.json", device_id, session_id)


@bp.get("/devices/<device_id>/readings/<index:number>/certificate.json")
@page("utility", "auditor")
def reading_certificate(device_id: str, number: int) -> Response:
    return provenance_download(pf.for_reading, "number", f"reading-{device_id}-{number}.json", device_id, number)


@bp.get("/devices/<device_id>/packets/<index:seq>/certificate.json")
@page("utility", "auditor")
def packet_certificate(device_id: str, seq: int) -> Response:
    return provenance_download(pf.for_packet, "seq", f"packet-{device_id}-{seq}.json", device_id, seq)
