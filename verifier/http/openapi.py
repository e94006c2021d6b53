"""GET /v1/openapi.json: the API as an OpenAPI 3.1 document, generated, not written: its paths
from the application's URL map and each view's declaration (verifier/http/declare.py), its
schemas from the request and answer types (verifier/http/types.py, by pydantic), every field
described by name (fields.py). A route without a declaration cannot be documented, so it
fails here (and in tests/test_openapi_routes.py). Checked against real answers in the tests."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import TypeAdapter

from verifier.http import types
from verifier.http.declare import HEX_SCHEMA, Media, Operation, Param, declared, operation
from verifier.http.fields import describe

bp = Blueprint("openapi", __name__)

TIME_QUERY = types.TIME_SCHEMA  # the one schema of a time given in a query or a body
# Defined by other specifications, documented there and in docs/: not OpenAPI paths.
OWN_SPECS = ("/ocpi/", "/log/")
# Path parameters by name: the same name is the same thing on every path.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "device_id": {"type": "string", "pattern": types.NAME_PATTERN},
    "community_id": {"type": "string", "pattern": types.NAME_PATTERN},
    "account_id": {"type": "string", "pattern": types.NAME_PATTERN},
    "name": {"type": "string", "pattern": types.NAME_PATTERN},
    "session_id": HEX_SCHEMA,
    "key_id": {"type": "string"},
}
INDEX = {"type": "integer", "minimum": 0, "maximum": types.MAX_INDEX}  # the <index:...> converter
PROBLEM = {
    "description": "RFC 9457 problem details; the type is one of the stable types listed in docs/protocol.md",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
INFO = {
    "title": "wattproof verifier",
    "version": "1",
    "description": "Signed energy data from devices, an append-only ledger, records for utilities."
    " Unknown query parameters are refused (400); times are Unix seconds or ISO 8601 and come back as both.",
}
SECURITY = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "API key wp_<id>_<secret>; roles admin, installer, utility, auditor, account",
    }
}


class _Schemas:
    """Every type the declarations name, turned into components/schemas in one pass."""

    def __init__(self) -> None:
        self.types: list[Any] = []

    def ref(self, value: Any) -> dict[str, Any]:
        """A placeholder for value (a type, or a JSON Schema as it is), filled in by resolve()."""
        if isinstance(value, dict):
            return value
        self.types.append(value)
        return {"$type": len(self.types) - 1}

    def resolve(self, document: dict[str, Any]) -> dict[str, Any]:
        inputs = [(n, "validation", TypeAdapter(t)) for n, t in enumerate(self.types)]
        found, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
        schemas = {n: found[(n, "validation")] for n in range(len(self.types))}

        def fill(node: Any) -> Any:
            if isinstance(node, dict):
                if set(node) == {"$type"}:
                    return fill(schemas[node["$type"]])
                return {k: fill(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
            if isinstance(node, list):
                return [fill(v) for v in node]
            return node

        document = fill(document)
        document["components"]["schemas"] = fill(defs.get("$defs", {}))
        return document


def _content(schemas: _Schemas, value: Any, description: str = "OK") -> dict[str, Any]:
    if isinstance(value, Media):
        return {
            "description": value.description,
            "content": {media: {"schema": schemas.ref(s)} for media, s in value.content.items()},
        }
    if isinstance(value, tuple):
        value, description = value
    return {"description": description, "content": {"application/json": {"schema": schemas.ref(value)}}}


def _param(schemas: _Schemas, p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.required, "schema": schemas.ref(p.schema)}
    if p.description:
        out["description"] = p.description
    return out


def _operation(schemas: _Schemas, op: Operation, path_params: list[dict[str, Any]]) -> dict[str, Any]:
    answers = {str(status): _content(schemas, answer) for status, answer in op.answers.items()}
    out: dict[str, Any] = {"summary": op.summary, "responses": {**answers, "4XX": PROBLEM, "5XX": PROBLEM}}
    parameters = path_params + [_param(schemas, p) for p in (*op.query, *op.headers)]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        content = _content(schemas, op.body)["content"]
        out["requestBody"] = {"required": True, "content": content}
    out["security"] = [] if op.public else [{"apiKey": []}]
    return out


def document(app: Flask) -> dict[str, Any]:
    """The document of app's API routes (not the pages, not other specifications' paths)."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.startswith(("web.", "static")) or (rule.rule + "/").startswith(OWN_SPECS):
            continue
        op = declared(app.view_functions[rule.endpoint])
        if op is None:
            raise LookupError(f"{rule.rule} ({rule.endpoint}) has no declaration (verifier/http/declare.py)")
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        path_params = [
            {"name": name, "in": "path", "required": True,
             "schema": INDEX if converter == "index" else PATH_PARAMS[name]}
            for converter, name in re.findall(r"<(?:([a-z]+):)?([a-z_]+)>", rule.rule)
        ]  # fmt: skip
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(schemas, op, path_params)
    built = schemas.resolve(
        {
            "openapi": "3.1.0",
            "info": INFO,
            "components": {"schemas": {}, "securitySchemes": SECURITY},
            "paths": paths,
        }
    )
    describe(built)  # every field its meaning, unit and sign (verifier/http/fields.py)
    return built


@bp.get("/v1/openapi.json")
@operation("This document", {200: dict[str, Any]}, public=True)
def openapi() -> Response:
    built = current_app.extensions.get("wattproof.openapi")
    if built is None:
        built = current_app.extensions["wattproof.openapi"] = document(current_app)
    return jsonify(built)
