"""API keys, for admins: list (never a secret), create (the token is shown once), revoke."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from verifier import auth
from verifier.http import created, iso, json_body, only_args, parse_time, text_field, types
from verifier.http.access import get_db, require, writing
from verifier.http.declare import operation
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")
bp = Blueprint("keys", __name__)


def key_json(key: dict[str, Any]) -> dict[str, Any]:
    """A key's record with every time both as Unix seconds and as ISO 8601."""
    out = dict(key)
    for name in ("created_at", "expires_at", "last_used_at"):
        out[name.replace("_at", "_time")] = iso(key[name])
    return out


@bp.get("/v1/keys")
@operation("Every API key, without secrets (admin)", {200: types.ApiKeys})
@require()
def list_keys() -> Response:
    only_args()
    return jsonify({"keys": [key_json(k) for k in auth.list_keys(get_db())]})


@bp.post("/v1/keys")
@operation("Create an API key (admin); the token is in this answer only", {201: types.ApiKey}, body=types.KeyBody)
@require()
def create_key() -> tuple[Response, int]:
    only_args()
    body = json_body()
    name, role = text_field(body, "name", limit=100), text_field(body, "role")
    for field in ("installer", "account", "expires"):
        if field in body and body[field] is None:
            raise Problem("bad-request", field, "leave the field out rather than null")
    installer = body.get("installer")
    if installer is not None and not isinstance(installer, str):
        raise Problem("bad-request", "installer", "expected an installer name")
    account = body.get("account")
    if account is not None and not isinstance(account, str):
        raise Problem("bad-request", "account", "expected an account id")
    expires = body.get("expires")
    if isinstance(expires, float) and expires.is_integer():
        expires = int(expires)  # 5088.0 is an integer to JSON Schema
    expires_at = None
    if expires is not None:
        try:
            expires_at = parse_time(str(expires)) if isinstance(expires, str | int) else None
        except ValueError as e:
            raise Problem("bad-request", "expires", str(e)) from None
        if expires_at is None or isinstance(expires, bool):
            raise Problem("bad-request", "expires", "expected Unix seconds or ISO 8601")
    db = get_db()
    try:
        with writing(db):
            token = auth.create_key(db, name, role, expires_at, installer, account)
    except ValueError as e:
        if "register it first" in str(e):
            raise Problem("unknown-installer", "installer", str(e)) from None
        if "create it first" in str(e):
            raise Problem("unknown-account", "account", str(e)) from None
        if "in the future" in str(e):
            raise Problem("unprocessable", "expires", str(e)) from None
        field = (
            "role" if "role" in str(e) else "installer" if "installer" in str(e)
            else "account" if "account" in str(e) else "name"
        )  # fmt: skip
        raise Problem("bad-request", field, str(e)) from None
    key_id = token.split("_")[1]
    log.info("API key %s (%s, %s) created by %s", key_id, role, name, g.api_key_name)
    record = next(k for k in auth.list_keys(db) if k["key_id"] == key_id)
    return created({**key_json(record), "token": token})


@bp.post("/v1/keys/<key_id>/revoke")
@operation("Revoke an API key at once (admin)", {200: types.KeyRevoked})
@require()
def revoke_key(key_id: str) -> tuple[Response, int]:
    only_args()
    if request.content_length:
        json_body(types.Empty)  # an optional JSON body, empty (nothing in it is needed)
    db = get_db()
    try:
        with writing(db):
            auth.revoke_key(db, key_id)
    except LookupError as e:
        raise Problem("not-found", "key_id", str(e)) from None
    log.info("API key %s revoked by %s", key_id, g.api_key_name)
    return created({"key_id": key_id, "status": "revoked"}, 200)
