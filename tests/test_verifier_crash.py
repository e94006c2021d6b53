"""kill -9 of the verifier while a client streams packets: nothing lost, nothing twice, nothing torn."""

from __future__ import annotations

import http.client
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import RunningVerifier
from tests.enroll import enroll_key
from verifier import audit, settings
from verifier import db as verifier_db
from verifier.packet import GENESIS, decode_packet

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
    rng = random.Random(7)
    kills = 0
    while kills < KILLS and client.is_alive():
        time.sleep(rng.uniform(0.02, 0.12))
        verifier.proc.send_signal(signal.SIGKILL)
        verifier.proc.wait()
        kills += 1
        verifier.start()
    client.join(timeout=120)
    stop.set()
    assert not client.is_alive(), f"the stream did not finish: {len(results)} answers, last {results[-5:]}"
    assert kills >= 50, f"only {kills} kills: the stream was too short"
    verifier.stop()

    conn = sqlite3.connect(verifier.db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    seqs = [s for (s,) in conn.execute("SELECT seq FROM packets ORDER BY seq")]
    assert seqs == list(range(PACKETS)), "every packet exactly once, in order"
    assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 16 * PACKETS
    conn.close()
    config = {**settings.DEFAULTS, "DATABASE": str(verifier.db)}
    report = audit.audit(verifier_db.connect(verifier.db), settings.log_signer(config).verifier())
    assert report.ok, (report.index, report.problem)
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
    assert results.count(201) == 4 * 60, results
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 240
    conn.close()
    config = {**settings.DEFAULTS, "DATABASE": str(db)}
    report = audit.audit(verifier_db.connect(db), settings.log_signer(config).verifier())
    assert report.ok, (report.index, report.problem)
