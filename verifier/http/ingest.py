"""POST /v1/packets: authenticated by the device's signature alone."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request

from verifier import ingest, strict_cbor
from verifier.db import get_db
from verifier.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("ingest", __name__)


@bp.post("/v1/packets")
def post_packet() -> tuple[Response, int]:
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    outcome = ingest.accept_packet(get_db(), request.get_data(cache=False), current_app.extensions["wattproof.limiter"])
    h = outcome.packet.header
    body = ingest.describe(outcome)
    log.info(
        "%s %s #%d: %d readings %d..%d, ledger %d",
        body["status"],
        h.device_id,
        h.seq,
        h.count,
        h.first_ts,
        h.last_ts,
        outcome.ledger_index,
    )
    return jsonify(body), 200 if outcome.duplicate else 201


@bp.post("/v1/packets/batch")
def post_batch() -> tuple[Response, int]:
    """Many packets in one request: a CBOR array of byte strings, each one packet's bytes.

    For a board draining its backlog, or a head-end relaying many meters. The answer lists
    one result per packet, in order; all accepted ones are committed before it is sent.
    """
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    request.max_content_length = ingest.MAX_BATCH_BYTES
    try:
        datas = strict_cbor.loads(request.get_data(cache=False))
    except strict_cbor.CBORProfileError as e:
        raise Problem("malformed-cbor", "batch", str(e)) from None
    if not isinstance(datas, list) or not datas or not all(type(d) is bytes for d in datas):
        raise Problem("invalid-field", "batch", "expected a non-empty array of byte strings, one packet each")
    if len(datas) > ingest.MAX_BATCH_PACKETS:
        raise Problem(
            "batch-too-large", "batch", f"{len(datas)} packets, at most {ingest.MAX_BATCH_PACKETS} in one request"
        )
    results = ingest.accept_batch(get_db(), datas, current_app.extensions["wattproof.limiter"])
    answers = [
        {"status": "refused", "problem": r.to_json()} if isinstance(r, Problem) else ingest.describe(r) for r in results
    ]
    counts = {k: sum(a["status"] == k for a in answers) for k in ("accepted", "duplicate", "refused")}
    log.info("batch of %d: %d accepted, %d duplicate, %d refused", len(answers), *counts.values())
    return jsonify({"results": answers, **counts}), 200
