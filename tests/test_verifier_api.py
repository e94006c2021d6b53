"""The verifier's API over HTTP (Flask test client, a real SQLite file): devices, ingest checks, ledger."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from flask.testing import FlaskClient

from provisioning.enrollment import Installer, enrollment_request
from tests import forge
from tests.conftest import Database
from tests.enroll import api_key, enroll_key, es256_signer, record
from verifier import storage
from verifier.app import create_app
from verifier.devices import identity, lifecycle
from verifier.wire import cose, merkle, strict_cbor
from verifier.wire.packet import GENESIS, decode_packet
from verifier.wire.problems import TYPE_BASE

NOW = int(time.time()) - 3600


@pytest.fixture
def app(database: Database) -> Iterator[Flask]:
    yield create_app(database.config(RATE_BURST=50, RATE_PACKETS_PER_S=5))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _type(response: Any) -> str:
    assert response.mimetype == "application/problem+json", response.data
    return str(response.get_json()["type"])[len(TYPE_BASE) :]


def _post_packet(client: FlaskClient, data: bytes) -> Any:
    return client.post("/v1/packets", data=data, content_type="application/cbor")


@pytest.fixture
def installer(app: Flask, client: FlaskClient) -> tuple[Installer, str]:
    admin = api_key(app.config["DATABASE"], "admin")
    inst = Installer.generate("anna-field-tech")
    r = client.post(
        "/v1/installers",
        headers=_auth(admin),
        json={"name": inst.name, "public_key": base64.b64encode(inst.public_key).decode()},
    )
    assert r.status_code == 201, r.data
    return inst, api_key(app.config["DATABASE"], "installer", inst.name)


def _enroll(
    client: FlaskClient,
    inst: Installer,
    token: str,
    device: dict[str, Any],
    key: ec.EllipticCurvePrivateKey,
    challenge: bytes | None = None,
) -> Any:
    if challenge is None:
        challenge = bytes.fromhex(
            client.post("/v1/enrollments/challenge", headers=_auth(token)).get_json()["challenge"]
        )
    body = enrollment_request(device, challenge, es256_signer(key), inst)
    return client.post("/v1/enrollments", data=body, content_type="application/cbor", headers=_auth(token))


def _spec_verify(note_bytes: bytes, vkey: str) -> str:
    """A C2SP signed-note check written from the spec with `cryptography` alone (no project code)."""
    name, hex_id, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == hex_id
    text, _, sigs = note_bytes.decode().rpartition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        who, blob = line.removeprefix("\u2014 ").rsplit(" ", 1)
        sig = base64.b64decode(blob)
        if who == name and sig[:4].hex() == hex_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
            return text
    raise AssertionError("no signature by the log key")


def test_enrollment_receipt_proves_inclusion_under_a_signed_checkpoint(
    client: FlaskClient, installer: tuple[Installer, str]
) -> None:
    inst, token = installer
    key = ec.generate_private_key(ec.SECP256R1())
    r = _enroll(client, inst, token, record("pv-roof-7", forge.point(key), location=[52_520_000, 13_405_000]), key)
    assert r.status_code == 201, r.data
    receipt = r.get_json()
    vkey = client.get("/v1/ledger/key").data.decode().strip()
    text = _spec_verify(receipt["checkpoint"].encode(), vkey)
    origin, size, root_b64 = text.splitlines()[:3]
    assert int(size) == receipt["tree_size"] and origin == vkey.split("+")[0]
    merkle.verify_inclusion(
        receipt["ledger_index"],
        receipt["tree_size"],
        bytes.fromhex(receipt["leaf_hash"]),
        [bytes.fromhex(h) for h in receipt["inclusion_proof"]],
        base64.b64decode(root_b64),
    )
    assert receipt["fingerprint"] == identity.fingerprint(forge.point(key))
    again = _enroll(client, inst, token, record("pv-roof-7", forge.point(key), location=[52_520_000, 13_405_000]), key)
    assert again.status_code == 200 and again.get_json()["already_enrolled"]


def test_enrollment_refusals(client: FlaskClient, installer: tuple[Installer, str], app: Flask) -> None:
    inst, token = installer
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    assert _enroll(client, inst, token, record("m-1", forge.point(key)), key).status_code == 201
    assert _type(_enroll(client, inst, token, record("m-1", forge.point(other)), other)) == "already-enrolled"
    assert _type(_enroll(client, inst, token, record("m-2", forge.point(key)), key)) == "already-enrolled"
    # A proof of possession by another key than the one enrolled.
    wrong_pop = _enroll(client, inst, token, record("m-3", forge.point(other)), ec.generate_private_key(ec.SECP256R1()))
    assert _type(wrong_pop) == "bad-signature" and wrong_pop.get_json()["field"] == "pop"
    stranger = Installer.generate("not-registered")
    k4 = ec.generate_private_key(ec.SECP256R1())
    # An installer's API key submits only its own installer's signatures.
    assert _type(_enroll(client, stranger, token, record("m-4", forge.point(k4)), k4)) == "forbidden"
    admin = api_key(app.config["DATABASE"], "admin")
    assert _type(_enroll(client, stranger, admin, record("m-4", forge.point(k4)), k4)) == "unknown-installer"
    impostor = Installer("anna-field-tech", Installer.generate("x").key)  # the right name, another key
    bad_sig = _enroll(client, impostor, token, record("m-4", forge.point(k4)), k4)
    assert _type(bad_sig) == "bad-signature" and bad_sig.get_json()["field"] == "installer_sig"
    assert (
        _type(_enroll(client, inst, token, record("m-4", forge.point(k4)), k4, challenge=b"\0" * 16)) == "bad-challenge"
    )
    challenge = bytes.fromhex(client.post("/v1/enrollments/challenge", headers=_auth(token)).get_json()["challenge"])
    utility = api_key(app.config["DATABASE"], "utility")
    no_role = _enroll(client, inst, utility, record("m-4", forge.point(k4)), k4, challenge=challenge)
    assert _type(no_role) == "forbidden"
    assert client.post("/v1/enrollments/challenge").status_code == 401
    bad_record = record("m-5", forge.point(k4), role="windmill")
    assert _type(_enroll(client, inst, token, bad_record, k4)) == "invalid-field"
    # Which register carries a producer's generation: import_wh or export_wh, producers only.
    for bad in (
        record("m-5", forge.point(k4), generation_register="power_w"),
        record("m-5", forge.point(k4), role="consumer", generation_register="import_wh"),
    ):
        refused = _enroll(client, inst, token, bad, k4)
        assert _type(refused) == "invalid-field" and refused.get_json()["field"] == "device.generation_register"
    s0 = _enroll(client, inst, token, record("m-5", forge.point(k4), generation_register="import_wh"), k4)
    assert s0.status_code == 201
    # One meter, one active device: the same model and serial again is refused; its energy
    # would be counted twice. Revoking the first device frees the meter for a new board.
    k6 = ec.generate_private_key(ec.SECP256R1())
    shared = record("m-6", forge.point(k6), meter_serial="serial-m-5")
    in_use = _enroll(client, inst, token, shared, k6)
    assert _type(in_use) == "meter-in-use" and in_use.get_json()["field"] == "device.meter_serial"
    assert "m-5" in in_use.get_json()["detail"]
    other_model = record("m-6", forge.point(k6), meter_serial="serial-m-5", meter_model="another-meter")
    assert _enroll(client, inst, token, other_model, k6).status_code == 201
    k7 = ec.generate_private_key(ec.SECP256R1())
    tricky = record("m-7", forge.point(k7), meter_serial="serial-m_%")  # LIKE's wildcards are literal
    assert _enroll(client, inst, token, tricky, k7).status_code == 201
    for device_id in ("m-8", "m-9"):  # no readable serial (an S0 meter): not checked
        k = ec.generate_private_key(ec.SECP256R1())
        assert (
            _enroll(client, inst, token, record(device_id, forge.point(k), meter_serial="unknown"), k).status_code
            == 201
        )
    revoked = client.post("/v1/devices/m-5/revoke", headers=_auth(token), json={"reason": "board replaced"})
    assert revoked.status_code == 200, revoked.get_json()
    k10 = ec.generate_private_key(ec.SECP256R1())
    replacement = record("m-10", forge.point(k10), meter_serial="serial-m-5")
    assert _enroll(client, inst, token, replacement, k10).status_code == 201


def test_unenrolled_revoked_and_rotated_devices(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert _type(_post_packet(client, forge.simple(key, t0=NOW))) == "unknown-device"
    enroll_key(app.config["DATABASE"], "forge-1", key)
    p0 = forge.simple(key, t0=NOW)
    assert _post_packet(client, p0).status_code == 201
    # Rotation: the old key signs the new one, the new key proves possession.
    new = ec.generate_private_key(ec.SECP256R1())
    key_index = lifecycle.key_index(storage.connect(app.config["DATABASE"]), "forge-1")
    message = identity.rotation_message("forge-1", forge.point(new), cose.key_id(forge.point(key)), key_index)
    bad = {
        "new_public_key": forge.point(new),
        "old_sig": es256_signer(new)(message),
        "new_sig": es256_signer(new)(message),
        "key_index": key_index,
    }
    r = client.post("/v1/devices/forge-1/rotate", data=strict_cbor.dumps(bad), content_type="application/cbor")
    assert _type(r) == "bad-signature" and r.get_json()["field"] == "old_sig"
    good = {**bad, "old_sig": es256_signer(key)(message)}
    r = client.post("/v1/devices/forge-1/rotate", data=strict_cbor.dumps(good), content_type="application/cbor")
    assert r.status_code == 200, r.data
    prev = decode_packet(p0).header_hash
    assert (
        _type(_post_packet(client, forge.simple(key, seq=1, prev=prev, first_number=3, t0=NOW + 300))) == "unknown-key"
    )
    assert _post_packet(client, forge.simple(new, seq=1, prev=prev, first_number=3, t0=NOW + 300)).status_code == 201
    # Revocation.
    installer_token = api_key(app.config["DATABASE"], "installer")
    r = client.post("/v1/devices/forge-1/revoke", headers=_auth(installer_token), json={"reason": "board replaced"})
    assert r.status_code == 200
    p2 = forge.simple(
        new,
        seq=2,
        prev=decode_packet(forge.simple(new, seq=1, prev=prev, first_number=3, t0=NOW + 300)).header_hash,
        first_number=6,
    )
    assert _type(_post_packet(client, p2)) == "device-revoked"
    device = client.get("/v1/devices/forge-1", headers=_auth(installer_token)).get_json()
    assert device["status"] == "revoked" and device["fingerprint"] == identity.fingerprint(forge.point(new))


def test_equivocation_is_recorded_in_the_ledger_and_flags_the_device(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "forge-1", key)
    assert _post_packet(client, forge.simple(key, t0=NOW)).status_code == 201
    assert _type(_post_packet(client, forge.simple(key, t0=NOW + 1))) == "equivocation"
    conn = storage.connect(app.config["DATABASE"])
    kinds = [k for (k,) in conn.execute("SELECT kind FROM ledger ORDER BY idx")]
    assert kinds[-1] == "equivocation" and conn.execute("SELECT flagged FROM devices").fetchone()[0] == 1


def test_time_checks(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "forge-1", key)
    r = _post_packet(client, forge.simple(key, t0=int(time.time()) + 3600))
    assert _type(r) == "timestamp-in-future" and r.status_code == 422
    p0 = forge.simple(key, t0=NOW)
    assert _post_packet(client, p0).status_code == 201
    earlier = forge.simple(key, seq=1, prev=decode_packet(p0).header_hash, first_number=3, t0=NOW - 600)
    assert _type(_post_packet(client, earlier)) == "timestamp-out-of-range"


def _meter_packet(
    key: ec.EllipticCurvePrivateKey, seq: int, prev: bytes, readings: list[bytes], ts: list[int]
) -> bytes:
    return forge.packet(key, forge.header_map("forge-1", seq, readings, ts, prev), readings)


def test_register_and_energy_anomalies_are_accepted_and_recorded(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "forge-1", key, capacity_w=6000)
    base = NOW - NOW % 900  # a quarter hour
    ts = [base, base + 60, base + 120]
    normal = [forge.meter(0, ts[0], 1000), forge.meter(1, ts[1], 1050), forge.meter(2, ts[2], 1100)]
    p0 = _meter_packet(key, 0, GENESIS, normal, ts)
    assert _post_packet(client, p0).get_json()["anomalies"] == 0
    # Back by 200 Wh; then 59 kWh in a minute; then ordinary minutes until past the quarter hour.
    ts1 = [base + 180 + 60 * i for i in range(16)]
    odd = [forge.meter(3, ts1[0], 900), forge.meter(4, ts1[1], 60_000)]
    odd += [forge.meter(5 + i, ts1[2 + i], 60_000 + 50 * (i + 1)) for i in range(14)]
    r = _post_packet(client, _meter_packet(key, 1, decode_packet(p0).header_hash, odd, ts1))
    assert r.status_code == 201 and r.get_json()["anomalies"] == 2
    conn = storage.connect(app.config["DATABASE"])
    found = conn.execute("SELECT number, check_type FROM anomalies ORDER BY number").fetchall()
    assert [tuple(x) for x in found] == [(3, "register-decreased"), (4, "implausible-energy")]
    token = api_key(app.config["DATABASE"], "utility")
    energy = client.get(f"/v1/devices/forge-1/energy?from={base}&to={base + 1800}&interval=15m", headers=_auth(token))
    intervals = energy.get_json()["intervals"]
    # The readings end inside the second quarter hour: it holds the part they cover.
    assert [i["quality"] for i in intervals] == ["disputed", "partial"]
    assert intervals[0]["import_wh"] is not None
    assert intervals[1]["covered_from"] == base + 900 and intervals[1]["covered_to"] == ts1[-1]
    assert sum(i["import_wh"] for i in intervals) == 60_000 + 50 * 14 - 1000  # last register - first


def test_a_meter_fault_event_allows_a_register_to_go_back(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "forge-1", key)
    ts = [NOW, NOW + 60, NOW + 120]
    fault = strict_cbor.dumps({0: 3, 1: 1, 2: ts[1], 3: 2, 30: 4, 31: "meter replaced"})
    readings = [forge.meter(0, ts[0], 5000), fault, forge.meter(2, ts[2], 3)]
    r = _post_packet(client, _meter_packet(key, 0, GENESIS, readings, ts))
    assert r.status_code == 201 and r.get_json()["anomalies"] == 0


def test_rate_limit_per_device(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "forge-1", key)
    prev, statuses, start = GENESIS, [], NOW - 86400
    for seq in range(60):
        data = forge.simple(key, seq=seq, prev=prev, first_number=3 * seq, t0=start + 200 * seq)
        r = _post_packet(client, data)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert _type(r) == "rate-limited" and int(r.headers["Retry-After"]) >= 1
            break
        prev = decode_packet(data).header_hash
    assert statuses[-1] == 429 and statuses.count(201) >= 50, str(statuses)


def test_ledger_proofs_and_consistency(client: FlaskClient, app: Flask) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "forge-1", key)
    first = client.get("/v1/ledger/checkpoint").data
    prev = GENESIS
    for seq in range(5):
        data = forge.simple(key, seq=seq, prev=prev, first_number=3 * seq, t0=NOW + 200 * seq)
        assert _post_packet(client, data).status_code == 201
        prev = decode_packet(data).header_hash
    second = client.get("/v1/ledger/checkpoint").data
    vkey = client.get("/v1/ledger/key").data.decode().strip()
    (o1, s1, r1), (o2, s2, r2) = (_spec_verify(n, vkey).splitlines()[:3] for n in (first, second))
    proof = client.get(f"/v1/ledger/proof/consistency?from={s1}&to={s2}").get_json()
    merkle.verify_consistency(
        int(s1), int(s2), base64.b64decode(r1), base64.b64decode(r2), [bytes.fromhex(h) for h in proof["proof"]]
    )
    by_packet = client.get("/v1/ledger/proof/inclusion?device=forge-1&seq=3").get_json()
    merkle.verify_inclusion(
        by_packet["index"],
        by_packet["tree_size"],
        bytes.fromhex(by_packet["leaf_hash"]),
        [bytes.fromhex(h) for h in by_packet["proof"]],
        base64.b64decode(r2),
    )
    token = api_key(app.config["DATABASE"], "auditor")
    entry = client.get(f"/v1/ledger/entries/{by_packet['index']}", headers=_auth(token)).get_json()
    assert hashlib.sha256(b"\0" + bytes.fromhex(entry["entry"])).hexdigest() == by_packet["leaf_hash"]
    assert client.get("/v1/ledger/entries/0").status_code == 200  # public: the ledger holds no reading, no token
    assert _type(client.get(f"/v1/ledger/proof/consistency?from={int(s2) + 5}")) == "unprocessable"


def test_the_audit_checks_who_holds_each_meter(app: Flask) -> None:
    from verifier import settings
    from verifier.audit import replay
    from verifier.log import note

    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(app.config["DATABASE"], "meter-holder", key)
    conn = storage.connect(app.config["DATABASE"])
    log = settings.log_signer({**settings.DEFAULTS, **app.config}, create=False).verifier()
    assert isinstance(log, note.Verifier) and replay.audit(conn, log).ok
    with storage.transaction(conn):
        conn.execute("DELETE FROM meters WHERE device_id = 'meter-holder'")  # the meter looks free
    report = replay.audit(conn, log)
    assert not report.ok and "meters table" in str(report.problem)
    conn.close()
