"""POST /v1/packets: authenticated by the device's signature alone."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request

from verifier import ingest
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
