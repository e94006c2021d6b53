"""The wattproof verifier: checks device packets and keeps the authoritative record."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from verifier import db, ingest
from verifier.packet import MAX_PACKET_BYTES
from verifier.problems import Problem

log = logging.getLogger("wattproof.verifier")

# HTTP errors raised by Flask itself, mapped to the project's stable problem types.
_HTTP_PROBLEMS = {404: "not-found", 405: "method-not-allowed", 413: "packet-too-large"}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory. test_config overrides the defaults (DATABASE is required)."""
    app = Flask(__name__)
    app.config.from_mapping(DATABASE=None, MAX_CONTENT_LENGTH=MAX_PACKET_BYTES)
    app.config.from_prefixed_env("WATTPROOF")
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config["DATABASE"]:
        raise ValueError("DATABASE is not configured (WATTPROOF_DATABASE or --db)")
    db.init_app(app)
    app.register_blueprint(ingest.bp)

    @app.errorhandler(Problem)
    def problem(e: Problem) -> tuple[Response, int]:
        log.info("refused %s: %s", e.kind, e)
        return _problem_response(e)

    @app.errorhandler(HTTPException)
    def http_problem(e: HTTPException) -> tuple[Response, int]:
        code = e.code or 500
        kind = _HTTP_PROBLEMS.get(code)
        if kind is None:
            raise e
        return _problem_response(Problem(kind, "request", e.description or e.name))

    return app


def _problem_response(e: Problem) -> tuple[Response, int]:
    response = jsonify(e.to_json())
    response.mimetype = "application/problem+json"
    return response, e.status
