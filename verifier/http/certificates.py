"""Granular certificates and the registry: bundles, issuing (admin), accounts, transfers,
claims with their cancellation statements, withdrawals (admin). docs/certificates.md."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from verifier.certificates import issuance, matching, registry
from verifier.devices import records
from verifier.http import created, int_arg, json_body, only_args, signer, text_field, time_field, time_range, types
from verifier.http.access import get_db, own_account, require, writing
from verifier.http.declare import IDEMPOTENCY_KEY, NAME, Media, Param, cursor, enum, integer, limit, operation, times
from verifier.storage import Connection
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("certificates", __name__)
READERS = ("utility", "auditor", "account")


def _id_arg(name: str, pattern: Any, what: str) -> str | None:
    value = request.args.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise Problem("bad-request", name, f"expected {what}")
    return value


@bp.get("/v1/certificates")
@operation(
    "Certificate bundles by production hour, in id order, cursor pagination (utility, auditor, account)",
    {200: types.Bundles},
    query=[
        Param("device_id", NAME),
        Param("account_id", NAME, description="the holder"),
        Param("status", enum(registry.STATUSES)),
        Param("claim_id", integer(), description="the bundles one claim cancelled"),
        *times(),
        cursor(),
        limit(1000, 100),
    ],
)
@require(*READERS)
def list_bundles() -> Response:
    only_args()
    device_id = _id_arg("device_id", DEVICE_ID, "a device id [a-z0-9][a-z0-9._-]{0,63}")
    account_id = _id_arg("account_id", registry.ACCOUNT_ID, "an account id [a-z0-9][a-z0-9._-]{0,63}")
    status = request.args.get("status")
    if status is not None and status not in registry.STATUSES:
        raise Problem("bad-request", "status", f"expected one of {', '.join(registry.STATUSES)}")
    start, end = time_range()
    cursor = int_arg("cursor", -1, 0, 2**63 - 1)
    claim_id = int_arg("claim_id", -1, 0, 2**63 - 1)
    own = own_account()
    if own is not None:  # an account sees the bundles it holds, and those of claims made for it
        if account_id not in (None, own):
            raise Problem("forbidden", "account_id", f"this key sees the certificates of account {own} only")
        account_id = own
        if claim_id >= 0 and registry.claim_party(get_db(), claim_id, own):
            account_id = None  # the claim's bundles, held by whoever claimed them for this account
    out, next_cursor = registry.list_bundles(
        get_db(), start, end, None if cursor < 0 else cursor, int_arg("limit", 100, 1, 1000),
        device_id=device_id, account_id=account_id, status=status, claim_id=None if claim_id < 0 else claim_id,
    )  # fmt: skip
    return jsonify({"bundles": out, "next_cursor": next_cursor, "face_value_wh": issuance.FACE_VALUE_WH})


@bp.post("/v1/certificates/issue")
@operation("Issue every complete, measured producer hour not decided yet (admin)", {200: types.Issued})
@require()
def issue() -> Response:
    """Issues every complete, measured producer hour that was not decided yet (admin)."""
    only_args()
    db = get_db()
    issued, skipped = issuance.issue_all(
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


def _acting_account(body: dict[str, Any], field: str) -> str | None:
    """The account an action moves certificates from: an account key's own (a different one
    named is refused); an admin's as named (absent: the issuing body's)."""
    named = body.get(field)
    if named is not None and not (isinstance(named, str) and registry.ACCOUNT_ID.fullmatch(named)):
        raise Problem("bad-request", field, "expected an account id")
    caller = g.caller
    if caller.role == "account":
        if named is not None and named != caller.account:
            raise Problem("forbidden", field, f"this key acts for account {caller.account} only")
        return str(caller.account)
    return named


def _time_field(body: dict[str, Any], name: str) -> int:
    value = time_field(body, name)
    assert value is not None
    return value


def _act(
    kind: str, body: dict[str, Any], answer: Callable[[Connection, int, list[registry.Bundle]], dict[str, Any]]
) -> tuple[Response, int]:
    """A registry action and its answer (201), in one commit. With an Idempotency-Key header
    the answer is stored in that commit under the caller's key: the same request again within
    24 hours gets the same answer (header Idempotency-Replayed: true), never a second action
    or a refusal of the first one's result; another request under the same key is refused."""
    db = get_db()
    idem = _idempotency_key()
    request_hash = hashlib.sha256(
        b"%s %s\n" % (request.method.encode(), request.path.encode()) + request.get_data()
    ).digest()
    with writing(db):
        kept = None if idem is None else registry.kept_answer(db, g.caller.key_id, idem)
        if kept is not None:
            if kept[0] != request_hash:
                raise Problem("unprocessable", "Idempotency-Key", "this Idempotency-Key was used for another"
                              " request in the last 24 hours: a new request takes a new key")  # fmt: skip
            replay = Response(kept[2], kept[1], mimetype="application/json")
            replay.headers["Idempotency-Replayed"] = "true"
            return replay, kept[1]
        index, named = registry.act(db, kind, body)
        out = answer(db, index, named)  # inside the commit (get_db() would roll it back)
        if idem is not None:
            registry.keep_answer(db, g.caller.key_id, idem, request_hash, 201, current_app.json.dumps(out))
    log.info("%s of %d Wh, ledger %d, by %s", kind, sum(b.quantity for b in named), index, g.api_key_name)
    return created(out)


def _idempotency_key() -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not (1 <= len(value) <= 255 and value.isascii() and value.isprintable()):
        raise Problem("bad-request", "Idempotency-Key", "1 to 255 printable ASCII characters")
    return value


@bp.post("/v1/certificates/transfer")
@operation(
    "Move certificate id ranges to another account; a range inside a bundle splits it (account, admin)",
    {201: types.Moved},
    body=types.TransferBody,
    headers=[IDEMPOTENCY_KEY],
)
@require("account")
def transfer() -> tuple[Response, int]:
    """Moves certificate id ranges (whole bundles or parts of them) to another account."""
    only_args()
    body = json_body()
    holder = _acting_account(body, "from_account")
    to = text_field(body, "to_account", limit=64)
    return _act("transfer", {"ranges": body.get("ranges"), "to_account": to, "from_account": holder}, _bundles_answer)


def _bundles_answer(db: Connection, index: int, named: list[registry.Bundle]) -> dict[str, Any]:
    bundles = registry.bundles_json(db, named)
    return {"ledger_index": index, "quantity_wh": sum(b.quantity for b in named), "bundles": bundles}


@bp.post("/v1/certificates/claim")
@operation(
    "Cancel certificate ranges for a beneficiary and consumption period; answers the statement",
    {201: types.Statement},
    body=types.ClaimBody,
    headers=[IDEMPOTENCY_KEY],
)
@require("account")
def claim() -> tuple[Response, int]:
    """Cancels certificate id ranges for a beneficiary and a consumption period (optionally a
    consumer device): they are Claimed and never move again. Answers the cancellation statement."""
    only_args()
    body = json_body()
    holder = _acting_account(body, "holder")
    beneficiary = body.get("beneficiary", holder)
    if beneficiary is None:
        raise Problem("unprocessable", "beneficiary", "name the account the claim is for")
    if not (isinstance(beneficiary, str) and registry.ACCOUNT_ID.fullmatch(beneficiary)):
        raise Problem("bad-request", "beneficiary", "expected an account id")
    device = body.get("consumer_device")
    if device is not None and not (isinstance(device, str) and DEVICE_ID.fullmatch(device)):
        raise Problem("bad-request", "consumer_device", "expected a device id")
    return _act(
        "claim",
        {
            "ranges": body.get("ranges"),
            "beneficiary": beneficiary,
            "period_start": _time_field(body, "period_start"),
            "period_end": _time_field(body, "period_end"),
            "consumer_device": device,
            "holder": holder,
        },
        lambda db, index, _: registry.statement(db, index),
    )


@bp.post("/v1/certificates/withdraw")
@operation(
    "The issuing body takes back active or expired certificates (admin)",
    {201: types.Moved},
    body=types.WithdrawBody,
    headers=[IDEMPOTENCY_KEY],
)
@require()
def withdraw() -> tuple[Response, int]:
    """The issuing body takes back certificates (admin): id ranges, or every active bundle of
    one issuance (an hour whose readings were later found wrong). Claimed ones stay claimed."""
    only_args()
    body = json_body()
    reason = text_field(body, "reason", limit=500)
    ranges = body.get("ranges")
    if ("issuance_id" in body) == (ranges is not None):
        raise Problem("bad-request", "issuance_id", "name either ranges or one issuance_id")
    if "issuance_id" in body:
        issuance_id = text_field(body, "issuance_id", limit=200)
        ranges = registry.issuance_ranges(get_db(), issuance_id)
        if not ranges:
            raise Problem("certificates-unavailable", "issuance_id", f"no active bundle of issuance {issuance_id!r}")
    return _act("withdraw", {"ranges": ranges, "reason": reason}, _bundles_answer)


@bp.get("/v1/claims")
@operation(
    "Claim batches in ledger order, cursor pagination (utility, auditor, account)",
    {200: types.Claims},
    query=[Param("beneficiary", NAME), cursor(), limit(1000, 100)],
)
@require(*READERS)
def list_claims() -> Response:
    """Claim batches; an account key sees those it made or that were made for it."""
    only_args()
    beneficiary = _id_arg("beneficiary", registry.ACCOUNT_ID, "an account id")
    cursor = int_arg("cursor", -1, 0, 2**63 - 1)
    out, next_cursor = registry.claims(
        get_db(), beneficiary, None if cursor < 0 else cursor, int_arg("limit", 100, 1, 1000), party=own_account()
    )
    return jsonify({"claims": out, "next_cursor": next_cursor})


@bp.get("/v1/claims/<index:claim_id>")
@operation("One claim's cancellation statement (utility, auditor, account)", {200: types.Statement})
@require(*READERS)
def claim_statement(claim_id: int) -> Response:
    only_args()
    try:
        found = registry.statement(get_db(), claim_id)
    except LookupError as e:
        raise Problem("not-found", "claim_id", str(e)) from None
    own = own_account()
    if own is not None and own not in (found["holder"], found["beneficiary"]):
        raise Problem("forbidden", "claim_id", f"this key sees the claims made by or for account {own} only")
    return jsonify(found)


@bp.get("/v1/accounts")
@operation("Every registry account with its devices and balances (utility, auditor, account)", {200: types.Accounts})
@require(*READERS)
def list_accounts() -> Response:
    """Every account with its devices and balance; an account key sees its own."""
    only_args()
    own = own_account()
    return jsonify({"accounts": [a for a in registry.accounts(get_db()) if own in (None, a["account_id"])]})


@bp.post("/v1/accounts")
@operation("Create a registry account, as a ledger entry (admin)", {201: types.Account}, body=types.AccountBody)
@require()
def create_account() -> tuple[Response, int]:
    only_args()
    body = json_body()
    account_id = text_field(body, "account_id", limit=64)
    db = get_db()
    with writing(db):
        registry.create_account(db, account_id, text_field(body, "name"), text_field(body, "kind", limit=20))
    return created(next(a for a in registry.accounts(db) if a["account_id"] == account_id))


@bp.post("/v1/accounts/<account_id>/devices")
@operation(
    "The account now owns the device: its later hours are issued to it (admin)",
    {201: types.Assigned},
    body=types.AssignBody,
)
@require()
def assign_device(account_id: str) -> tuple[Response, int]:
    only_args()
    body = json_body()
    device_id = text_field(body, "device_id", limit=64)
    db = get_db()
    with writing(db):
        index = registry.assign_device(db, account_id, device_id)
    return created({"account_id": account_id, "device_id": device_id, "ledger_index": index})


@bp.get("/v1/matching")
@operation(
    "Hourly matching of a consumer device or account: load against claimed certificates (utility, auditor,"
    " account); at most 8784 hours",
    {200: Media({"application/json": types.Matching, "text/csv": {"type": "string"}})},
    query=[
        Param("device_id", NAME, description="or account_id"),
        Param("account_id", NAME, description="or device_id"),
        *times(required=True),
        Param("format", enum(["json", "csv"], "json")),
    ],
)
@require(*READERS)
def hourly_matching() -> Response:
    """Hour by hour: a consumer device's or an account's load against the certificates
    claimed for it; the period's hourly and annual-volume match. JSON, or CSV (format=csv)."""
    only_args()
    device_id = _id_arg("device_id", DEVICE_ID, "a device id [a-z0-9][a-z0-9._-]{0,63}")
    account_id = _id_arg("account_id", registry.ACCOUNT_ID, "an account id [a-z0-9][a-z0-9._-]{0,63}")
    if (device_id is None) == (account_id is None):
        raise Problem("unprocessable", "device_id", "name a consumer device_id or an account_id (one of them)")
    start, end = time_range(default=None)
    form = request.args.get("format", "json")
    if form not in ("json", "csv"):
        raise Problem("bad-request", "format", "expected json or csv")
    db = get_db()
    caller = g.caller
    if caller.role == "account":
        own = account_id == caller.account or (
            device_id is not None and registry.device_account(db, device_id) == caller.account
        )
        if not own:
            raise Problem("forbidden", "account_id", f"this key sees the matching of account {caller.account} only")
    try:
        rows = matching.hours(db, start, end, device_id=device_id, account_id=account_id)
    except matching.NotAConsumer as e:
        raise Problem("not-found", "device_id" if device_id else "account_id", str(e)) from None
    except records.TooMuchWork as e:
        raise Problem("unprocessable", "to", str(e)) from None
    if form == "csv":
        name = f"matching-{device_id or account_id}-{records.iso(start)[:10]}.csv"
        return Response(
            matching.to_csv(rows),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return jsonify(
        {
            "device_id": device_id,
            "account_id": account_id,
            **records.widened(start, end, matching.HOUR),  # whole hours around the period asked, and says so
            "summary": matching.summary(rows),
            "hours": [matching.hour_json(h) for h in rows],
        }
    )
