"""What a security review attacked: slow clients, replays, amplification, oversized bodies,
500s, rotation replay, log injection, API keys, file modes and HTTP conformance.

Each test reproduces one finding the way it was found and checks the answer now given."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from provisioning.enrollment import Installer
from provisioning.provision import write_installer_key
from tests import forge
from tests.conftest import serve
from tests.enroll import api_key, enroll_key, es256_signer, installer_ready
from tests.test_verifier_api import _auth, _type
from verifier import auth, settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.devices import identity, ingest, lifecycle, records
from verifier.storage.sqlite import SQLiteConnection
from verifier.wire import cose, strict_cbor
from verifier.wire.packet import GENESIS, decode_packet
from verifier.wire.problems import TYPE_BASE, Problem

NOW = int(time.time()) - 3 * 86400
WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield create_app(
        {
            "DATABASE": str(tmp_path / "v.sqlite"),
            "RATE_BURST": 5,
            "RATE_PACKETS_PER_S": 0.01,
            "RATE_CLIENT_WASTE_BURST": 20,
            "RATE_CLIENT_WASTE_PER_S": 0.01,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _post(client: FlaskClient, data: bytes, address: str = "192.0.2.1") -> Any:
    return client.post("/v1/packets", data=data, content_type="application/cbor", environ_base={"REMOTE_ADDR": address})


def _chain(key: ec.EllipticCurvePrivateKey, n: int, device_id: str = "forge-1") -> list[bytes]:
    out, prev = [], GENESIS
    for seq in range(n):
        data = forge.simple(key, device_id, seq=seq, prev=prev, first_number=3 * seq, t0=NOW + 300 * seq)
        out.append(data)
        prev = decode_packet(data).header_hash
    return out


def _db(app: Flask) -> storage.Connection:
    return storage.connect(app.config["DATABASE"])


# -- 1. slow clients ---------------------------------------------------------------------


def _http(method: str, url: str, body: bytes | None = None, timeout: float = 20, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("mode", [(), ("--workers", "2", "--threads", "1")], ids=["waitress", "workers-2"])
def test_slow_clients_do_not_stop_ingestion(tmp_path: Path, mode: tuple[str, ...]) -> None:
    db = tmp_path / "v.sqlite"
    key = forge.new_key()
    enroll_key(db, "forge-1", key)
    packets = _chain(key, 2)
    proc, url = serve(db, 0, None, *mode)
    host, port = url.removeprefix("http://").split(":")
    slow: list[socket.socket] = []
    try:
        for _ in range(220):  # each declares a 60,000-byte packet and sends one byte of it
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(
                b"POST /v1/packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
                b"Content-Length: 60000\r\n\r\n\x82"
            )
            slow.append(s)
        for data in packets:  # the board's packets are answered while all of them hang
            status, body = _http("POST", f"{url}/v1/packets", data, timeout=10, **{"Content-Type": "application/cbor"})
            assert status == 201, body
        status, _ = _http("GET", f"{url}/v1/ledger/key", timeout=10)
        assert status == 200
    finally:
        for s in slow:
            s.close()
        proc.terminate()
        proc.wait(timeout=20)


# -- 2. replays cost the device nothing ---------------------------------------------------


def test_replays_do_not_drain_a_devices_rate_limit(client: FlaskClient, app: Flask) -> None:
    key = forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", key)
    packets = _chain(key, 4)
    assert _post(client, packets[0], "198.51.100.7").status_code == 201
    answers = [_post(client, packets[0], "203.0.113.66") for _ in range(40)]  # anyone holding an old packet
    assert [a.status_code for a in answers[:20]] == [200] * 20  # duplicates, acknowledged
    assert answers[-1].status_code == 429 and answers[-1].get_json()["field"] == "client"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    for data in packets[1:]:  # the device's own new packets still go in
        assert _post(client, data, "198.51.100.7").status_code == 201


def test_the_device_bucket_still_limits_new_packets(client: FlaskClient, app: Flask) -> None:
    key = forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", key)
    statuses = [_post(client, data).status_code for data in _chain(key, 8)]
    assert statuses[:5] == [201] * 5 and statuses[5] == 429, statuses


# -- 3. equivocation evidence is recorded once; the device is quarantined -----------------


def test_replayed_equivocation_adds_one_entry_and_the_device_is_quarantined(client: FlaskClient, app: Flask) -> None:
    key = forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", key)
    packets = _chain(key, 2)
    assert _post(client, packets[0]).status_code == 201
    other = forge.simple(key, seq=0, t0=NOW + 1)  # same sequence, other content
    conn = _db(app)
    before = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    answers = [_post(client, other, f"192.0.2.{i}") for i in range(12)]
    assert {(a.status_code, _type(a)) for a in answers} == {(409, "equivocation")}
    kinds = [k for (k,) in conn.execute("SELECT kind FROM ledger WHERE idx >= ?", (before,))]
    assert kinds == ["equivocation"]
    # Quarantined: its next packet is kept on the board, not appended.
    r = _post(client, packets[1])
    assert r.status_code == 403 and _type(r) == "device-flagged"
    admin = api_key(app.config["DATABASE"], "admin")
    installer = api_key(app.config["DATABASE"], "installer")
    r = client.post("/v1/devices/forge-1/clear-flag", headers=_auth(installer), json={"reason": "x"})
    assert r.status_code == 403  # an admin's decision
    r = client.post("/v1/devices/forge-1/clear-flag", headers=_auth(admin), json={"reason": "meter swap, looked into"})
    assert r.status_code == 200, r.data
    assert client.get("/v1/devices/forge-1", headers=_auth(admin)).get_json()["flagged"] is False
    assert _post(client, packets[1]).status_code == 201
    r = client.post("/v1/devices/forge-1/clear-flag", headers=_auth(admin), json={"reason": "again"})
    assert r.status_code == 422 and "not flagged" in r.get_json()["detail"], r.data
    config = {**settings.DEFAULTS, **app.config}
    report = replay.audit(conn, settings.log_signer(config).verifier())
    assert report.ok, report.problem


# -- 4. batch amplification ---------------------------------------------------------------


def test_a_batch_head_is_judged_before_its_items_are_walked() -> None:
    # 4.2 million empty byte strings: refused from the head (the body here is just the head).
    with pytest.raises(Problem) as e:
        ingest.split_batch(bytes([0x9A]) + (4_200_000).to_bytes(4, "big"))
    assert e.value.kind == "batch-too-large"
    # The second item is a text string: refused there, the rest (not CBOR at all) unread.
    with pytest.raises(Problem) as e:
        ingest.split_batch(bytes([0x83, 0x41, 0x00, 0x61, 0x41]) + b"\xff" * 1000)
    assert e.value.kind == "invalid-field" and e.value.field == "batch[1]"
    assert ingest.split_batch(bytes([0x82, 0x41, 0x07, 0x40])) == [b"\x07", b""]


def test_a_huge_batch_of_empty_items_is_refused(client: FlaskClient) -> None:
    body = bytes([0x9A]) + (4_000_000).to_bytes(4, "big") + b"\x40" * 4_000_000
    r = client.post("/v1/packets/batch", data=body, content_type="application/cbor")
    assert r.status_code == 413 and _type(r) == "batch-too-large"


# -- 5. body limits ------------------------------------------------------------------------


def _raw(url: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        top, rest = data.split(b"\r\n\r\n", 1)
        lines = top.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        length = int(fields.get("Content-Length", "0"))
        while len(rest) < length:
            more = s.recv(65536)
            if not more:
                break
            rest += more
        return int(lines[0].split()[1]), fields, rest


def test_oversized_bodies_are_refused_before_they_are_read(verifier: Any) -> None:
    for path, length, kind in (
        ("/v1/packets", 256 << 20, "packet-too-large"),
        ("/v1/packets", 3 << 30, "packet-too-large"),
        ("/v1/packets/batch", 300 << 20, "packet-too-large"),
        ("/v1/enrollments", 1 << 30, "body-too-large"),
    ):
        # Headers only: the answer comes without a byte of the body sent.
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: {length}\r\n\r\n"
        status, fields, body = _raw(verifier.url, head.encode())
        assert status == 413, body
        assert fields["Content-Type"] == "application/problem+json", fields
        assert json.loads(body)["type"] == TYPE_BASE + kind


def test_oversized_headers_and_unknown_methods_are_problems(verifier: Any) -> None:
    head = b"GET /v1/ledger/key HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    status, fields, body = _raw(verifier.url, head)
    assert status == 431 and fields["Content-Type"] == "application/problem+json", body
    chunked = b"POST /v1/packets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    status, fields, body = _raw(verifier.url, chunked)
    assert status in (400, 501) and fields["Content-Type"] == "application/problem+json", body


# -- 6. the energy query is linear --------------------------------------------------------


def _device_with_readings(app: Flask, n: int) -> None:
    key = forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", key)
    conn = _db(app)
    prev, t0 = GENESIS, NOW - 20 * 86400
    for seq in range(n // 100):
        ts = [t0 + 60 * (100 * seq + i) for i in range(100)]
        readings = [forge.meter(100 * seq + i, t, 10 * (100 * seq + i)) for i, t in enumerate(ts)]
        data = forge.packet(key, forge.header_map("forge-1", seq, readings, ts, prev), readings)
        outcome = ingest.accept_packet(conn, data, now=time.time())
        assert isinstance(outcome, ingest.Outcome), outcome
        prev = decode_packet(data).header_hash


def test_energy_query_work_does_not_grow_with_the_readings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = 0
    decode = records.decode_reading  # type: ignore[attr-defined]

    def counting(raw: bytes) -> Any:
        nonlocal decoded
        decoded += 1
        return decode(raw)

    monkeypatch.setattr(records, "decode_reading", counting)
    counts = []
    for n in (2500, 10000):
        app = create_app({"DATABASE": str(tmp_path / f"{n}.sqlite")})
        _device_with_readings(app, n)
        conn = _db(app)
        statements: list[str] = []
        raw = cast(SQLiteConnection, conn).raw
        raw.set_trace_callback(statements.append)
        start = NOW - 20 * 86400
        start -= start % 3600
        intervals = records.energy(conn, "forge-1", start, start + 40 * 3600, "1h")
        raw.set_trace_callback(None)
        assert len(intervals) == 40
        measured = [i["import_wh"] for i in intervals if i["quality"] == "measured"]
        assert measured and set(measured) == {600}  # 10 Wh a minute
        counts.append((len(statements), decoded))
        decoded = 0
    # Same intervals, four times the readings: the same queries, the same readings decoded.
    assert counts[0] == counts[1], counts


def test_a_request_may_not_ask_for_unbounded_work(client: FlaskClient, app: Flask) -> None:
    enroll_key(app.config["DATABASE"], "forge-1", forge.new_key())
    token = api_key(app.config["DATABASE"], "utility")
    r = client.get("/v1/devices/forge-1/energy?from=0&to=2000000000&interval=15m", headers=_auth(token))
    assert r.status_code == 422 and _type(r) == "unprocessable" and "at most" in r.get_json()["detail"]


# -- 7. no 500s; the fallback has an id ---------------------------------------------------


def test_what_used_to_be_500s_are_4xx_problems(client: FlaskClient, app: Flask) -> None:
    key = forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", key)
    token = api_key(app.config["DATABASE"], "utility")
    installer = api_key(app.config["DATABASE"], "installer")
    for path in (
        "/v1/ledger/entries/9223372036854775808",
        "/v1/packets/forge-1/99999999999999999999",
        "/v1/devices/forge-1/readings?cursor=99999999999999999999",
        "/v1/devices/forge-1/readings?limit=99999999999999999999999",
        "/v1/ledger/proof/inclusion?index=99999999999999999999&size=1",
    ):
        r = client.get(path, headers=_auth(token))
        assert 400 <= r.status_code < 500 and r.mimetype == "application/problem+json", (path, r.data)
    challenge = client.post("/v1/enrollments/challenge", headers=_auth(installer)).get_json()["challenge"]
    for bad in ([1, 2], {"a": 1}, 7, b"anna"):
        body = {"device": {}, "challenge": bytes.fromhex(challenge), "pop": b"", "installer": bad, "installer_sig": b""}
        r = client.post(
            "/v1/enrollments", data=strict_cbor.dumps(body), content_type="application/cbor", headers=_auth(installer)
        )
        assert r.status_code == 400 and r.get_json()["field"] == "installer", r.data
    bad_sig: object
    for bad_sig in (7, "text", [b"x"]):
        rotation: dict[str, object] = {
            "new_public_key": forge.point(forge.new_key()),
            "old_sig": bad_sig,
            "new_sig": b"",
            "key_index": 0,
        }
        r = client.post("/v1/devices/forge-1/rotate", data=strict_cbor.dumps(rotation), content_type="application/cbor")
        assert r.status_code == 400 and r.get_json()["field"] == "old_sig", r.data


def test_an_unexpected_error_is_a_problem_with_an_id_in_the_log(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(lifecycle, "new_challenge", broken)
    installer = api_key(app.config["DATABASE"], "installer")
    with caplog.at_level(logging.ERROR, logger="wattproof.verifier"):
        r = app.test_client().post("/v1/enrollments/challenge", headers=_auth(installer))
    assert r.status_code == 500 and _type(r) == "internal-error"
    incident = r.get_json()["id"]
    assert "Traceback" not in r.get_data(as_text=True) and "a bug" not in r.get_data(as_text=True)
    assert any(incident in rec.getMessage() and rec.exc_info for rec in caplog.records)


# -- 8. rotation replay -------------------------------------------------------------------


def _rotation(db: storage.Connection, old: ec.EllipticCurvePrivateKey, new: ec.EllipticCurvePrivateKey) -> bytes:
    index = lifecycle.key_index(db, "forge-1")
    message = identity.rotation_message("forge-1", forge.point(new), cose.key_id(forge.point(old)), index)
    body = {
        "new_public_key": forge.point(new),
        "old_sig": es256_signer(old)(message),
        "new_sig": es256_signer(new)(message),
        "key_index": index,
    }
    return strict_cbor.dumps(body)


def test_a_recorded_rotation_cannot_be_replayed(client: FlaskClient, app: Flask) -> None:
    a, b = forge.new_key(), forge.new_key()
    enroll_key(app.config["DATABASE"], "forge-1", a)
    conn = _db(app)

    def rotate(body: bytes) -> Any:
        return client.post("/v1/devices/forge-1/rotate", data=body, content_type="application/cbor")

    a_to_b = _rotation(conn, a, b)
    assert rotate(a_to_b).status_code == 200
    assert rotate(_rotation(conn, b, a)).status_code == 200
    r = rotate(a_to_b)  # recorded earlier, signed by A while A was current then too
    assert r.status_code == 409 and _type(r) == "stale-key-rotation", r.data
    admin = api_key(app.config["DATABASE"], "admin")
    device = client.get("/v1/devices/forge-1", headers=_auth(admin)).get_json()
    assert device["key_id"] == cose.key_id(forge.point(a)).hex()
    # A fresh A→B, bound to the current key entry, is still accepted.
    assert rotate(_rotation(conn, a, b)).status_code == 200


# -- 9. log injection ---------------------------------------------------------------------


def test_request_text_cannot_forge_a_log_line(
    client: FlaskClient, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    admin = api_key(app.config["DATABASE"], "admin")
    enroll_key(app.config["DATABASE"], "forge-1", forge.new_key())
    with caplog.at_level(logging.INFO, logger="wattproof.verifier"):
        client.post(
            "/v1/devices/forge-1/revoke",
            headers=_auth(admin),
            json={"reason": "x\naccepted forge-2 seq 0 (3 readings)"},
        )
        client.post("/v1/devices/x%0Aaccepted%20forge-2/revoke", headers=_auth(admin), json={"reason": "r"})
    lines = [rec.getMessage() for rec in caplog.records]
    assert lines and all("\n" not in line for line in lines), lines
    assert any("\\naccepted forge-2" in line for line in lines), lines


# -- 10. API keys -------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WATTPROOF, *args], capture_output=True, text=True, timeout=60, env=env)


def test_api_keys_are_listed_revoked_and_expire(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    assert _cli("keys", "list", "--db", str(db)).returncode != 0  # a mistyped path creates nothing
    assert not db.exists()
    app = create_app({"DATABASE": str(db)})
    client = app.test_client()
    made = _cli("keys", "create", "--db", str(db), "--role", "utility", "--name", "grid-co", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1].split()[-1]
    assert token.startswith("wp_")
    assert client.get("/v1/devices", headers=_auth(token)).status_code == 200
    listed = json.loads(_cli("keys", "list", "--db", str(db), "--json").stdout)
    (key,) = [k for k in listed if k["name"] == "grid-co"]
    assert key["role"] == "utility" and key["last_used_at"] is not None and key["expires_at"] > time.time() + 29 * 86400
    assert token not in json.dumps(listed) and "secret" not in json.dumps(listed)
    revoked = _cli("keys", "revoke", "--db", str(db), key["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    r = client.get("/v1/devices", headers=_auth(token))
    assert r.status_code == 401 and _type(r) == "unauthorized"
    assert _cli("keys", "revoke", "--db", str(db), "nope").returncode != 0
    # Expiry is enforced.
    conn = storage.connect(db)
    short = auth.create_key(conn, "short", "auditor", expires_at=int(time.time()) + 1)
    conn.execute("UPDATE api_keys SET expires_at = ? WHERE name = 'short'", (int(time.time()) - 1,))
    r = client.get("/v1/devices", headers=_auth(short))
    assert r.status_code == 401 and "expired" in r.get_json()["detail"]


def test_the_admin_endpoint_for_keys(client: FlaskClient, app: Flask) -> None:
    admin = api_key(app.config["DATABASE"], "admin")
    utility = api_key(app.config["DATABASE"], "utility")
    assert client.get("/v1/keys", headers=_auth(utility)).status_code == 403
    r = client.post(
        "/v1/keys", headers=_auth(admin), json={"name": "city", "role": "auditor", "expires": "2099-01-01T00:00:00Z"}
    )
    assert r.status_code == 201, r.data
    made = r.get_json()
    assert made["expires_time"] == "2099-01-01T00:00:00Z" and made["token"].startswith("wp_")
    assert client.get("/v1/devices", headers=_auth(made["token"])).status_code == 200
    keys = client.get("/v1/keys", headers=_auth(admin)).get_json()["keys"]
    assert {k["name"] for k in keys} >= {"city", "test-admin", "test-utility"}
    assert all("token" not in k for k in keys)
    r = client.post("/v1/keys", headers=_auth(admin), json={"name": "x", "role": "installer"})
    assert r.status_code == 400 and r.get_json()["field"] == "installer"
    r = client.post("/v1/keys", headers=_auth(admin), json={"name": "x", "role": "root"})
    assert r.status_code == 400 and r.get_json()["field"] == "role"
    assert client.post(f"/v1/keys/{made['key_id']}/revoke", headers=_auth(admin)).status_code == 200
    assert client.get("/v1/devices", headers=_auth(made["token"])).status_code == 401
    assert client.post("/v1/keys/nope/revoke", headers=_auth(admin)).status_code == 404


def test_an_installer_key_acts_for_its_installer_only(client: FlaskClient, app: Flask) -> None:
    conn = _db(app)
    bob = Installer.generate("bob")
    with storage.transaction(conn):
        lifecycle.register_installer(conn, "bob", bob.public_key, "test-admin")
    enroll_key(app.config["DATABASE"], "forge-1", forge.new_key())  # by the test installer
    bobs_key = api_key(app.config["DATABASE"], "installer", "bob")
    r = client.post("/v1/devices/forge-1/revoke", headers=_auth(bobs_key), json={"reason": "not mine"})
    assert r.status_code == 403 and _type(r) == "forbidden", r.data
    own = api_key(app.config["DATABASE"], "installer", installer_ready(conn).name)
    assert client.post("/v1/devices/forge-1/revoke", headers=_auth(own), json={"reason": "mine"}).status_code == 200
    with pytest.raises(ValueError, match="register it first"):
        auth.create_key(conn, "eve", "installer", installer="eve")


# -- 11. file modes -----------------------------------------------------------------------


def test_secret_files_are_born_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        key_file = tmp_path / "new" / "anna.pem"
        write_installer_key(key_file, Installer.generate("anna"))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        with pytest.raises(FileExistsError):
            write_installer_key(key_file, Installer.generate("anna"))
        db = tmp_path / "v.sqlite"
        conn = storage.connect(db)
        with storage.transaction(conn):
            lifecycle.new_challenge(conn)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, path
        conn.close()
    finally:
        os.umask(old)


# -- 12. HTTP conformance -----------------------------------------------------------------


def test_http_conformance(client: FlaskClient, app: Flask) -> None:
    r = client.delete("/v1/ledger/key")
    assert r.status_code == 405 and _type(r) == "method-not-allowed"
    assert set(r.headers["Allow"].split(", ")) >= {"GET", "HEAD"}
    r = client.get("/v1/devices")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    token = api_key(app.config["DATABASE"], "utility")
    assert client.get("/v1/devices", headers={"Authorization": f"bearer {token}"}).status_code == 200
    assert client.get("/v1/devices", headers={"Authorization": f"BEARER {token}"}).status_code == 200
    r = client.get("/v1/ledger/checkpoint")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    document = client.get("/v1/openapi.json").get_json()
    assert "post" in document["paths"]["/v1/installers/{name}/revoke"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                assert "type" in parameter["schema"] or "oneOf" in parameter["schema"], (path, method, parameter)
            if "requestBody" in operation:
                for media in operation["requestBody"]["content"].values():
                    assert "schema" in media, (path, method)


def test_json_bodies_refuse_unknown_fields(client: FlaskClient, app: Flask) -> None:
    admin = _auth(api_key(app.config["DATABASE"], "admin"))
    public_key = base64.b64encode(Installer.generate("x").public_key).decode()
    r = client.post("/v1/installers", headers=admin, json={"name": "x", "public_key": public_key, "role": "admin"})
    assert r.status_code == 400 and r.get_json()["field"] == "role", r.data
    enroll_key(app.config["DATABASE"], "forge-1", forge.new_key())
    r = client.post("/v1/devices/forge-1/revoke", headers=admin, json={"reason": "x", "force": True})
    assert r.status_code == 400 and r.get_json()["field"] == "force", r.data
