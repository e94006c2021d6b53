"""`wattproof witness`: a witness that cosigns a log's checkpoints (C2SP tlog-witness)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from wattproof.cli.options import FILE, listen


@click.group()
def witness() -> None:
    """A witness that cosigns a log's checkpoints (C2SP tlog-witness)."""


@witness.command()
@click.option("--name", required=True, help="the witness's name, a schema-less URL (witness.example/w1)")
@click.option("--out", type=FILE, required=True, help="the key file to write (kept secret)")
def keygen(name: str, out: Path) -> int:
    """A new cosignature/v1 key; prints its verifier key."""
    from verifier.log import note

    if out.exists():
        raise SystemExit(f"wattproof: {out} exists; not overwriting a witness key")
    try:
        signer = note.Signer.generate(name, note.ALG_COSIGNATURE_V1)
    except note.NoteError as e:
        raise SystemExit(f"wattproof: {e}") from None
    out.touch(mode=0o600)
    out.write_text(str(signer) + "\n")
    print(signer.verifier())
    return 0


@witness.command()
@click.option("--key", "key_file", type=FILE, required=True, help="the witness's key file (wattproof witness keygen)")
@click.option("--state", type=FILE, required=True, help="its SQLite state file (created if missing)")
@click.option("--log", "logs", multiple=True, required=True, metavar="VKEY",
              help="a log's verifier key to follow (repeat for more logs)")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", type=int, default=8101, show_default=True, help="port (0 picks a free one)")
@click.option("--threads", type=int, default=4, show_default=True, help="threads")
def serve(key_file: Path, state: Path, logs: tuple[str, ...], host: str, port: int, threads: int) -> int:
    """Serve POST /add-checkpoint."""
    from verifier.http import server
    from verifier.http.witness import create_witness_app
    from verifier.log import note

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    try:
        signer = note.Signer.parse(key_file.read_text().strip())
        followed: dict[str, list[note.Verifier]] = {}
        for text in logs:
            v = note.Verifier.parse(text)
            followed.setdefault(v.name, []).append(v)
    except OSError as e:
        raise SystemExit(f"wattproof: cannot read the witness key {key_file}: {e.strerror}") from None
    except note.NoteError as e:
        raise SystemExit(f"wattproof: {e}") from None
    if signer.alg != note.ALG_COSIGNATURE_V1:
        raise SystemExit("wattproof: the witness key is not a cosignature/v1 key (make one: wattproof witness keygen)")
    app = create_witness_app(state, signer, followed)
    listener = listen(host, port)
    print(f"witness {signer.verifier()} listening on http://{host}:{listener.getsockname()[1]}", flush=True)
    server.serve(app, listener, threads)
    return 0
