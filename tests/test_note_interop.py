"""The ledger's checkpoints against an independent signed-note verifier.

tests/interop/note_verify.go wraps golang.org/x/mod/sumdb/note, the implementation the Go
checksum database runs; `make test` builds it (Debian's golang-go and
golang-golang-x-mod-dev). It gets the verifier key exactly as an auditor would, from
`GET /v1/ledger/key` or `wattproof ledger key`, and the checkpoint's exact bytes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from tests import forge
from tests.enroll import enroll_key
from verifier.app import create_app
from verifier.log import note
from verifier.wire.packet import GENESIS, decode_packet

ROOT = Path(__file__).resolve().parent.parent
NOTE_VERIFY = ROOT / "build" / "note-verify"
WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


def go_verify(vkey: str, signed: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert NOTE_VERIFY.exists(), "build/note-verify is missing: run the tests with `make test`"
    path = tmp_path / "checkpoint.note"
    path.write_bytes(signed)
    return subprocess.run([str(NOTE_VERIFY), vkey, str(path)], capture_output=True, text=True, timeout=30)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = create_app({"DATABASE": str(tmp_path / "v.sqlite"), "RATE_BURST": 1000})
    key = forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", key)
    client, prev = app.test_client(), GENESIS
    for seq in range(7):
        data = forge.simple(key, seq=seq, prev=prev, first_number=3 * seq, t0=1790000000 + 600 * seq)
        assert client.post("/v1/packets", data=data, content_type="application/cbor").status_code == 201
        prev = decode_packet(data).header_hash
    return app


def test_go_sumdb_note_accepts_the_served_checkpoint(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    signed = client.get("/v1/ledger/checkpoint").data
    vkey = client.get("/v1/ledger/key").data.decode().strip()
    cli_key = subprocess.run(
        [*WATTPROOF, "ledger", "key", "--db", app.config["DATABASE"]], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert cli_key == vkey
    result = go_verify(vkey, signed, tmp_path)
    assert result.returncode == 0, result.stderr
    origin, size, _root = result.stdout.splitlines()[:3]
    assert (origin, int(size)) == (vkey.split("+")[0], 9)  # an installer, an enrollment, seven packets
    assert result.stdout.encode() == signed.split(b"\n\n")[0] + b"\n"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b"\n9\n", b"\n10\n", 1),  # another tree size
        lambda b: b[:-10] + bytes([b[-10] ^ 1]) + b[-9:],  # a bit of the signature
        lambda b: b.replace(b"\n\n", b"\nextension line\n\n", 1),  # text the log did not sign
    ],
)
def test_go_sumdb_note_refuses_a_tampered_checkpoint(app: Flask, tmp_path: Path, tamper: object) -> None:
    client = app.test_client()
    signed = client.get("/v1/ledger/checkpoint").data
    changed = tamper(signed)  # type: ignore[operator]
    assert changed != signed
    result = go_verify(client.get("/v1/ledger/key").data.decode().strip(), changed, tmp_path)
    assert result.returncode == 1 and "note:" in result.stderr


def test_go_sumdb_note_refuses_another_logs_key(app: Flask, tmp_path: Path) -> None:
    signed = app.test_client().get("/v1/ledger/checkpoint").data
    origin = signed.split(b"\n")[0].decode()
    other = note.Signer.generate(origin)  # same name, other key
    result = go_verify(str(other.verifier()), signed, tmp_path)
    assert result.returncode == 1


def test_go_sumdb_note_accepts_every_stored_checkpoint_of_a_ledger(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    vkey = client.get("/v1/ledger/key").data.decode().strip()
    client.get("/v1/ledger/checkpoint")
    conn = sqlite3.connect(app.config["DATABASE"])
    notes = [bytes(n) for (n,) in conn.execute("SELECT note FROM checkpoints ORDER BY size")]
    assert notes
    for signed in notes:
        assert go_verify(vkey, signed, tmp_path).returncode == 0
