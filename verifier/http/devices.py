"""Installers, enrollments, revocations, key rotations; the device list."""

from __future__ import annotations

import base64
import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from verifier.devices import identity, lifecycle, records
from verifier.http import (
    cbor_body,
    created,
    int_arg,
    json_body,
    only_args,
    signer,
    text_field,
    time_range,
    types,
)
from verifier.http.access import get_db, require, writing
from verifier.http.declare import CBOR, NAME, Param, cursor, enum, limit, operation, times
from verifier.log import checkpoints
from verifier.storage import Connection
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("devices", __name__)


def receipt(index: int) -> dict[str, object]:
    """What an enrollment returns: where the entry is in the ledger and the proof of it."""
    return checkpoints.receipt(get_db(), index, signer())


@bp.post("/v1/installers")
@operation("Register an installer's Ed25519 key (admin)", {201: types.LedgerAction}, body=types.InstallerBody)
@require()
def register_installer() -> tuple[Response, int]:
    only_args()
    body = json_body()
    name = text_field(body, "name", limit=64)
    try:
        key = base64.b64decode(text_field(body, "public_key", limit=100), validate=True)
    except ValueError:
        raise Problem("invalid-field", "public_key", "expected base64") from None
    db = get_db()
    with writing(db):
        index = lifecycle.register_installer(db, name, key, g.api_key_name)
    return created({"name": name, "ledger_index": index})


@bp.post("/v1/installers/<name>/revoke")
@operation("Revoke an installer (admin): its signatures enroll nothing more", {200: types.LedgerAction})
@require()
def revoke_installer(name: str) -> tuple[Response, int]:
    only_args()
    db = get_db()
    with writing(db):
        index = lifecycle.revoke_installer(db, name, g.api_key_name)
    return created({"name": name, "ledger_index": index}, 200)


@bp.post("/v1/enrollments/challenge")
@operation("A single-use enrollment challenge (installer)", {200: types.Challenge})
@require("installer")
def challenge() -> tuple[Response, int]:
    only_args()
    db = get_db()
    with writing(db):
        nonce = lifecycle.new_challenge(db)
    return created({"challenge": nonce.hex(), "expires_in_s": lifecycle.CHALLENGE_TTL_S}, 200)


@bp.post("/v1/enrollments")
@operation(
    "Enroll a device (installer, with its own installer's signature; or admin): docs/devices.md",
    {200: types.Receipt, 201: types.Receipt},
    body=CBOR,
)
@require("installer")
def enroll() -> tuple[Response, int]:
    only_args()
    request_body = cbor_body()
    _acts_for(request_body)
    db = get_db()
    with writing(db):
        index, again = lifecycle.enroll(db, request_body)
    device = request_body["device"]
    log.info(
        "%s %s (%s), ledger %d", "already enrolled" if again else "enrolled", device["device_id"], device["role"], index
    )
    return created(enrollment_answer(device, index, again), 200 if again else 201)


def _acts_for(request_body: Any) -> None:
    """An installer's API key enrolls only with its own installer's signature."""
    caller = g.caller
    if caller.role == "installer" and isinstance(request_body, dict):
        signed_by = request_body.get("installer")
        if not isinstance(signed_by, str):
            raise Problem("invalid-field", "installer", "expected the installer's name (a text string)")
        if caller.installer is None:
            raise Problem(
                "forbidden",
                "Authorization",
                "this installer API key names no installer: ask the operator for one made with"
                " `wattproof keys create --role installer --installer NAME`",
            )
        if signed_by != caller.installer:
            raise Problem(
                "forbidden",
                "installer",
                f"this API key acts for installer {caller.installer}; the enrollment names {signed_by!r}",
            )


@bp.post("/v1/enrollments/challenges")
@operation("Many single-use enrollment challenges at once, for bulk enrollment (installer)",
           {200: types.Challenges}, body=types.ChallengesBody)  # fmt: skip
@require("installer")
def challenges() -> tuple[Response, int]:
    only_args()
    count = json_body()["count"]
    db = get_db()
    with writing(db):
        nonces = lifecycle.new_challenges(db, count)
    return created({"challenges": [n.hex() for n in nonces], "expires_in_s": lifecycle.CHALLENGE_TTL_S}, 200)


@bp.post("/v1/enrollments/batch")
@operation(
    f"Up to {lifecycle.MAX_BATCH} enrollments in one request (a CBOR array of what POST /v1/enrollments takes,"
    " each signed by its own board and installer); one result each, in order, all under one checkpoint",
    {200: types.EnrollmentBatchAnswer},
    body=CBOR,
)
@require("installer")
def enroll_batch() -> tuple[Response, int]:
    """A fleet's boards enrolled in bulk (a utility's roll-out, keys made at the factory): each
    request still carries its board's proof of possession over its own challenge and its
    installer's signature; the answer gives each its receipt under one checkpoint."""
    only_args()
    request.max_content_length = lifecycle.MAX_BATCH_BYTES
    requests = cbor_body()
    if not isinstance(requests, list) or not 1 <= len(requests) <= lifecycle.MAX_BATCH:
        raise Problem("invalid-field", "enrollments", f"expected an array of 1 to {lifecycle.MAX_BATCH} enrollments")
    allowed: list[Problem | None] = []
    for item in requests:
        try:
            _acts_for(item)
            allowed.append(None)
        except Problem as e:
            allowed.append(e)
    db = get_db()
    with writing(db):
        done = iter(lifecycle.enroll_many(db, [r for r, no in zip(requests, allowed, strict=True) if no is None]))
        results = [next(done) if no is None else no for no in allowed]
    enrolled = [r for r in results if not isinstance(r, Problem)]
    cp = checkpoints.covering(db, max(i for i, _ in enrolled), signer()) if enrolled else None
    answers: list[dict[str, Any]] = []
    for request_body, result in zip(requests, results, strict=True):
        if isinstance(result, Problem):
            answers.append({"status": "refused", "problem": result.to_json()})
            continue
        assert cp is not None
        index, again = result
        answers.append({"status": "already-enrolled" if again else "enrolled",
                        **enrollment_answer(request_body["device"], index, again, cp)})  # fmt: skip
    counts = {k: sum(a["status"] == k for a in answers) for k in ("enrolled", "already-enrolled", "refused")}
    log.info("enrollment batch of %d: %d enrolled, %d already, %d refused", len(answers), *counts.values())
    return jsonify({"results": answers, "enrolled": counts["enrolled"], "already_enrolled": counts["already-enrolled"],
                    "refused": counts["refused"]}), 200  # fmt: skip


def enrollment_answer(
    device: dict[str, Any], index: int, again: bool, cp: checkpoints.Checkpoint | None = None
) -> dict[str, Any]:
    """What an enrollment answers: the device, its key's fingerprint and the entry's receipt
    (under checkpoint cp when given: a batch's one)."""
    return {
        "device_id": device["device_id"],
        "fingerprint": identity.fingerprint(device["public_key"]),
        "already_enrolled": again,
        **(receipt(index) if cp is None else checkpoints.receipt_under(get_db(), index, cp)),
    }


@bp.post("/v1/devices/<device_id>/revoke")
@operation(
    "Revoke a device (the installer that enrolled it, or admin)", {200: types.LedgerAction}, body=types.ReasonBody
)
@require("installer")
def revoke(device_id: str) -> tuple[Response, int]:
    only_args()
    reason = text_field(json_body(), "reason", "")
    caller = g.caller
    db = get_db()
    with writing(db):
        index = lifecycle.revoke(
            db,
            device_id,
            reason,
            caller.name,
            installer=(caller.installer or "") if caller.role == "installer" else None,
        )
    log.info("revoked %s: %s", device_id, reason)
    return created({"device_id": device_id, "status": "revoked", "ledger_index": index}, 200)


@bp.post("/v1/devices/<device_id>/clear-flag")
@operation(
    "End a device's quarantine after an equivocation was looked into (admin)",
    {200: types.LedgerAction},
    body=types.ClearFlagBody,
)
@require()
def clear_flag(device_id: str) -> tuple[Response, int]:
    """An admin ends a device's quarantine after looking into its equivocation."""
    only_args()
    reason = text_field(json_body(), "reason")
    db = get_db()
    with writing(db):
        index = lifecycle.clear_flag(db, device_id, reason, g.api_key_name)
    log.info("cleared the flag of %s: %s", device_id, reason)
    return created({"device_id": device_id, "flagged": False, "ledger_index": index}, 200)


@bp.post("/v1/devices/<device_id>/rotate")
@operation(
    "Rotate a device's key, signed by old and new key over the current key id and key_ledger_index",
    {200: types.LedgerAction},
    body=CBOR,
    public=True,
)
def rotate(device_id: str) -> tuple[Response, int]:
    """Authenticated by the device: its old key signs the new one."""
    only_args()
    body = cbor_body()
    db = get_db()
    with writing(db):
        index = lifecycle.rotate(db, device_id, body)
    log.info("rotated the key of %s", device_id)
    return created({"device_id": device_id, "ledger_index": index}, 200)


@bp.get("/v1/devices")
@operation("Devices (installer, utility, auditor)", {200: types.DeviceList}, query=[cursor(NAME), limit(1000, 100)])
@require("installer", "utility", "auditor")
def list_devices() -> Response:
    only_args()
    limit = int_arg("limit", 100, 1, 1000)
    after = request.args.get("cursor")
    if after is not None and not DEVICE_ID.fullmatch(after):
        raise Problem("bad-request", "cursor", "expected the next_cursor of a previous page (a device id)")
    out, next_cursor = lifecycle.page(get_db(), after, limit)
    return jsonify({"devices": out, "next_cursor": next_cursor})


def _known_device(db: Connection, device_id: str) -> None:
    if not lifecycle.exists(db, device_id):
        raise Problem("not-found", "device_id", f"no device {device_id}")


@bp.get("/v1/devices/<device_id>")
@operation("One device", {200: types.Device})
@require("installer", "utility", "auditor")
def get_device(device_id: str) -> Response:
    only_args()
    db = get_db()
    try:
        described = lifecycle.describe(db, device_id)
    except LookupError:
        raise Problem("not-found", "device_id", f"no device {device_id}") from None
    return jsonify({**described, **lifecycle.packet_summary(db, device_id)})


def _span() -> tuple[int, int]:
    return time_range()


@bp.get("/v1/devices/<device_id>/readings")
@operation(
    "Readings by time, cursor pagination (utility, auditor)",
    {200: types.Readings},
    query=[*times(), cursor(), limit(5000, 500)],
)
@require("utility", "auditor")
def device_readings(device_id: str) -> Response:
    only_args()
    db = get_db()
    _known_device(db, device_id)
    start, end = _span()
    cursor = int_arg("cursor", -1, 0, 2**63 - 1)
    out, next_cursor = records.readings(
        db, device_id, start, end, None if cursor < 0 else cursor, int_arg("limit", 500, 1, 5000)
    )
    return jsonify({"device_id": device_id, "readings": out, "next_cursor": next_cursor})


@bp.get("/v1/devices/<device_id>/energy")
@operation(
    "Energy per interval from the registers (utility, auditor); at most 8784 intervals",
    {200: types.Energy},
    query=[*times(required=True), Param("interval", enum(records.INTERVALS, "1h"))],
)
@require("utility", "auditor")
def device_energy(device_id: str) -> Response:
    only_args()
    interval = request.args.get("interval", "1h")
    if interval not in records.INTERVALS:
        raise Problem("bad-request", "interval", "one of 15m, 1h, 1d")
    db = get_db()
    try:
        device = lifecycle.describe(db, device_id)
    except LookupError:
        raise Problem("not-found", "device_id", f"no device {device_id}") from None
    start, end = time_range(default=None)  # from = to: an empty period, no interval
    generation = records.generation_register(device)
    try:
        out = records.energy(db, device_id, start, end, interval, generation)
    except records.TooMuchWork as e:
        raise Problem("unprocessable", "to", str(e)) from None
    # the period answered: whole intervals around the one asked, and says so
    answer: dict[str, object] = {"device_id": device_id, "interval": interval,
                                 **records.widened(start, end, records.INTERVALS[interval])}  # fmt: skip
    if generation is not None:
        answer["generation_register"] = generation
    return jsonify({**answer, "intervals": out})
