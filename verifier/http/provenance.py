"""Provenance certificates over HTTP (docs/provenance.md): the file `wattproof verify`
checks offline. They carry readings, so they are for the roles that read them."""

from __future__ import annotations

from flask import Blueprint, Response

from verifier.certificates import registry
from verifier.http import only_args, signer, types
from verifier.http.access import get_db, own_account, require
from verifier.http.declare import Media, operation
from verifier.provenance import build as pf
from verifier.wire.problems import Problem

bp = Blueprint("provenance", __name__)
PROVENANCE = Media(
    {"application/json": types.ProvenanceFile},
    "The provenance certificate (docs/provenance.md): check it with `wattproof verify`",
)


def _file(make: object, *args: object) -> Response:
    only_args()
    try:
        data: bytes = make(get_db(), signer(), *args)  # type: ignore[operator]
    except LookupError as e:
        raise Problem("not-found", "path", str(e.args[0]) if e.args else "no such record") from None
    response = Response(data, content_type="application/json")
    response.headers["Content-Disposition"] = "attachment; filename=provenance.json"
    return response


@bp.get("/v1/devices/<device_id>/readings/<index:number>/certificate")
@operation("A reading's provenance certificate (utility, auditor)", {200: PROVENANCE})
@require("utility", "auditor")
def reading(device_id: str, number: int) -> Response:
    return _file(pf.for_reading, device_id, number)


@bp.get("/v1/packets/<device_id>/<index:seq>/certificate")
@operation("The packet's provenance certificate (utility, auditor)", {200: PROVENANCE})
@require("utility", "auditor")
def packet(device_id: str, seq: int) -> Response:
    return _file(pf.for_packet, device_id, seq)


@bp.get("/v1/devices/<device_id>/sessions/<session_id>/certificate")
@operation("A charging session's provenance certificate (utility, auditor)", {200: PROVENANCE})
@require("utility", "auditor")
def session(device_id: str, session_id: str) -> Response:
    return _file(pf.for_session, device_id, session_id)


@bp.get("/v1/certificates/<index:ledger_index>/provenance")
@operation(
    "A granular certificate's provenance certificate, by its issuance entry (utility, auditor, account)",
    {200: PROVENANCE},
)
@require("utility", "auditor", "account")
def granular(ledger_index: int) -> Response:
    """An account key gets the file of a certificate it holds a part of, or that was claimed for it."""
    own = own_account()
    if own is not None:
        try:
            issuance_id = registry.issuance(get_db(), ledger_index)["issuance_id"]
        except LookupError:
            raise Problem("not-found", "path", f"no certificate was issued by ledger entry {ledger_index}") from None
        if not registry.holds_any(get_db(), own, issuance_id):
            raise Problem("forbidden", "path", f"account {own} holds no part of this certificate")
    return _file(pf.for_certificate, ledger_index)
