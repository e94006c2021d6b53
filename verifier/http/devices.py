"""Installers, enrollments, revocations, key rotations; the device list."""

from __future__ import annotations

import base64
import json
import logging

from flask import Blueprint, Response, g, jsonify, request

from verifier import devices, ledger, merkle, records
from verifier.auth import require
from verifier.db import get_db, transaction
from verifier.http import cbor_body, created, int_arg, json_body, signer
from verifier.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("devices", __name__)


def receipt(index: int) -> dict[str, object]:
    """What an enrollment returns: where the entry is in the ledger and the proof of it."""
    db = get_db()
    with transaction(db):
        checkpoint = ledger.checkpoint(db, signer())
    size = int(checkpoint.decode().split("\n")[1])
    entry = ledger.entry(db, index)
    return {
        "ledger_index": index,
        "leaf_hash": merkle.leaf_hash(entry.raw).hex(),
        "tree_size": size,
        "inclusion_proof": [h.hex() for h in ledger.inclusion_proof(db, index, size)],
        "checkpoint": checkpoint.decode(),
    }


@bp.post("/v1/installers")
@require()
def register_installer() -> tuple[Response, int]:
    body = json_body()
    try:
        key = base64.b64decode(str(body.get("public_key", "")), validate=True)
    except ValueError:
        raise Problem("invalid-field", "public_key", "expected base64") from None
    db = get_db()
    with transaction(db):
        index = devices.register_installer(db, str(body.get("name", "")), key, g.api_key_name)
    return created({"name": body["name"], "ledger_index": index})


@bp.post("/v1/installers/<name>/revoke")
@require()
def revoke_installer(name: str) -> tuple[Response, int]:
    db = get_db()
    with transaction(db):
        index = devices.revoke_installer(db, name, g.api_key_name)
    return created({"name": name, "ledger_index": index}, 200)


@bp.post("/v1/enrollments/challenge")
@require("installer")
def challenge() -> tuple[Response, int]:
    db = get_db()
    with transaction(db):
        nonce = devices.new_challenge(db)
    return created({"challenge": nonce.hex(), "expires_in_s": devices.CHALLENGE_TTL_S}, 200)


@bp.post("/v1/enrollments")
@require("installer")
def enroll() -> tuple[Response, int]:
    request_body = cbor_body()
    db = get_db()
    with transaction(db):
        index, again = devices.enroll(db, request_body)
    device = request_body["device"]
    log.info(
        "%s %s (%s), ledger %d", "already enrolled" if again else "enrolled", device["device_id"], device["role"], index
    )
    answer = {
        "device_id": device["device_id"],
        "fingerprint": devices.fingerprint(device["public_key"]),
        "already_enrolled": again,
        **receipt(index),
    }
    return created(answer, 200 if again else 201)


@bp.post("/v1/devices/<device_id>/revoke")
@require("installer")
def revoke(device_id: str) -> tuple[Response, int]:
    reason = str(json_body().get("reason", ""))
    db = get_db()
    with transaction(db):
        index = devices.revoke(db, device_id, reason, g.api_key_name)
    log.info("revoked %s: %s", device_id, reason)
    return created({"device_id": device_id, "status": "revoked", "ledger_index": index}, 200)


@bp.post("/v1/devices/<device_id>/rotate")
def rotate(device_id: str) -> tuple[Response, int]:
    """Authenticated by the device: its old key signs the new one."""
    body = cbor_body()
    db = get_db()
    with transaction(db):
        index = devices.rotate(db, device_id, body)
    log.info("rotated the key of %s", device_id)
    return created({"device_id": device_id, "ledger_index": index}, 200)


def _device_json(row: object) -> dict[str, object]:
    r = dict(row)  # type: ignore[call-overload]
    return {
        "device_id": r["device_id"],
        "role": r["role"],
        "status": r["status"],
        "flagged": bool(r["flagged"]),
        "fingerprint": devices.fingerprint(bytes(r["public_key"])),
        "enrolled_ledger_index": r["enrolled_idx"],
        **json.loads(r["attributes"]),
    }


@bp.get("/v1/devices")
@require("installer", "utility", "auditor")
def list_devices() -> Response:
    limit = int_arg("limit", 100, 1, 1000)
    after = request.args.get("cursor", "")
    rows = (
        get_db()
        .execute("SELECT * FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?", (after, limit + 1))
        .fetchall()
    )
    out = [_device_json(r) for r in rows[:limit]]
    return jsonify({"devices": out, "next_cursor": out[-1]["device_id"] if len(rows) > limit else None})


@bp.get("/v1/devices/<device_id>")
@require("installer", "utility", "auditor")
def get_device(device_id: str) -> Response:
    db = get_db()
    row = db.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise Problem("not-found", "device_id", f"no device {device_id}")
    count, last = db.execute("SELECT COUNT(*), MAX(seq) FROM packets WHERE device_id = ?", (device_id,)).fetchone()
    return jsonify({**_device_json(row), "packets": count, "last_seq": last})


@bp.get("/v1/devices/<device_id>/readings")
@require("utility", "auditor")
def device_readings(device_id: str) -> Response:
    out, cursor = records.readings(
        get_db(),
        device_id,
        int_arg("from", 0),
        int_arg("to", 2**40),
        request.args.get("cursor", type=int),
        int_arg("limit", 500, 1, 5000),
    )
    return jsonify({"device_id": device_id, "readings": out, "next_cursor": cursor})


@bp.get("/v1/devices/<device_id>/energy")
@require("utility", "auditor")
def device_energy(device_id: str) -> Response:
    interval = request.args.get("interval", "1h")
    if interval not in records.INTERVALS:
        raise Problem("bad-request", "interval", "one of 15m, 1h, 1d")
    try:
        out = records.energy(get_db(), device_id, int_arg("from"), int_arg("to"), interval)
    except ValueError as e:
        raise Problem("bad-request", "to", str(e)) from None
    return jsonify({"device_id": device_id, "interval": interval, "intervals": out})
