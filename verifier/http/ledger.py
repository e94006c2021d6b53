"""The ledger, for anyone who checks it: key, checkpoints and proofs are public."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from verifier.devices import ingest
from verifier.http import int_arg, iso, only_args, signer, types
from verifier.http.access import get_db, require
from verifier.http.declare import CHECKPOINT_TEXT, NAME, TEXT, Param, integer, operation
from verifier.log import checkpoints, ledger
from verifier.wire import merkle
from verifier.wire.packet import decode_header as decode_packet_header
from verifier.wire.packet import decode_packet
from verifier.wire.problems import Problem

bp = Blueprint("ledger", __name__)


def _text(body: bytes | str) -> Response:
    return Response(body, content_type="text/plain; charset=utf-8")


@bp.get("/v1/ledger/key")
@operation("The log's public key, C2SP verifier-key form", {200: TEXT}, public=True)
def key() -> Response:
    """The log's public key in the C2SP verifier-key form name+keyid+base64."""
    only_args()
    return _text(str(signer().verifier()) + "\n")


@bp.get("/v1/ledger/checkpoint")
@operation(
    "The latest checkpoint (or the one of a given size), a C2SP signed note: origin, size and base64 root hash"
    " lines, an empty line, the log's signature line and the witnesses' cosignature lines",
    {200: CHECKPOINT_TEXT},
    query=[Param("size", integer(1), description="a checkpoint the log published, by its size")],
    public=True,
)
def checkpoint() -> Response:
    """The latest stored checkpoint (or the one of ?size=N): the log's signed note byte for
    byte, followed by the cosignature lines of the witnesses that cosigned it."""
    only_args()
    db = get_db()
    if "size" in request.args:
        size = int_arg("size", None, 0, 2**63 - 1)
        found = checkpoints.at_size(db, size)
        if found is None:
            below, above = checkpoints.sizes_around(db, size)
            near = " and ".join(f"{n}" for n in (below, above) if n is not None)
            raise Problem(
                "not-found",
                "size",
                f"no checkpoint was published at size {size}" + (f"; the nearest are at {near}" if near else ""),
            )
        return _text(checkpoints.served(db, found))
    latest = checkpoints.latest(db)
    if latest is None:  # a new ledger: its first checkpoint
        latest = checkpoints.publish(db, signer())
    return _text(checkpoints.served(db, latest))


def _size_arg(name: str, current: int, default: int | None = None) -> int:
    """A tree size: 1 to the ledger's size now (the answer says which when it is beyond)."""
    value = int_arg(name, default, 1, 2**63 - 1)
    if value > current:
        raise Problem("unprocessable", name, f"{name}={value} is beyond the ledger, which holds {current} entries")
    return value


@bp.get("/v1/ledger/proof/inclusion")
@operation(
    "Inclusion proof by index, or by device and seq (not both); size defaults to the ledger's",
    {200: types.InclusionProof},
    query=[Param("index", integer()), Param("size", integer(1)), Param("device", NAME), Param("seq", integer())],
    public=True,
)
def inclusion() -> Response:
    only_args()
    db = get_db()
    current = ledger.size(db)
    if current == 0:
        raise Problem("not-found", "size", "the ledger is empty: there is nothing to prove")
    by_packet = "device" in request.args or "seq" in request.args
    if by_packet and "index" in request.args:
        raise Problem("bad-request", "index", "give either index, or device and seq, not both")
    if by_packet:
        if "device" not in request.args:
            raise Problem("bad-request", "device", "required with seq")
        device_id, seq = request.args["device"], int_arg("seq", None, 0, 2**63 - 1)
        try:
            index = ingest.packet_entry(db, device_id, seq)
        except LookupError:
            raise Problem("not-found", "seq", f"no packet {seq} of device {device_id}") from None
    else:
        index = int_arg("index", None, 0, 2**63 - 1)
    size = _size_arg("size", current, current)
    if index >= size:
        raise Problem("unprocessable", "index", f"entry {index} is not in a tree of size {size} (0 to {size - 1})")
    proof = ledger.inclusion_proof(db, index, size)
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
@operation(
    "Consistency proof between two tree sizes; to defaults to the ledger's",
    {200: types.ConsistencyProof},
    query=[Param("from", integer(1), True), Param("to", integer(1))],
    public=True,
)
def consistency() -> Response:
    only_args()
    db = get_db()
    current = ledger.size(db)
    if current == 0:
        raise Problem("not-found", "to", "the ledger is empty: there is nothing to prove")
    first = _size_arg("from", current)
    second = _size_arg("to", current, current)
    if first > second:
        raise Problem("bad-request", "from", f"from={first} is larger than to={second}")
    proof = ledger.consistency_proof(db, first, second)
    return jsonify({"from": first, "to": second, "proof": [h.hex() for h in proof]})


@bp.get("/v1/ledger/entries/<index:index>")
@operation("One ledger entry (public, as the tiles under /log/ are)", {200: types.LedgerEntry}, public=True)
def entry(index: int) -> Response:
    """Public, as the tiles are: the ledger holds no raw token and no reading (docs/ledger.md)."""
    only_args()
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


def _packet_receipt(db: Any, device_id: str, seq: int) -> dict[str, Any]:
    """The receipt of a device's packet seq (checkpoints.receipt), or a not-found problem."""
    try:
        index = ingest.packet_entry(db, device_id, seq)
    except LookupError:
        raise Problem("not-found", "seq", f"no packet {seq} of {device_id}") from None
    return checkpoints.receipt(db, index, signer())


@bp.get("/v1/packets/<device_id>/<index:seq>/header")
@operation(
    "A packet's signed header (no reading), its ledger entry, inclusion proof and checkpoint (public)",
    {200: types.PacketHeader},
    public=True,
)
def packet_header(device_id: str, seq: int) -> Response:
    """Public: a packet's signed header (no reading), its ledger entry and inclusion receipt."""
    only_args()
    db = get_db()
    proof = _packet_receipt(db, device_id, seq)
    header = ledger.entry(db, proof["ledger_index"]).body["header"]
    h = decode_packet_header(header)
    return jsonify(
        {
            "device_id": device_id,
            "seq": seq,
            "header": header.hex(),
            "root": h.root.hex(),
            "count": h.count,
            "first_time": iso(h.first_ts),
            "last_time": iso(h.last_ts),
            **proof,
        }
    )


@bp.get("/v1/packets/<device_id>/<index:seq>")
@operation("A packet with its ledger proof and a checkpoint (utility, auditor)", {200: types.PacketWithProofs})
@require("utility", "auditor")
def packet(device_id: str, seq: int) -> Response:
    """A packet with its proofs: the bytes as sent, its ledger entry and inclusion, a checkpoint."""
    only_args()
    db = get_db()
    try:
        data = ingest.stored_packet(db, device_id, seq)
    except LookupError:
        raise Problem("not-found", "seq", f"no packet {seq} of {device_id}") from None
    proof = _packet_receipt(db, device_id, seq)
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
                "first_time": iso(p.header.first_ts),
                "last_time": iso(p.header.last_ts),
                "prev": p.header.prev.hex(),
            },
            "ledger_index": proof["ledger_index"],
            "tree_size": proof["tree_size"],
            "inclusion_proof": proof["inclusion_proof"],
            "checkpoint": proof["checkpoint"],
        }
    )
