"""The wattproof verifier: checks device packets and keeps the authoritative ledger."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from verifier import db, settings
from verifier.ingest import RateLimiter
from verifier.packet import MAX_PACKET_BYTES
from verifier.problems import Problem

log = logging.getLogger("wattproof.verifier")

# HTTP errors raised by Flask itself, mapped to the project's stable problem types.
_HTTP_PROBLEMS = {404: "not-found", 405: "method-not-allowed", 413: "packet-too-large"}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory. Settings: defaults, then the TOML file named by WATTPROOF_CONFIG
    (or CONFIG in test_config), then WATTPROOF_* environment variables, then test_config."""
    app = Flask(__name__)
    app.config.from_mapping(settings.DEFAULTS, MAX_CONTENT_LENGTH=MAX_PACKET_BYTES)
    config_file = (test_config or {}).get("CONFIG") or os.environ.get("WATTPROOF_CONFIG")
    if config_file:
        app.config.from_mapping(settings.load_file(config_file))
    app.config.from_prefixed_env("WATTPROOF")
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config["DATABASE"]:
        raise ValueError("DATABASE is not configured (WATTPROOF_DATABASE, a config file, or --db)")
    db.connect(app.config["DATABASE"]).close()  # creates the schema once, before any request
    app.extensions["wattproof.log_signer"] = settings.log_signer(app.config)
    app.extensions["wattproof.limiter"] = RateLimiter(
        float(app.config["RATE_PACKETS_PER_S"]), int(app.config["RATE_BURST"])
    )
    db.init_app(app)
    from verifier.http import devices, ingest, ledger, openapi

    for blueprint in (ingest.bp, devices.bp, ledger.bp, openapi.bp):
        app.register_blueprint(blueprint)

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
    if "retry_after" in e.extra:
        response.headers["Retry-After"] = str(max(1, round(e.extra["retry_after"])))
    return response, e.status
