"""The OpenAPI document and the application agree: every route of the API (everything but
the pages, and the read paths other specifications define: OCPI's modules and the C2SP
tlog-tiles log) is a path of the document with the same methods, and every path of the
document is a route. The document is generated from the routes' declarations: a route
added without one fails here (the generator refuses it), and so does a declaration the
generator would leave out."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask

from tests.conftest import Database
from verifier.app import create_app
from verifier.http import openapi

# Defined by other specifications, documented there and in docs/: not OpenAPI paths.
OWN_SPECS = ("/ocpi/", "/log/")


def _routes(app: Flask) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("web.", "static")):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        if (path + "/").startswith(OWN_SPECS):
            continue
        found.setdefault(path, set()).update(m for m in rule.methods or () if m not in ("HEAD", "OPTIONS"))
    return found


def test_every_route_is_documented_and_every_documented_path_is_a_route(tmp_path: Path) -> None:
    database = Database("sqlite", str(tmp_path / "v.sqlite"), tmp_path / "log.key")
    app = create_app(database.config())
    routes = _routes(app)
    documented = {
        path: {m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")}
        for path, item in openapi.document(app)["paths"].items()
    }
    assert len(routes) > 40  # the comparison sees the API
    assert sorted(set(routes) - set(documented)) == [], "routes the document lacks"
    assert sorted(set(documented) - set(routes)) == [], "documented paths no route serves"
    differ = {p: (sorted(routes[p]), sorted(documented[p])) for p in routes if routes[p] != documented[p]}
    assert not differ, f"methods (route, document): {differ}"


def test_a_route_without_a_declaration_is_refused_by_the_generator(tmp_path: Path) -> None:
    import pytest

    database = Database("sqlite", str(tmp_path / "v.sqlite"), tmp_path / "log.key")
    app = create_app(database.config())
    app.add_url_rule("/v1/undeclared", "undeclared", lambda: "")
    with pytest.raises(LookupError, match="/v1/undeclared"):
        openapi.document(app)
