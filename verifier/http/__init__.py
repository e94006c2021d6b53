"""The verifier's HTTP API: one blueprint per area. Views parse and answer; plain modules work."""

from __future__ import annotations

from typing import Any

import cbor2
from flask import Response, current_app, jsonify, request

from verifier.devices import records
from verifier.log import note
from verifier.wire import strict_cbor
from verifier.wire.problems import Problem


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


def json_body(kind: Any = None) -> dict[str, Any]:
    """The request's JSON object, valid for its type (verifier/http/types.py; by default the
    body the endpoint declares, verifier/http/declare.py): a field not in it, a missing one,
    or a value of another type or shape is refused, naming the field. The view reads the
    object as sent, its integral numbers as integers."""
    from pydantic import TypeAdapter, ValidationError

    from verifier.http.declare import declared

    if kind is None:
        op = declared(current_app.view_functions[request.endpoint]) if request.endpoint else None
        kind = op.body if op is not None else None
        if kind is None:
            raise LookupError(f"{request.endpoint} declares no JSON body")

    if request.mimetype != "application/json":
        raise Problem(
            "unsupported-media-type", "Content-Type", f"expected application/json, got {request.mimetype or 'none'}"
        )
    sent = request.get_json(silent=True)
    if not isinstance(sent, dict):
        raise Problem("bad-request", "body", "expected a JSON object")
    body: dict[str, Any] = _integers(sent)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    try:
        adapter.validate_python(body, strict=True)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        field = str(first["loc"][0]) if first["loc"] else "body"
        if first["type"] == "extra_forbidden":
            known = ", ".join(_field_names(adapter)) or "none"
            raise Problem("bad-request", field, f"unknown field; expected {known}") from None
        if first["type"] == "missing":
            raise Problem("bad-request", field, "required") from None
        raise Problem("bad-request", field, f"{where}: {first['msg']}") from None
    return body


_ADAPTERS: dict[Any, Any] = {}


def _integers(value: Any) -> Any:
    """JSON's numbers as JSON Schema reads them: 5.0 is the integer 5 (no body field is a
    fraction: prices and coefficients are decimal strings)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    return value


def _field_names(adapter: Any) -> list[str]:
    schema = adapter.json_schema()
    return list(schema.get("properties", {}))


def text_field(body: dict[str, Any], name: str, default: str | None = None, limit: int = 200) -> str:
    """A text field of a JSON body: present (unless it has a default), text, at most limit characters."""
    value = body.get(name, default)
    if value is None:
        raise Problem("bad-request", name, "required")
    if not isinstance(value, str):
        raise Problem("bad-request", name, "expected text")
    if len(value) > limit:
        raise Problem("bad-request", name, f"at most {limit} characters")
    return value


def only_args(*names: str) -> None:
    """Refuses a query parameter the endpoint does not declare (verifier/http/declare.py; names:
    those of an endpoint another specification declares, OCPI's): a typo must not pass
    silently; and one given twice."""
    from verifier.http.declare import declared

    op = declared(current_app.view_functions[request.endpoint]) if request.endpoint else None
    allowed = names or (op.query_names if op is not None else ())
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise Problem("bad-request", unknown[0], f"unknown query parameter; this endpoint takes: {known}")
    for name in allowed:
        if len(request.args.getlist(name)) > 1:
            raise Problem("bad-request", name, "given more than once")


def int_arg(name: str, default: int | None = None, low: int = 0, high: int = 2**62) -> int:
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise Problem("bad-request", name, "required")
        return default
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdecimal()) or len(raw) > 20:
        raise Problem("bad-request", name, f"expected an integer, {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise Problem("bad-request", name, f"expected {low} to {high}")
    return value


MAX_TIME = records.MAX_TIME


def time_arg(name: str, default: int | None = None) -> int:
    """A time as Unix seconds or ISO 8601 with Z or an offset (2026-11-18T11:00:00Z, ...+01:00)."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise Problem("bad-request", name, "required: Unix seconds or ISO 8601 (2026-11-18T11:00:00Z)")
        return default
    try:
        return parse_time(raw)
    except ValueError as e:
        raise Problem("bad-request", name, str(e)) from None


def time_range(
    first: str = "from", last: str = "to", default: tuple[int, int] | None = (0, MAX_TIME)
) -> tuple[int, int]:
    """Two time arguments that bound a query, the first not after the second (a 400 naming
    both otherwise, everywhere a range is asked). default: when absent (None: required)."""
    start = time_arg(first, None if default is None else default[0])
    end = time_arg(last, None if default is None else default[1])
    if start > end:
        raise Problem("bad-request", first, f"{first} ({records.iso(start)}) is after {last} ({records.iso(end)})")
    return start, end


parse_time = records.parse_time  # the one parser of times given by people (ISO 8601 or Unix seconds)


def time_field(body: dict[str, Any], name: str, required: bool = True) -> int | None:
    """A time in a JSON body: Unix seconds (an integral float too: JSON Schema's integer) or
    ISO 8601; None when absent and not required."""
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Problem("bad-request", name, "required: Unix seconds or ISO 8601")
    try:
        return parse_time(str(value))
    except ValueError as e:
        raise Problem("bad-request", name, str(e)) from None


def iso(ts: int | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, as every answer gives beside them."""
    return None if ts is None else records.iso(ts)


def signer() -> note.Signer:
    s: note.Signer = current_app.extensions["wattproof.log_signer"]
    return s


def created(body: dict[str, Any], status: int = 201) -> tuple[Response, int]:
    return jsonify(body), status
