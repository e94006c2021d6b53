"""Energy communities: configuration (admin), allocation per step and the monthly
settlement (utility, auditor, account). docs/communities.md."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from verifier.certificates import registry
from verifier.communities import operation
from verifier.devices import records
from verifier.devices.ingest import MAX_BATCH_BYTES
from verifier.http import created, json_body, only_args, text_field, time_field, time_range, types
from verifier.http.access import get_db, own_account, require, writing
from verifier.http.declare import Media, Param, enum, times
from verifier.http.declare import operation as declare
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("communities", __name__)
READERS = ("utility", "auditor", "account")
MAX_CSV_BYTES = MAX_BATCH_BYTES  # the largest body the server reads: a month of 15 minutes for ~150 members


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    step = body.get("step_s")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step not in (900, 1800)):
        raise Problem("bad-request", "step_s", "the step is 900 or 1800 seconds")
    coefficients = body.get("coefficients")
    if coefficients is not None and not isinstance(coefficients, dict):
        raise Problem("bad-request", "coefficients", "expected an object: device id -> decimal")
    price = body.get("price_per_kwh", "0")
    if isinstance(price, bool) or not isinstance(price, str | int | float):
        raise Problem("bad-request", "price_per_kwh", "expected a decimal price")
    return {
        "step_s": None if step is None else int(step),
        "key": text_field(body, "key", "dynamic", limit=20),
        "coefficients": coefficients,
        "price_per_kwh": str(price),
    }


def _known(community_id: str) -> set[str] | None:
    """The community exists by its id's shape; for an account key, it must have one of the
    account's devices as a member, and the answer is the devices whose rows it may see (None:
    every member's)."""
    if not operation.COMMUNITY_ID.fullmatch(community_id):
        raise Problem("not-found", "community_id", f"no community {community_id}")
    own = own_account()
    if own is None:
        return None
    mine = registry.account_devices(get_db(), own)
    if not mine & operation.member_devices(get_db(), community_id):
        raise Problem("forbidden", "community_id", f"no device of account {own} is a member of {community_id}")
    return mine


@bp.get("/v1/communities")
@declare("Every energy community with its members and settings", {200: types.Communities})
@require(*READERS)
def list_communities() -> Response:
    """Every community; an account key sees those its devices are members of, with its own members."""
    only_args()
    db = get_db()
    own = own_account()
    if own is None:
        return jsonify({"communities": operation.list_all(db)})
    mine = registry.account_devices(db, own)
    shown = [
        operation.for_members(c, mine) for c in operation.list_all(db) if mine & {m["device_id"] for m in c["members"]}
    ]
    return jsonify({"communities": shown})


@bp.post("/v1/communities")
@declare("Create an energy community with its first settings (admin)", {201: types.Community}, body=types.CommunityBody)
@require()
def create_community() -> tuple[Response, int]:
    only_args()
    body = json_body()
    community_id = text_field(body, "community_id", limit=64)
    db = get_db()
    with writing(db):
        operation.create(
            db, community_id, text_field(body, "name"), text_field(body, "grid_area", "", limit=64),
            text_field(body, "currency", "EUR", limit=3), time_field(body, "from") or 0, **_settings(body),
        )  # fmt: skip
    log.info("community %s created", community_id)
    return created(operation.describe(db, community_id))


@bp.get("/v1/communities/<community_id>")
@declare("One community: members and settings history", {200: types.Community})
@require(*READERS)
def show_community(community_id: str) -> Response:
    only_args()
    mine = _known(community_id)
    try:
        return jsonify(operation.for_members(operation.describe(get_db(), community_id), mine))
    except LookupError as e:
        raise Problem("not-found", "community_id", str(e)) from None


@bp.post("/v1/communities/<community_id>/members")
@declare(
    "A producer or consumer device joins, from a time, maybe until one (admin)",
    {201: types.Community},
    body=types.MemberBody,
)
@require()
def add_member(community_id: str) -> tuple[Response, int]:
    only_args()
    _known(community_id)
    body = json_body()
    db = get_db()
    with writing(db):
        index = operation.add_member(
            db, community_id, text_field(body, "device_id", limit=64), time_field(body, "from") or 0,
            time_field(body, "until", required=False),
        )  # fmt: skip
    return created({"community_id": community_id, "ledger_index": index, **operation.describe(db, community_id)})


@bp.post("/v1/communities/<community_id>/members/<device_id>/end")
@declare(
    "A membership ends: the one that began at from, at until (exclusive; until = from: it never took effect);"
    " only ever shortens a membership (admin)",
    {201: types.Community},
    body=types.EndMemberBody,
)
@require()
def end_member(community_id: str, device_id: str) -> tuple[Response, int]:
    """The membership that began at `from` ends at `until` (exclusive; equal to `from`: it never
    took effect): how an operator ends a device's membership, or one of two that overlap."""
    only_args()
    _known(community_id)
    body = json_body()
    db = get_db()
    with writing(db):
        index = operation.end_member(
            db, community_id, device_id, time_field(body, "from") or 0, time_field(body, "until") or 0
        )
    return created({"community_id": community_id, "ledger_index": index, **operation.describe(db, community_id)})


@bp.post("/v1/communities/<community_id>/settings")
@declare(
    "Settings in force from a step on: step, allocation key, price (admin)",
    {201: types.Community},
    body=types.SettingsBody,
)
@require()
def change_settings(community_id: str) -> tuple[Response, int]:
    """New settings (step, key, price) in force from a step on; the earlier ones stay for earlier steps."""
    only_args()
    _known(community_id)
    body = json_body()
    db = get_db()
    with writing(db):
        operation.change_settings(db, community_id, time_field(body, "from") or 0, **_settings(body))
    return created(operation.describe(db, community_id))


@bp.post("/v1/communities/<community_id>/coefficients")
@declare(
    "Per-step coefficients for the per-step key: CSV Horodate;<member>;... (admin)",
    {201: types.CoefficientsRecorded},
    body=Media({"text/csv": {"type": "string"}}),
)
@require()
def upload_coefficients(community_id: str) -> tuple[Response, int]:
    """Per-step coefficients as CSV (Horodate;<member>;...), for the per-step key."""
    only_args()
    _known(community_id)
    if request.mimetype != "text/csv":
        raise Problem("unsupported-media-type", "Content-Type", f"expected text/csv, got {request.mimetype or 'none'}")
    request.max_content_length = MAX_CSV_BYTES  # beyond the 64 KiB other JSON bodies get
    if (request.content_length or 0) > MAX_CSV_BYTES:
        raise Problem("body-too-large", "body", f"at most {MAX_CSV_BYTES} bytes")
    try:
        text = request.get_data(cache=False).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem("bad-request", "body", "the CSV must be UTF-8") from None
    db = get_db()
    with writing(db):
        index, count = operation.upload_coefficients(db, community_id, text)
    return created({"community_id": community_id, "ledger_index": index, "steps": count})


def _span() -> tuple[int, int]:
    return time_range(default=None)


@bp.get("/v1/communities/<community_id>/allocation")
@declare(
    "Allocation per step and member (JSON), or one quantity per step as CSV; at most 3000 steps",
    {200: Media({"application/json": types.Allocation, "text/csv": {"type": "string"}})},
    query=[
        *times(required=True),
        Param("format", enum(["json", "csv"], "json")),
        Param("quantity", enum(operation.CSV_QUANTITIES, "allocated")),
    ],
)
@require(*READERS)
def allocation(community_id: str) -> Response:
    """Per step and member: consumption, local energy allocated, energy from the grid, each
    producer's production, supply and surplus. JSON, or the per-step CSV (format=csv) of one
    quantity (allocated by default)."""
    only_args()
    mine = _known(community_id)
    start, end = _span()
    form = request.args.get("format", "json")
    if form not in ("json", "csv"):
        raise Problem("bad-request", "format", "expected json or csv")
    quantity = request.args.get("quantity", "allocated")
    if quantity not in operation.CSV_QUANTITIES:
        raise Problem("bad-request", "quantity", f"expected one of {', '.join(operation.CSV_QUANTITIES)}")
    try:
        rows = operation.steps(get_db(), community_id, start, end)
    except records.TooMuchWork as e:
        raise Problem("unprocessable", "to", str(e)) from None
    if mine is not None:
        rows = [operation.step_of_members(s, mine) for s in rows]
    if form == "csv":
        name = f"{community_id}-{quantity}-{records.iso(start)[:10]}.csv"
        return Response(
            operation.to_csv(rows, quantity),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return jsonify({"community_id": community_id, "steps": [operation.step_json(s) for s in rows]})


@bp.get("/v1/communities/<community_id>/settlement")
@declare(
    "The month's settlement statement at the community's price",
    {200: types.Settlement},
    query=[Param("month", {"type": "string", "pattern": "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"}, True)],
)
@require(*READERS)
def settlement(community_id: str) -> Response:
    """The month's settlement statement at the community's price (month=YYYY-MM, UTC)."""
    only_args()
    mine = _known(community_id)
    month = request.args.get("month")
    if month is None:
        raise Problem("bad-request", "month", "required: YYYY-MM")
    try:
        operation.month_span(month)
    except ValueError as e:
        raise Problem("bad-request", "month", str(e)) from None
    return jsonify(operation.for_members(operation.settlement(get_db(), community_id, month), mine))
