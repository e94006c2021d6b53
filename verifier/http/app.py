"""The JSON API's Flask application: its blueprints, error handlers as problem+json,
request-safe logging. verifier/app.py adds the pages (verifier/web/) to it.

Everything Flask-specific lives in verifier/http/ and verifier/web/; the areas are a library."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter, ValidationError

from verifier import settings, storage
from verifier.devices.ingest import Joiner, RateLimiter
from verifier.http.access import reads_from_replica
from verifier.log import checkpoints
from verifier.wire.packet import MAX_PACKET_BYTES
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")

# HTTP errors raised by Flask itself, mapped to the project's stable problem types.
_HTTP_PROBLEMS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


def create_api(test_config: Mapping[str, Any] | None = None, loaded: Mapping[str, Any] | None = None) -> Flask:
    """The API's application (verifier.app.create_app adds the pages). Settings: loaded, when
    the caller has read them already (`wattproof serve`: once, whole); else
    verifier.settings.load: defaults, then the TOML file named by CONFIG in test_config or
    WATTPROOF_CONFIG, then WATTPROOF_* environment variables, then test_config."""
    test_config = dict(test_config or {})
    app = Flask(__name__)
    if loaded is not None:
        if test_config:
            raise ValueError("give the settings loaded, or what to load them from, not both")
        app.config.from_mapping(loaded)
    else:
        app.config.from_mapping(settings.load(test_config.pop("CONFIG", None), test_config))
    app.config["MAX_CONTENT_LENGTH"] = MAX_PACKET_BYTES
    if not app.config["DATABASE"]:
        raise settings.SettingsError("DATABASE is not configured (WATTPROOF_DATABASE, a config file, or --db)")
    storage.connect(app.config["DATABASE"]).close()  # creates the schema once, before any request
    replica = app.config["READ_DATABASE"]
    if replica and not (storage.is_url(replica) and storage.is_url(app.config["DATABASE"])):
        raise settings.SettingsError("READ_DATABASE: a postgresql:// URL of a hot standby of a PostgreSQL DATABASE")
    app.extensions["wattproof.log_signer"] = settings.log_signer(app.config)
    from verifier.log import cosigning

    try:
        cosigning.parse_all(app.config["WITNESSES"])
    except (ValueError, TypeError) as e:
        raise settings.SettingsError(f"WITNESSES: {e}") from None
    app.extensions["wattproof.checkpoint_pace"] = checkpoints.Pace(float(app.config["CHECKPOINT_MIN_GAP_S"]))
    app.extensions["wattproof.joiner"] = Joiner()  # concurrent requests' packets, one commit
    app.extensions["wattproof.limiter"] = RateLimiter(
        float(app.config["RATE_PACKETS_PER_S"]), int(app.config["RATE_BURST"])
    )
    app.extensions["wattproof.client_limiter"] = RateLimiter(
        float(app.config["RATE_CLIENT_WASTE_PER_S"]), int(app.config["RATE_CLIENT_WASTE_BURST"])
    )
    if not any(isinstance(f, EscapeRequestText) for f in log.filters):
        log.addFilter(EscapeRequestText())  # logger filters see only this logger's own records
    from verifier.http import (
        certificates,
        communities,
        devices,
        ingest,
        keys,
        ledger,
        ocmf,
        ocpi,
        openapi,
        provenance,
        sessions,
        tiles,
    )

    app.url_map.converters["index"] = IndexConverter
    for blueprint in (
        ingest.bp,
        devices.bp,
        keys.bp,
        ledger.bp,
        certificates.bp,
        communities.bp,
        sessions.bp,
        ocmf.bp,
        ocpi.bp,
        openapi.bp,
        tiles.bp,
        provenance.bp,
    ):
        app.register_blueprint(blueprint)

    @app.errorhandler(Problem)
    def problem(e: Problem) -> tuple[Response, int]:
        if e.kind == "not-found" and request.method in ("GET", "HEAD"):
            log.debug("not found: %s", e)  # a lookup (provisioning asks whether a device exists), not a refusal
        else:
            log.info("refused %s: %s", e.kind, e)
        return problem_response(e)

    @app.errorhandler(HTTPException)
    def http_problem(e: HTTPException) -> Any:
        code = e.code or 500
        page_error = app.extensions.get("wattproof.page_error")  # set by the pages (verifier/web)
        page = None if page_error is None else page_error(e)
        if page is not None:
            return page  # no route matched a page's address: a page says so
        kind = _HTTP_PROBLEMS.get(code, "bad-request" if code < 500 else "internal-error")
        if kind == "body-too-large" and request.path.startswith("/v1/packets"):
            kind = "packet-too-large"
        found = Problem(kind, "request", e.description or e.name)
        if request.path.startswith("/ocpi/") or request.path == "/ocpi":  # OCPI answers in its envelope
            found = ocpi._ocpi_problem(found, ocpi.AUTH_ERROR if code < 500 else ocpi.SERVER_ERROR)
        response, status = problem_response(found)
        if isinstance(e, MethodNotAllowed) and e.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(e.valid_methods))
        return response, status

    @app.errorhandler(storage.ReadOnly)
    def read_on_primary(e: storage.ReadOnly) -> Any:
        """A read served by the standby (READ_DATABASE) that has to write (a checkpoint
        published for a receipt, the registry's state committed for a certificate file):
        the request runs again on the primary, from the start."""
        if g.get("on_primary") or request.endpoint is None:
            return storage_unavailable(e)
        g.on_primary = True
        log.debug("%s %s writes: run again on the primary", request.method, request.path)
        try:
            return app.ensure_sync(app.view_functions[request.endpoint])(**(request.view_args or {}))
        except Exception as again:  # noqa: BLE001 - answered by its own handler, as on a first run
            return app.handle_user_exception(again)

    @app.after_request
    def read_from(response: Response) -> Response:
        if app.config.get("READ_DATABASE") and request.method in ("GET", "HEAD"):
            response.headers["Wattproof-Read-From"] = "replica" if reads_from_replica() else "primary"
        return response

    @app.errorhandler(sqlite3.OperationalError)
    @app.errorhandler(storage.Unavailable)
    def storage_unavailable(e: Exception) -> tuple[Response, int]:
        incident = uuid.uuid4().hex[:16]
        log.exception("storage error %s on %s %s", incident, request.method, request.path)
        return problem_response(
            Problem(
                "storage-unavailable",
                "request",
                f"the verifier's database failed ({incident}); nothing of this request was stored: retry later",
                id=incident,
                retry_after=5,
            )
        )

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> tuple[Response, int]:
        incident = uuid.uuid4().hex[:16]
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        found = Problem(
            "internal-error", "request", f"the verifier failed; quote {incident} to its operator", id=incident
        )
        if request.path.startswith("/ocpi/"):
            found = ocpi._ocpi_problem(found, ocpi.SERVER_ERROR)
        return problem_response(found)

    return app


class IndexConverter(BaseConverter):
    """A path integer that fits the database: 0 to 2^63 - 1 (anything else is a 404)."""

    regex = r"[0-9]{1,19}"  # ASCII digits: \d would take other scripts' digits too

    def to_python(self, value: str) -> int:
        number = int(value)
        if number >= 2**63:
            raise ValidationError()
        return number

    def to_url(self, value: object) -> str:
        return str(value)


class EscapeRequestText(logging.Filter):
    """Log records never carry a raw line break or control character from a request: a device
    id with %0A in a path could otherwise forge a line of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_escaped(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _escaped(v) for k, v in record.args.items()}
        if isinstance(record.msg, str) and not record.args:
            record.msg = escape_log_text(record.msg)
        return True


def _escaped(value: object) -> object:
    """Numbers stay numbers (for %d); anything else is logged as its escaped text."""
    if isinstance(value, int | float) or value is None:
        return value
    return escape_log_text(value if isinstance(value, str) else str(value))


def escape_log_text(text: str) -> str:
    """Control characters (and backslashes) as Python escapes: one request, one log line."""
    if text.isprintable() and "\\" not in text:
        return text
    return text.encode("unicode_escape").decode("ascii")


def problem_response(e: Problem) -> tuple[Response, int]:
    response = jsonify(e.to_json())
    response.mimetype = "application/problem+json"
    if "retry_after" in e.extra:
        response.headers["Retry-After"] = str(max(1, round(e.extra["retry_after"])))
    if e.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="wattproof"'
    return response, e.status
