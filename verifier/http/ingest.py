"""POST /v1/packets: authenticated by the device's signature alone."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request

from verifier import ingest
from verifier.http import signer
from verifier.http.access import get_db
from verifier.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("ingest", __name__)


def _client_may_send() -> str:
    """The client's address, once its waste budget allows one more request; else a 429.

    Duplicates, refusals and equivocation replays cost a device nothing (anyone holding an old
    packet could replay it); they are charged to the address that sent them instead."""
    client = request.remote_addr or "unknown"
    wait = current_app.extensions["wattproof.client_limiter"].wait(client)
    if wait:
        raise Problem(
            "rate-limited",
            "client",
            f"this address sent too many packets that stored nothing; retry in {wait:.1f} s",
            retry_after=wait,
        )
    return client


def _accept(datas: list[bytes]) -> list[ingest.Outcome | Problem]:
    publish = signer() if current_app.config["CHECKPOINT_AFTER_BATCH"] else None
    return ingest.accept_batch(get_db(), datas, current_app.extensions["wattproof.limiter"], publish=publish)


def _charge(client: str, results: list[ingest.Outcome | Problem]) -> None:
    waste = sum(not ingest.is_new(r) for r in results)
    current_app.extensions["wattproof.client_limiter"].charge(client, waste)


@bp.post("/v1/packets")
def post_packet() -> tuple[Response, int]:
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    client = _client_may_send()
    data = request.get_data(cache=False)
    result = _accept([data])[0]
    _charge(client, [result])
    if isinstance(result, Problem):
        raise result  # an equivocation's evidence is committed before the refusal is answered
    h = result.packet.header
    body = ingest.describe(result)
    log.info(
        "%s %s #%d: %d readings %d..%d, ledger %d",
        body["status"],
        h.device_id,
        h.seq,
        h.count,
        h.first_ts,
        h.last_ts,
        result.ledger_index,
    )
    return jsonify(body), 200 if result.duplicate else 201


@bp.post("/v1/packets/batch")
def post_batch() -> tuple[Response, int]:
    """Many packets in one request: a CBOR array of byte strings, each one packet's bytes.

    For a board draining its backlog, or a head-end relaying many meters. The answer lists
    one result per packet, in order; all accepted ones are committed before it is sent.
    """
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    client = _client_may_send()
    request.max_content_length = ingest.MAX_BATCH_BYTES
    datas = ingest.split_batch(request.get_data(cache=False))
    results = _accept(datas)
    _charge(client, results)
    answers = [
        {"status": "refused", "problem": r.to_json()} if isinstance(r, Problem) else ingest.describe(r) for r in results
    ]
    counts = {k: sum(a["status"] == k for a in answers) for k in ("accepted", "duplicate", "refused")}
    log.info("batch of %d: %d accepted, %d duplicate, %d refused", len(answers), *counts.values())
    return jsonify({"results": answers, **counts}), 200
