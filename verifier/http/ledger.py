"""The ledger, for anyone who checks it: key, checkpoints and proofs are public."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from verifier import ledger, merkle
from verifier.auth import require
from verifier.db import get_db, transaction
from verifier.http import int_arg, signer
from verifier.ingest import stored_packet
from verifier.packet import decode_packet
from verifier.problems import Problem

bp = Blueprint("ledger", __name__)


def _text(body: bytes | str) -> Response:
    return Response(body, mimetype="text/plain; charset=utf-8")


@bp.get("/v1/ledger/key")
def key() -> Response:
    """The log's public key in the C2SP verifier-key form name+keyid+base64."""
    return _text(str(signer().verifier()) + "\n")


@bp.get("/v1/ledger/checkpoint")
def checkpoint() -> Response:
    """The latest checkpoint: the signed note's exact bytes."""
    db = get_db()
    with transaction(db):
        return _text(ledger.checkpoint(db, signer()))


def _proof_error(e: merkle.ProofError) -> Problem:
    return Problem("bad-request", "size", str(e))


@bp.get("/v1/ledger/proof/inclusion")
def inclusion() -> Response:
    db = get_db()
    size = int_arg("size", ledger.size(db), 1)
    if "device" in request.args:
        row = db.execute(
            "SELECT ledger_idx FROM packets WHERE device_id = ? AND seq = ?", (request.args["device"], int_arg("seq"))
        ).fetchone()
        if row is None:
            raise Problem("not-found", "seq", "no such packet")
        index = int(row[0])
    else:
        index = int_arg("index")
    try:
        proof = ledger.inclusion_proof(db, index, size)
    except merkle.ProofError as e:
        raise _proof_error(e) from None
    leaf = ledger.entry(db, index).raw
    return jsonify(
        {
            "index": index,
            "tree_size": size,
            "leaf_hash": merkle.leaf_hash(leaf).hex(),
            "proof": [h.hex() for h in proof],
        }
    )


@bp.get("/v1/ledger/proof/consistency")
def consistency() -> Response:
    db = get_db()
    first, second = int_arg("from", low=1), int_arg("to", ledger.size(db), 1)
    try:
        proof = ledger.consistency_proof(db, first, second)
    except merkle.ProofError as e:
        raise _proof_error(e) from None
    return jsonify({"from": first, "to": second, "proof": [h.hex() for h in proof]})


@bp.get("/v1/ledger/entries/<int:index>")
@require("auditor", "utility")
def entry(index: int) -> Response:
    try:
        e = ledger.entry(get_db(), index)
    except LookupError:
        raise Problem("not-found", "index", f"no ledger entry {index}") from None
    return jsonify(
        {
            "index": e.index,
            "kind": e.kind,
            "device_id": e.device_id,
            "entry": e.raw.hex(),
            "leaf_hash": merkle.leaf_hash(e.raw).hex(),
        }
    )


@bp.get("/v1/packets/<device_id>/<int:seq>")
@require("utility", "auditor")
def packet(device_id: str, seq: int) -> Response:
    """A packet with its proofs: the bytes as sent, its ledger entry and inclusion, a checkpoint."""
    db = get_db()
    try:
        data = stored_packet(db, device_id, seq)
    except LookupError:
        raise Problem("not-found", "seq", f"no packet {seq} of {device_id}") from None
    index = int(
        db.execute("SELECT ledger_idx FROM packets WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchone()[0]
    )
    with transaction(db):
        note_bytes = ledger.checkpoint(db, signer())
    size = int(note_bytes.decode().split("\n")[1])
    p = decode_packet(data)
    return jsonify(
        {
            "device_id": device_id,
            "seq": seq,
            "packet": data.hex(),
            "header": {
                "root": p.header.root.hex(),
                "count": p.header.count,
                "first_ts": p.header.first_ts,
                "last_ts": p.header.last_ts,
                "prev": p.header.prev.hex(),
            },
            "ledger_index": index,
            "tree_size": size,
            "inclusion_proof": [h.hex() for h in ledger.inclusion_proof(db, index, size)],
            "checkpoint": note_bytes.decode(),
        }
    )
