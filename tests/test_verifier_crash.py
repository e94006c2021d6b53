"""kill -9 of the verifier while a client streams packets: nothing lost, nothing twice, nothing torn."""

from __future__ import annotations

import http.client
import json
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import RunningVerifier, stored_readings
from tests.enroll import enroll_key
from verifier import settings, storage
from verifier.audit import replay
from verifier.wire import strict_cbor
from verifier.wire.packet import GENESIS, decode_packet

pytestmark = pytest.mark.crash  # a slow tier: `make check` leaves it out, `make test` runs it

KILLS = 55
PACKETS = 2500


def _stream(port_of: list[int], packets: list[bytes], results: list[int], stop: threading.Event) -> None:
    """Posts each packet until the verifier answers 200 or 201, reconnecting after every failure."""
    for data in packets:
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port_of[0], timeout=5)
                conn.request("POST", "/v1/packets", body=data, headers={"Content-Type": "application/cbor"})
                response = conn.getresponse()
                status, retry = response.status, response.getheader("Retry-After")
                conn.close()
            except OSError:
                time.sleep(0.02)
                continue
            results.append(status)
            if status in (200, 201):
                break
            if status == 429:
                time.sleep(float(retry or 1))
                continue
            raise AssertionError(f"verifier answered {status}")
    results.append(0)  # done


def _crash_through(
    verifier: RunningVerifier,
    client: threading.Thread,
    rng: random.Random,
    stop: threading.Event,
    hold: threading.Event | None = None,
) -> None:
    """kill -9 of the server at random moments and a restart each time while the client runs
    (KILLS times, then hold lets the client finish); then the client must have completed and
    the database must pass SQLite's integrity check."""
    kills = 0
    while kills < KILLS and client.is_alive():
        time.sleep(rng.uniform(0.02, 0.12))
        verifier.proc.send_signal(signal.SIGKILL)
        verifier.proc.wait()
        kills += 1
        verifier.start()
    if hold is not None:
        hold.set()
    client.join(timeout=120)
    stop.set()
    assert not client.is_alive(), "the stream did not finish"
    assert kills >= 50, f"only {kills} kills: the stream was too short"
    verifier.stop()
    conn = sqlite3.connect(verifier.db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_kill_9_while_streaming(tmp_path: Path, verifier: RunningVerifier) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enroll_key(verifier.db, "forge-1", key)
    verifier.env = {"WATTPROOF_RATE_PACKETS_PER_S": "5000", "WATTPROOF_RATE_BURST": "5000"}
    verifier.stop()
    verifier.start()
    start = int(time.time()) - 30 * 86400  # 2500 packets of 16 one-minute readings, 1000 s apart: all past
    packets, prev = [], GENESIS
    for seq in range(PACKETS):
        data = forge.simple(key, seq=seq, prev=prev, count=16, first_number=16 * seq, t0=start + 1000 * seq)
        packets.append(data)
        prev = decode_packet(data).header_hash
    port = [int(verifier.url.rsplit(":", 1)[1])]
    results: list[int] = []
    stop = threading.Event()
    client = threading.Thread(target=_stream, args=(port, packets, results, stop), daemon=True)
    client.start()
    _crash_through(verifier, client, random.Random(7), stop)
    conn = sqlite3.connect(verifier.db)
    seqs = [s for (s,) in conn.execute("SELECT seq FROM packets ORDER BY seq")]
    assert seqs == list(range(PACKETS)), "every packet exactly once, in order"
    assert len(stored_readings(conn)) == 16 * PACKETS
    conn.close()
    config = {**settings.DEFAULTS, "DATABASE": str(verifier.db)}
    report = replay.audit(storage.connect(verifier.db), settings.log_signer(config).verifier())
    assert report.ok, (report.index, report.problem)
    assert results[-1] == 0, "the client streamed to the end"
    assert results.count(201) + results.count(200) == PACKETS  # retries of a stored packet answer 200
    assert results.count(200) >= 1, "some answers were lost in a kill, and the retry was a duplicate"


def test_two_worker_processes_share_one_ledger(tmp_path: Path) -> None:
    """`serve --workers 2`: concurrent devices, every packet once, one consistent ledger."""
    import os
    import subprocess
    import sys

    db = tmp_path / "v.sqlite"
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    start = int(time.time()) - 30 * 86400
    streams = []
    for d, key in enumerate(keys):
        enroll_key(db, f"dev-{d}", key)
        packets, prev = [], GENESIS
        for seq in range(60):
            data = forge.simple(
                key, device_id=f"dev-{d}", seq=seq, prev=prev, count=16, first_number=16 * seq, t0=start + 1000 * seq
            )
            packets.append(data)
            prev = decode_packet(data).header_hash
        streams.append(packets)
    env = {**os.environ, "WATTPROOF_RATE_PACKETS_PER_S": "5000", "WATTPROOF_RATE_BURST": "5000"}
    server = subprocess.Popen(
        [sys.executable, "-m", "wattproof.cli", "serve", "--db", str(db), "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        port = [int(server.stdout.readline().rsplit(":", 1)[1])]
        threading.Thread(target=server.stdout.read, daemon=True).start()
        results: list[int] = []
        stop = threading.Event()
        clients = [threading.Thread(target=_stream, args=(port, s, results, stop)) for s in streams]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert results.count(201) == 4 * 60 and results.count(0) == 4, results
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 240
    conn.close()
    config = {**settings.DEFAULTS, "DATABASE": str(db)}
    report = replay.audit(storage.connect(db), settings.log_signer(config).verifier())
    assert report.ok, (report.index, report.problem)


def _stream_batches(
    port_of: list[int], batches: list[list[bytes]], answers: list[str], stop: threading.Event, hold: threading.Event
) -> None:
    """Posts each batch to /v1/packets/batch until it is answered, resending it after every
    failure; the last batch waits for hold, so that the kills all land inside the stream."""
    for n, batch in enumerate(batches):
        if n == len(batches) - 1:
            hold.wait(timeout=120)
        body = strict_cbor.dumps(batch)
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port_of[0], timeout=5)
                conn.request("POST", "/v1/packets/batch", body=body, headers={"Content-Type": "application/cbor"})
                response = conn.getresponse()
                status, payload = response.status, response.read()
                conn.close()
            except (OSError, http.client.HTTPException):  # refused, reset, or cut mid-answer
                time.sleep(0.02)
                continue
            assert status == 200, f"verifier answered {status}: {payload[:200]!r}"
            answers.extend(r["status"] for r in json.loads(payload)["results"])
            break
    answers.append("done")


def test_kill_9_while_streaming_batches(tmp_path: Path, verifier: RunningVerifier) -> None:
    """Batches of 1 to 8 packets from two devices, interleaved; the server is killed 50+ times."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    for d, key in enumerate(keys):
        enroll_key(verifier.db, f"dev-{d}", key)
    verifier.env = {"WATTPROOF_RATE_PACKETS_PER_S": "5000", "WATTPROOF_RATE_BURST": "5000"}
    verifier.stop()
    verifier.start()
    per_device = PACKETS
    chains = [forge.chain(key, f"dev-{d}", per_device) for d, key in enumerate(keys)]
    rng = random.Random(11)
    batches = forge.batches(chains, rng)
    merged = [p for c in chains for p in c]
    port = [int(verifier.url.rsplit(":", 1)[1])]
    answers: list[str] = []
    stop = threading.Event()
    hold = threading.Event()
    client = threading.Thread(target=_stream_batches, args=(port, batches, answers, stop, hold), daemon=True)
    client.start()
    _crash_through(verifier, client, rng, stop, hold)
    conn = sqlite3.connect(verifier.db)
    for d in range(2):
        seqs = [s for (s,) in conn.execute("SELECT seq FROM packets WHERE device_id = ? ORDER BY seq", (f"dev-{d}",))]
        assert seqs == list(range(per_device)), "every packet exactly once, in order"
    assert len(stored_readings(conn)) == 16 * 2 * per_device
    conn.close()
    config = {**settings.DEFAULTS, "DATABASE": str(verifier.db)}
    report = replay.audit(storage.connect(verifier.db), settings.log_signer(config).verifier())
    assert report.ok, (report.index, report.problem)
    assert answers.pop() == "done", "the client streamed to the end"
    assert set(answers) <= {"accepted", "duplicate"}, "no packet of a resent batch was refused"
    assert len(answers) == len(merged), "each batch answered once, in full"
    assert answers.count("accepted") <= len(merged)
