"""The fleet simulator's devices (hardware/fleet.py) and bulk enrollment (POST
/v1/enrollments/challenges and /v1/enrollments/batch)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from hardware import fleet, micropython
from tests.conftest import RunningVerifier
from tests.enroll import INSTALLER, api_key
from verifier.wire import merkle, strict_cbor
from verifier.wire.packet import decode_packet


def _post(url: str, path: str, token: str, body: bytes, kind: str) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, body, {"Authorization": f"Bearer {token}", "Content-Type": kind})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_fleet_devices_packets_are_the_firmwares_byte_for_byte() -> None:
    """For the same key and readings, the CPython fleet device and the firmware's own
    PacketBuilder under MicroPython build the same bytes (RFC 6979 signatures: no randomness)."""
    from pathlib import Path

    device = fleet.fleet(3, seed=11)[2]
    start = 1_795_000_020
    ours = [device.next_packet(start), device.next_packet(start + 15 * 60)]
    d = device.key.private_numbers().private_value
    step = device.watts * fleet.INTERVAL_S // 3600
    result = micropython.run(Path(__file__).parent / "firmware" / "fleet_packets.py", f"{d:064x}", device.device_id,
                             str(start), "1000000", str(step), paths=(micropython.compiled_firmware(),))  # fmt: skip
    assert result.returncode == 0, result.stderr
    theirs = [bytes.fromhex(line) for line in result.stdout.split()]
    assert theirs == ours
    assert decode_packet(ours[1]).header.prev == decode_packet(ours[0]).header_hash


def test_bulk_enrollment_checks_each_board_and_answers_each_with_its_receipt(verifier: RunningVerifier) -> None:
    """Many challenges at once, then a batch of enrollments, each with its own board's proof
    and its installer's signature: the good ones enrolled with receipts under one checkpoint,
    a bad proof, a used challenge and another installer's name refused one by one, leaving no
    trace; the same batch again is answered as already enrolled."""
    token = api_key(verifier.db, "installer")
    status, got = _post(verifier.url, "/v1/enrollments/challenges", token, b'{"count": 6}', "application/json")
    assert status == 200 and len(set(got["challenges"])) == 6, got
    challenges = [bytes.fromhex(c) for c in got["challenges"]]
    devices = fleet.fleet(6, seed=5, prefix="bulk")
    requests = [d.enrollment(c, INSTALLER) for d, c in zip(devices, challenges, strict=True)]
    requests[1]["pop"] = bytes(64)  # not the board's signature
    requests[2]["challenge"] = challenges[0]  # used by the first (its proof signed over another)
    requests[3] = devices[3].enrollment(challenges[0], INSTALLER)  # the first's challenge, properly signed
    requests[4]["installer"] = "someone-else"  # not this key's installer
    status, got = _post(verifier.url, "/v1/enrollments/batch", token, strict_cbor.dumps(requests), "application/cbor")
    assert status == 200, got
    kinds = [
        r["status"] if r["status"] != "refused" else r["problem"]["type"].rsplit("/", 1)[1] for r in got["results"]
    ]
    assert kinds == ["enrolled", "bad-signature", "bad-signature", "bad-challenge", "forbidden", "enrolled"], kinds
    assert (got["enrolled"], got["already_enrolled"], got["refused"]) == (2, 0, 4)
    first, last = got["results"][0], got["results"][5]
    assert first["checkpoint"] == last["checkpoint"] and first["tree_size"] == last["tree_size"]
    body = first["checkpoint"].split("\n\n")[0] + "\n"
    size, root = int(body.split("\n")[1]), base64.b64decode(body.split("\n")[2])
    for r in (first, last):
        merkle.verify_inclusion(r["ledger_index"], size, bytes.fromhex(r["leaf_hash"]),
                                [bytes.fromhex(h) for h in r["inclusion_proof"]], root)  # fmt: skip
    # The refused ones left nothing: device 3 enrolls with a fresh challenge of its own.
    status, again = _post(verifier.url, "/v1/enrollments/batch", token,
                          strict_cbor.dumps([requests[0], requests[5]]), "application/cbor")  # fmt: skip
    assert [r["status"] for r in again["results"]] == ["already-enrolled", "already-enrolled"], again
    status, got = _post(verifier.url, "/v1/enrollments/challenges", token, b'{"count": 1}', "application/json")
    fresh = devices[3].enrollment(bytes.fromhex(got["challenges"][0]), INSTALLER)
    status, got = _post(verifier.url, "/v1/enrollments/batch", token, strict_cbor.dumps([fresh]), "application/cbor")
    assert got["results"][0]["status"] == "enrolled", got
    # Their packets are taken as any board's.
    packet = devices[0].next_packet(1_795_000_020)
    status, answer = _post(verifier.url, "/v1/packets", "", packet, "application/cbor")
    assert status == 201, answer


def test_bulk_enrollment_bounds(verifier: RunningVerifier) -> None:
    token = api_key(verifier.db, "installer")
    for body in (b'{"count": 0}', b'{"count": 1001}', b'{"count": "3"}', b"{}"):
        status, got = _post(verifier.url, "/v1/enrollments/challenges", token, body, "application/json")
        assert status == 400 and got["type"].startswith("https://"), (body, got)
    for batch in ([], "x", [1] * 1001):
        status, got = _post(verifier.url, "/v1/enrollments/batch", token, strict_cbor.dumps(batch), "application/cbor")
        assert status == 400 and got["type"].endswith("/invalid-field"), (batch, got)
    status, got = _post(verifier.url, "/v1/enrollments/batch", token, strict_cbor.dumps([{"device": 1}]),
                        "application/cbor")  # fmt: skip
    assert status == 200 and got["results"][0]["status"] == "refused", got
    status, got = _post(verifier.url, "/v1/enrollments/challenges", "", b'{"count": 2}', "application/json")
    assert status == 401, got


def test_sim_fleet_enrolls_in_bulk_and_streams_every_packet(verifier: RunningVerifier) -> None:
    """`wattproof sim fleet` on a running verifier: every device enrolled, every packet accepted."""
    import subprocess
    import sys

    admin = api_key(verifier.db, "admin")
    done = subprocess.run([sys.executable, "-m", "wattproof.cli", "sim", "fleet", "--verifier", verifier.url,
                           "--api-key", admin, "--devices", "300", "--slots", "2", "--senders", "4"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 devices enrolled" in done.stdout and "600 packets of 15 readings" in done.stdout, done.stdout
    assert "answers {201: 600}" in done.stdout
    audit = subprocess.run([sys.executable, "-m", "wattproof.cli", "ledger", "audit", "--db", str(verifier.db)],
                           capture_output=True, text=True)  # fmt: skip
    assert audit.returncode == 0 and "packets 600, readings 9000" in audit.stdout, audit.stdout


def test_the_space_a_database_takes_is_told_by_table_and_index(tmp_path: Any, pg_cluster: Any) -> None:
    """What bench/fleet.py reports per reading: every table and index of either engine, an
    index under its table."""
    from verifier import storage

    for target in (str(tmp_path / "v.sqlite"), pg_cluster.new_database()):
        conn = storage.connect(target)
        try:
            rows = conn.space()
        finally:
            conn.close()
        names = {(table, name) for table, name, _ in rows}
        assert "readings" not in {table for table, _ in names} and ("ledger", "ledger") in names, (target, names)
        indexes = {name for table, name, _ in rows if table == "packets" and ("number" in name or "time" in name)}
        assert indexes and all(size >= 0 for _, _, size in rows), (target, rows)


@pytest.mark.board
def test_sim_fleet_over_mqtt_through_two_bridges(verifier: RunningVerifier, tmp_path: Any) -> None:
    """The fleet's packets published through mosquitto to two bridges on one shared
    subscription: every packet's receipt comes back, each counted once, the audit clean."""
    import subprocess
    import sys

    from tests.test_mqtt import Bridge, _need_mosquitto
    from wattproof.broker import LocalBroker

    _need_mosquitto()
    broker = LocalBroker(tmp_path / "broker")
    broker.start()
    bridges = [Bridge(verifier.db, broker, f"bridge-{i}") for i in range(2)]
    held = fleet.HeldConnections("127.0.0.1", broker.port, 200)  # idle boards' connections beside the load
    try:
        admin = api_key(verifier.db, "admin")
        done = subprocess.run([sys.executable, "-m", "wattproof.cli", "sim", "fleet", "--verifier", verifier.url,
                               "--api-key", admin, "--devices", "300", "--slots", "2", "--senders", "3",
                               "--transport", "mqtt", "--broker", broker.url],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "600 packets of 15 readings" in done.stdout and "answers {201: 600}" in done.stdout, done.stdout
        assert held.still_held() == 200  # the broker kept every idle connection through it
    finally:
        for bridge in bridges:
            bridge.stop()
        broker.stop()
    took = [sum("(mqtt)" in line and "accepted" in line for line in b.lines) for b in bridges]
    assert sum(took) == 600 and all(took), took  # the shared subscription split them
    audit = subprocess.run([sys.executable, "-m", "wattproof.cli", "ledger", "audit", "--db", str(verifier.db)],
                           capture_output=True, text=True)  # fmt: skip
    assert audit.returncode == 0 and "packets 600, readings 9000" in audit.stdout, audit.stdout


def test_a_gap_between_checkpoints_signs_fewer_and_every_receipt_still_proves(tmp_path: Any) -> None:
    """CHECKPOINT_MIN_GAP_S: a fleet's many one-packet requests no longer sign a checkpoint
    each; a packet's receipt (GET /v1/packets/D/S) still proves it, under a checkpoint
    published for it when none held it yet, and the audit is clean."""
    import subprocess
    import sys

    from tests.conftest import serve
    from verifier import storage
    from verifier.log import checkpoints

    db = tmp_path / "v.sqlite"
    proc, url = serve(db, 0, {"WATTPROOF_CHECKPOINT_MIN_GAP_S": "3600", "WATTPROOF_CHECKPOINT_INTERVAL_S": "0"})
    try:
        admin = api_key(db, "admin")
        devices = fleet.fleet(20, seed=9, prefix="gap")
        fleet.enroll(url, admin, devices)
        conn = storage.connect(db)
        before = checkpoints.latest(conn)
        assert before is not None
        for device in devices:
            status, answer = _post(url, "/v1/packets", "", device.next_packet(1_795_000_020), "application/cbor")
            assert status == 201, answer
        after = checkpoints.latest(conn)
        assert after is not None
        assert after.size - before.size <= 1, (before.size, after.size)  # one at most: the first
        req = urllib.request.Request(f"{url}/v1/packets/{devices[-1].device_id}/0",
                                     headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            got = json.loads(resp.read())
        size = int(got["checkpoint"].split("\n")[1])
        assert got["tree_size"] == size > got["ledger_index"] and size > after.size  # published for this receipt
        assert len(got["inclusion_proof"]) == merkle.inclusion_length(got["ledger_index"], size)
        conn.close()
    finally:
        proc.terminate()
        proc.wait()
    audit = subprocess.run([sys.executable, "-m", "wattproof.cli", "ledger", "audit", "--db", str(db)],
                           capture_output=True, text=True)  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr
