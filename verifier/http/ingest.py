"""POST /v1/packets: authenticated by the device's signature alone."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request

from verifier.devices import ingest, records
from verifier.http import signer, types
from verifier.http.access import get_db
from verifier.http.declare import CBOR, operation
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("ingest", __name__)


def _admitted(datas: list[bytes]) -> tuple[str, list[bool], Problem | None]:
    """The client's address and which packets are checked: all of them while its waste budget
    lasts; past it, only those that may be new (of an active device, continuing its chain),
    so that what one client wasted never stops an honest board's packets from the same
    address (every board behind a proxy shares one). The 429 answered for the others.

    Duplicates, refusals and equivocation replays cost a device nothing (anyone holding an old
    packet could replay it); they are charged to the address that sent them instead."""
    client = request.remote_addr or "unknown"
    wait = current_app.extensions["wattproof.client_limiter"].wait(client)
    if not wait:
        return client, [True] * len(datas), None
    limited = Problem(
        "rate-limited",
        "client",
        f"this address sent too many packets that stored nothing; retry in {wait:.1f} s"
        " (a device's next packet is still taken)",
        retry_after=wait,
    )
    return client, ingest.may_be_new(get_db(), datas), limited


def _accept(datas: list[bytes]) -> list[ingest.Outcome | Problem]:
    """The packets' results, from a transaction that packets of this process' concurrent
    requests may join (ingest.Joiner: one commit and one checkpoint for all of them)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def run(joined: list[bytes]) -> list[ingest.Outcome | Problem]:
        sign = app.config["CHECKPOINT_AFTER_BATCH"] and app.extensions["wattproof.checkpoint_pace"].due()
        publish = signer() if sign else None
        return ingest.accept_batch(get_db(), joined, app.extensions["wattproof.limiter"], publish=publish)

    joiner: ingest.Joiner = app.extensions["wattproof.joiner"]
    return joiner.accept(run, datas)


def _charge(client: str, results: list[ingest.Outcome | Problem]) -> None:
    waste = sum(not ingest.is_new(r) for r in results)
    current_app.extensions["wattproof.client_limiter"].charge(client, waste)


@bp.post("/v1/packets")
@operation(
    "A device's packet (docs/protocol.md); authenticated by its signature",
    {200: (types.PacketAnswer, "Duplicate"), 201: (types.PacketAnswer, "Accepted")},
    body=CBOR,
    public=True,
)
def post_packet() -> tuple[Response, int]:
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    data = request.get_data(cache=False)
    client, admitted, limited = _admitted([data])
    if limited is not None and not admitted[0]:
        raise limited
    result = _accept([data])[0]
    _charge(client, [result])
    if isinstance(result, Problem):
        raise result  # an equivocation's evidence is committed before the refusal is answered
    h = result.packet.header
    body = ingest.describe(result)
    log.info(
        "%s %s #%d: %d readings %s..%s, ledger %d",
        body["status"],
        h.device_id,
        h.seq,
        h.count,
        records.iso(h.first_ts),
        records.iso(h.last_ts),
        result.ledger_index,
    )
    return jsonify(body), 200 if result.duplicate else 201


@bp.post("/v1/packets/batch")
@operation(
    "Up to 256 packets in one request (CBOR array of byte strings); one result each, in order",
    {200: types.BatchAnswer},
    body=CBOR,
    public=True,
)
def post_batch() -> tuple[Response, int]:
    """Many packets in one request: a CBOR array of byte strings, each one packet's bytes.

    For a board draining its backlog, or a head-end relaying many meters. The answer lists
    one result per packet, in order; all accepted ones are committed before it is sent.
    """
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    request.max_content_length = ingest.MAX_BATCH_BYTES
    datas = ingest.split_batch(request.get_data(cache=False))
    client, admitted, limited = _admitted(datas)
    if limited is not None and not any(admitted):
        raise limited
    checked = iter(_accept([d for d, ok in zip(datas, admitted, strict=True) if ok]))
    results: list[ingest.Outcome | Problem] = []
    for ok in admitted:
        if ok:
            results.append(next(checked))
        else:
            assert limited is not None
            results.append(limited)
    _charge(client, [r for r in results if r is not limited])
    answers = [
        {"status": "refused", "problem": r.to_json()} if isinstance(r, Problem) else ingest.describe(r) for r in results
    ]
    counts = {k: sum(a["status"] == k for a in answers) for k in ("accepted", "duplicate", "refused")}
    log.info("batch of %d: %d accepted, %d duplicate, %d refused", len(answers), *counts.values())
    return jsonify({"results": answers, **counts}), 200
