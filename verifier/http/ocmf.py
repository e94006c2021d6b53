"""Third-party Eichrecht chargers: enrollment by their OCMF public key (admin, installer) and
the OCMF records they signed (admin), plain or in the S.A.F.E. XML container. Their sessions
and CDRs are served where the boards' are. docs/charging.md."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from verifier.charging import ocmf_chargers
from verifier.http import created, json_body, only_args, types
from verifier.http.access import get_db, require, writing
from verifier.http.declare import Media, operation
from verifier.http.devices import enrollment_answer
from verifier.wire.problems import Problem

bp = Blueprint("ocmf", __name__)
MAX_BODY = 2 * 1024 * 1024  # a request of MAX_RECORDS records of ~2 KB


@bp.post("/v1/ocmf/chargers")
@operation(
    "Enroll a third-party Eichrecht charger by its OCMF public key (installer, admin): docs/charging.md",
    {200: types.Receipt, 201: types.Receipt},
    body=types.OcmfChargerBody,
)
@require("installer")
def enroll() -> tuple[Response, int]:
    only_args()
    device = ocmf_chargers.device_record(json_body())
    db = get_db()
    with writing(db):
        index, again = ocmf_chargers.enroll(db, device, g.api_key_name)
    return created(enrollment_answer(device, index, again), 200 if again else 201)


@bp.post("/v1/ocmf")
@operation(
    "OCMF records a third-party charger signed: text (a record a line, each maybe followed by its public key) or"
    " the S.A.F.E. XML container; all appended to the ledger, or none (admin)",
    {200: types.OcmfImported, 201: types.OcmfImported},
    body=Media({"text/plain": {"type": "string"}, "application/xml": {"type": "string"}}),
)
@require()
def post_records() -> tuple[Response, int]:
    """OCMF records as text/plain (a record a line, each optionally followed by its public key
    on the next) or application/xml (the S.A.F.E. container): all appended, or none."""
    only_args()
    if request.mimetype not in ("text/plain", "application/xml", "text/xml"):
        raise Problem("unsupported-media-type", "Content-Type",
                      f"expected text/plain or application/xml, got {request.mimetype or 'none'}")  # fmt: skip
    request.max_content_length = MAX_BODY
    if (request.content_length or 0) > MAX_BODY:
        raise Problem("body-too-large", "body", f"at most {MAX_BODY} bytes")
    items = ocmf_chargers.parse_body(request.get_data(cache=False), request.mimetype)
    keep = bool(current_app.config.get("OCMF_KEEP_IDENTIFICATION"))
    db = get_db()
    with writing(db):
        done = ocmf_chargers.import_records(db, items, keep)
    records = [
        {"device_id": r.device_id, "session_id": r.session_id, "ledger_index": r.ledger_index, "duplicate": r.duplicate}
        for r in done
    ]
    return created({"records": records}, 201 if any(not r.duplicate for r in done) else 200)
