"""Charging sessions of a charger (utility, auditor): the records, one with its samples,
and the OCMF record the charger signed, as a driver pastes it or as the S.A.F.E.
transparency software opens it. docs/charging.md."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from verifier.charging import green_share, sessions
from verifier.devices import lifecycle
from verifier.http import only_args, time_range, types
from verifier.http.access import get_db, require
from verifier.http.declare import Media, Param, enum, operation, times
from verifier.storage import Connection
from verifier.wire import ocmf
from verifier.wire.problems import Problem

bp = Blueprint("sessions", __name__)


def _sessions(db: Connection, device_id: str) -> list[sessions.Session]:
    if not lifecycle.exists(db, device_id):
        raise Problem("not-found", "device_id", f"no device {device_id}")
    return sessions.for_device(db, device_id)  # none for a device that never sent session readings


def _one(every: list[sessions.Session], device_id: str, session_id: str) -> sessions.Session:
    for s in every:
        if s.session_id == session_id:
            return s
    raise Problem("not-found", "session_id", f"no session {session_id} on {device_id}")


@bp.get("/v1/devices/<device_id>/sessions")
@operation(
    "A charger's charging sessions that start in [from, to), maybe of one state (utility, auditor)",
    {200: types.Sessions},
    query=[*times(), Param("state", enum(sessions.STATES))],
)
@require("utility", "auditor")
def device_sessions(device_id: str) -> Response:
    only_args()
    start, end = time_range()
    state = request.args.get("state")
    if state is not None and state not in sessions.STATES:
        raise Problem("bad-request", "state", f"one of {', '.join(sessions.STATES)}")
    db = get_db()
    every = _sessions(db, device_id)
    found = [s for s in every if start <= s.start.ts < end and (state is None or s.state == state)]
    shares = green_share.of_sessions(db, device_id, found, every)
    return jsonify(
        {"device_id": device_id, "sessions": [sessions.session_json(s, green=_green(shares, s)) for s in found]}
    )


def _green(
    shares: dict[str, green_share.Green | None], s: sessions.Session, hours: bool = False
) -> dict[str, object] | None:
    share = shares.get(s.session_id)
    return None if share is None else share.as_json(hours)


@bp.get("/v1/devices/<device_id>/sessions/<session_id>")
@operation(
    "One charging session with its samples and the readings that prove it (utility, auditor)",
    {200: types.OneSession},
)
@require("utility", "auditor")
def device_session(device_id: str, session_id: str) -> Response:
    only_args()
    db = get_db()
    every = _sessions(db, device_id)
    one = _one(every, device_id, session_id)
    shares = green_share.of_sessions(db, device_id, [one], every, hours=True)
    return jsonify(sessions.session_json(one, samples=True, green=_green(shares, one, hours=True)))


@bp.get("/v1/devices/<device_id>/sessions/<session_id>/ocmf")
@operation(
    "The session's OCMF record: text (record, then the public key as hex DER SPKI) or the S.A.F.E. XML container"
    " (utility, auditor)",
    {200: Media({"text/plain": {"type": "string"}, "application/xml": {"type": "string"}})},
    query=[Param("format", enum(["text", "xml"], "text"))],
)
@require("utility", "auditor")
def session_ocmf(device_id: str, session_id: str) -> Response:
    """format=text (default): the record and the public key (hex DER SPKI), a line each (the
    begin record's two lines first where the charger signed the begin apart); format=xml: the
    S.A.F.E. XML container."""
    only_args()
    form = request.args.get("format", "text")
    if form not in ("text", "xml"):
        raise Problem("bad-request", "format", "text or xml")
    db = get_db()
    session = _one(_sessions(db, device_id), device_id, session_id)
    record = session.ocmf_record()
    if record is None:
        raise Problem("not-found", "session_id", f"session {session_id} has no OCMF record (not stopped, or unsigned)")
    point = session.public_key  # the charger's key when it signed (a rotation since does not change it)
    # a charger that signed the begin and the end apart: both records, the begin first
    texts = [*([session.begin_record[1].text] if session.begin_record else []), record]
    if form == "xml":
        return Response(ocmf.safe_xml([(t, point) for t in texts], len(texts) == 2), mimetype="application/xml")
    return Response("".join(ocmf.two_lines(t, point) for t in texts), mimetype="text/plain")
