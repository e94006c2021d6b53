"""The verifier's HTTP API: one blueprint per area. Views parse and answer; plain modules work."""

from __future__ import annotations

from typing import Any

import cbor2
from flask import Response, current_app, jsonify, request

from verifier import note, strict_cbor
from verifier.problems import Problem


def cbor_body() -> Any:
    """The request's CBOR body in the deterministic profile, or a problem naming why not."""
    if request.mimetype != "application/cbor":
        raise Problem("unsupported-media-type", "Content-Type", f"got {request.mimetype or 'none'}")
    try:
        return strict_cbor.loads(request.get_data(cache=False))
    except strict_cbor.CBORProfileError as e:
        raise Problem("malformed-cbor", "body", str(e)) from None
    except cbor2.CBORDecodeError as e:
        raise Problem("malformed-cbor", "body", str(e)) from None


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem("bad-request", "body", "expected a JSON object")
    return body


def int_arg(name: str, default: int | None = None, low: int = 0, high: int = 2**62) -> int:
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise Problem("bad-request", name, "required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem("bad-request", name, "expected an integer") from None
    if not low <= value <= high:
        raise Problem("bad-request", name, f"expected {low} to {high}")
    return value


def signer() -> note.Signer:
    s: note.Signer = current_app.extensions["wattproof.log_signer"]
    return s


def created(body: dict[str, Any], status: int = 201) -> tuple[Response, int]:
    return jsonify(body), status
