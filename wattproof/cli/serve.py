"""`wattproof serve`: the verifier under a production WSGI server (docs/operations.md)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from wattproof.cli.options import Where, database_options, listen


@click.command()
@database_options
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", type=int, default=8080, show_default=True, help="port (0 picks a free one)")
@click.option("--threads", type=int, default=4, show_default=True, help="threads per worker process")
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes on one socket")
def serve(where: Where, host: str, port: int, threads: int, workers: int) -> int:
    """Run the verifier: its API, pages, checkpoints and witnesses' cosignatures. A new SQLite
    file is created (in an existing folder); PostgreSQL needs --log-key."""
    from verifier.app import create_app
    from verifier.http import server

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    config = where.config()  # the settings, read once: the app takes them whole
    if not str(config["DATABASE"]).startswith(("postgresql://", "postgres://")):
        folder = Path(str(config["DATABASE"])).parent
        if not folder.is_dir():
            raise SystemExit(f"wattproof: the folder {folder} does not exist; create it first (mkdir -p {folder})")
    app = create_app(loaded=config)
    listener = listen(host, port)
    # The first line names the real port (useful with --port 0).
    print(f"verifier listening on http://{host}:{listener.getsockname()[1]}", flush=True)
    server.serve(app, listener, threads, workers)
    return 0
