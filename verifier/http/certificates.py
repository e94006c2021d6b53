"""Granular certificates: the issued bundles (utility, auditor) and issuing them (admin)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify, request

from verifier import certificates
from verifier.http import MAX_TIME, int_arg, only_args, signer, time_arg
from verifier.http.access import get_db, require
from verifier.packet import DEVICE_ID
from verifier.problems import Problem

bp = Blueprint("certificates", __name__)


@bp.get("/v1/certificates")
@require("utility", "auditor")
def list_bundles() -> Response:
    only_args("device_id", "from", "to", "cursor", "limit")
    device_id = request.args.get("device_id")
    if device_id is not None and not DEVICE_ID.fullmatch(device_id):
        raise Problem("bad-request", "device_id", "expected a device id [a-z0-9][a-z0-9._-]{0,63}")
    start, end = time_arg("from", 0), time_arg("to", MAX_TIME)
    if start > end:
        raise Problem("bad-request", "from", "from is after to")
    cursor = int_arg("cursor", -1, 0, 2**63 - 1)
    out, next_cursor = certificates.bundles(
        get_db(), device_id, start, end, None if cursor < 0 else cursor, int_arg("limit", 100, 1, 1000)
    )
    return jsonify({"bundles": out, "next_cursor": next_cursor, "face_value_wh": certificates.FACE_VALUE_WH})


@bp.post("/v1/certificates/issue")
@require()
def issue() -> Response:
    """Issues every complete, measured producer hour that was not decided yet (admin)."""
    only_args()
    db = get_db()
    issued, skipped = certificates.issue_all(
        db, int(time.time()), signer().name, int(current_app.config["CERTIFICATE_EXPIRY_S"])
    )
    return jsonify(
        {
            "issued": len(issued),
            "issued_wh": sum(b["bundle_quantity"] for b in issued),
            "skipped": len(skipped),
            "bundles": [
                {k: b[k] for k in ("issuance_id", "bundle_quantity", "bundle_id_range_start", "ledger_index")}
                for b in issued
            ],
        }
    )
