"""The log as tiles (C2SP tlog-tiles) under /log/: public, no API key, cacheable.

`wattproof ledger tiles --out DIR` writes the same files to a folder, so that any static
web server or CDN can serve the read path instead (docs/ledger.md)."""

from __future__ import annotations

from flask import Blueprint, Response

from verifier.http import only_args, signer
from verifier.http.access import get_db
from verifier.log import checkpoints, static_log, tiles
from verifier.wire.problems import Problem

bp = Blueprint("tiles", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"


@bp.get("/log/checkpoint")
def checkpoint() -> Response:
    """The latest checkpoint, with its witnesses' cosignatures: mutable, cached briefly."""
    only_args()
    db = get_db()
    latest = checkpoints.latest(db) or checkpoints.publish(db, signer())
    response = Response(checkpoints.served(db, latest), content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=5"
    return response


@bp.get("/log/tile/<path:rest>")
def tile(rest: str) -> Response:
    """A tile or an entry bundle of the latest checkpoint's tree: immutable."""
    only_args()
    try:
        t = tiles.parse("tile/" + rest)
    except tiles.TileError as e:
        raise Problem("not-found", "path", str(e)) from None
    db = get_db()
    latest = checkpoints.latest(db)
    size = 0 if latest is None else latest.size
    if not tiles.in_tree(t, size):
        raise Problem("not-found", "path", f"tile/{rest} is not in the tree of the latest checkpoint (size {size})")
    response = Response(static_log.contents(db, t), content_type="application/octet-stream")
    response.headers["Cache-Control"] = IMMUTABLE
    return response
