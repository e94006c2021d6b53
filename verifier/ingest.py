"""Ingest: POST /v1/packets. Every packet is checked, then committed whole or not at all."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from flask import Blueprint, Response, jsonify, request

from verifier import devices
from verifier.db import get_db
from verifier.packet import GENESIS, Packet, decode_packet, verify_packet
from verifier.problems import PacketError, Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("ingest", __name__)


@dataclass(frozen=True)
class Outcome:
    packet: Packet
    duplicate: bool  # True: the very same packet was accepted before; nothing was written


def accept_packet(db: sqlite3.Connection, data: bytes) -> Outcome:
    """Verifies packet bytes and appends them to the device's chain. Raises a Problem on refusal."""
    packet = decode_packet(data)
    h = packet.header
    key = devices.public_key(db, h.device_id)
    if key is None:
        raise PacketError("unknown-device", "header.payload.device_id", f"device {h.device_id!r} is not enrolled")
    verify_packet(packet, key)
    db.execute("BEGIN IMMEDIATE")
    try:
        outcome = _append(db, packet)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return outcome


def _append(db: sqlite3.Connection, packet: Packet) -> Outcome:
    h = packet.header
    same = db.execute(
        "SELECT header_hash FROM packets WHERE device_id = ? AND seq = ?", (h.device_id, h.seq)
    ).fetchone()
    if same is not None:
        if bytes(same["header_hash"]) == packet.header_hash:
            return Outcome(packet, duplicate=True)
        raise Problem(
            "equivocation",
            "header.payload.seq",
            f"packet {h.seq} of {h.device_id} was already accepted with other content",
        )
    last = db.execute(
        "SELECT seq, header_hash FROM packets WHERE device_id = ? ORDER BY seq DESC LIMIT 1", (h.device_id,)
    ).fetchone()
    expected = 0 if last is None else last["seq"] + 1
    if h.seq != expected:
        raise Problem(
            "sequence-conflict",
            "header.payload.seq",
            f"expected packet {expected}, got {h.seq}",
            expected_seq=expected,
        )
    if h.prev != (GENESIS if last is None else bytes(last["header_hash"])):
        raise Problem(
            "sequence-conflict",
            "header.payload.prev",
            "prev is not the hash of the device's last accepted header",
            expected_seq=expected,
        )
    if last is not None:
        row = db.execute("SELECT MAX(number) AS n FROM readings WHERE device_id = ?", (h.device_id,)).fetchone()
        if packet.readings[0].number != row["n"] + 1:
            raise PacketError(
                "reading-number-gap",
                "readings[0].number",
                f"expected reading {row['n'] + 1}, got {packet.readings[0].number}",
            )
    db.execute(
        "INSERT INTO packets (device_id, seq, header_hash, header, reading_count, first_ts, last_ts,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            h.device_id,
            h.seq,
            packet.header_hash,
            packet.cose_sign1,
            h.count,
            h.first_ts,
            h.last_ts,
            int(time.time()),
        ),
    )
    db.executemany(
        "INSERT INTO readings (device_id, number, seq, kind, ts, quality, raw) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(h.device_id, r.number, h.seq, r.kind, r.ts, r.quality, r.raw) for r in packet.readings],
    )
    return Outcome(packet, duplicate=False)


@bp.post("/v1/packets")
def post_packet() -> tuple[Response, int]:
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    outcome = accept_packet(get_db(), request.get_data(cache=False))
    h = outcome.packet.header
    verb = "duplicate" if outcome.duplicate else "accepted"
    log.info(
        "%s %s #%d: %d readings %d..%d, root %s",
        verb,
        h.device_id,
        h.seq,
        h.count,
        h.first_ts,
        h.last_ts,
        h.root.hex()[:16],
    )
    body = {
        "status": verb,
        "device_id": h.device_id,
        "seq": h.seq,
        "header_hash": outcome.packet.header_hash.hex(),
    }
    return jsonify(body), 200 if outcome.duplicate else 201
