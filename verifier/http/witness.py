"""A witness's HTTP face (C2SP tlog-witness v1.0.0): `POST /add-checkpoint`, and `GET /`
with the witness's key and the logs it follows. `wattproof witness serve` runs it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from verifier.http.app import problem_response
from verifier.log import note, witness
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.witness")
MAX_BODY = 64 << 10  # 63 proof lines and a checkpoint with many cosignatures fit easily


def create_witness_app(
    state_path: str | Path, signer: note.Signer, logs: Mapping[str, Sequence[note.Verifier]]
) -> Flask:
    app = Flask("wattproof.witness")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    state = witness.WitnessState(state_path)
    app.extensions["wattproof.witness_state"] = state

    @app.post("/add-checkpoint")
    def add_checkpoint() -> Response:
        answer = witness.add_checkpoint(state, signer, logs, request.get_data())
        return Response(answer.body, answer.status, content_type=answer.content_type)

    @app.get("/")
    def about() -> Response:
        lines = [f"witness {signer.verifier()}"]
        for origin in sorted(logs):
            latest = state.latest(origin)
            lines.append(f"log {origin} size {0 if latest is None else latest[0]}")
        return Response("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")

    @app.errorhandler(Problem)
    def problem(e: Problem) -> tuple[Response, int]:
        return problem_response(e)

    @app.errorhandler(HTTPException)
    def http_problem(e: HTTPException) -> tuple[Response, int]:
        code = e.code or 500
        kind = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(code)
        if kind is None:
            kind = "bad-request" if code < 500 else "internal-error"
        return problem_response(Problem(kind, "request", e.description or e.name))

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> tuple[Response, int]:
        """A fault of the witness itself: a 500 with an id to quote, the trace once in the log
        (a request the witness cannot read is a 4xx of its own, never this)."""
        incident = uuid.uuid4().hex[:16]
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return problem_response(
            Problem("internal-error", "request", f"the witness failed; quote {incident} to its operator", id=incident)
        )

    return app
