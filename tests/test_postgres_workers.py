"""Several stateless workers on one PostgreSQL database, and crashes of either side.

Two `wattproof serve --database postgresql://...` processes on two ports stand for two
hosts. The client alternates between them and resends a batch after any failure. Every
acknowledged packet must be stored exactly once, every chain unbroken, and
`wattproof ledger audit` clean: after kill -9 of a worker mid-batch (at least 20 times),
and after immediate shutdowns of PostgreSQL itself mid-stream (at least 20 times).
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import Database, make_database, serve, stored_readings
from tests.enroll import enroll_key
from verifier import settings, storage
from verifier.audit import replay
from verifier.wire import strict_cbor

pytestmark = pytest.mark.pg_crash  # a slow tier: `make check` leaves it out, `make test` runs it

CRASHES = 20
FAST = {"WATTPROOF_RATE_PACKETS_PER_S": "5000", "WATTPROOF_RATE_BURST": "5000"}


class Worker:
    """One `wattproof serve` process on a port of its own (a host)."""

    def __init__(self, database: Database, *extra: str) -> None:
        self.database, self.extra = database, extra
        self.proc, url = serve(database.target, 0, {**database.env(), **FAST}, *extra)
        self.port = int(url.rsplit(":", 1)[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _ = serve(self.database.target, self.port, {**self.database.env(), **FAST}, *self.extra)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _chains(database: Database, devices: int, packets: int) -> list[list[bytes]]:
    out = []
    for d in range(devices):
        key = ec.generate_private_key(ec.SECP256R1())
        enroll_key(database.target, f"dev-{d}", key)
        out.append(forge.chain(key, f"dev-{d}", packets))
    return out


class Client(threading.Thread):
    """Posts each batch, alternating hosts, until one answers it; resends after any failure."""

    def __init__(self, ports: list[int], batches: list[list[bytes]], hold: threading.Event) -> None:
        super().__init__(daemon=True)
        self.ports, self.batches, self.hold = ports, batches, hold
        self.answers: list[str] = []
        self.sent_to: list[int] = []
        self.retries = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)

    def _run(self) -> None:
        turn = 0
        for n, batch in enumerate(self.batches):
            if n == len(self.batches) - 1:
                self.hold.wait(timeout=300)  # the crashes all land inside the stream
            body = strict_cbor.dumps(batch)
            deadline = time.monotonic() + 120
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError(f"batch {n} not answered in 120 s")
                port = self.ports[turn % len(self.ports)]
                turn += 1
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("POST", "/v1/packets/batch", body=body, headers={"Content-Type": "application/cbor"})
                    response = conn.getresponse()
                    status, payload = response.status, response.read()
                    conn.close()
                except (OSError, http.client.HTTPException):  # refused, reset, or cut mid-answer
                    self.retries += 1
                    time.sleep(0.02)
                    continue
                if status == 503:  # the database is down: the board keeps its packets and retries
                    assert json.loads(payload)["type"].endswith("/storage-unavailable"), payload[:200]
                    self.retries += 1
                    time.sleep(0.05)
                    continue
                assert status == 200, f"verifier answered {status}: {payload[:300]!r}"
                self.answers.extend(r["status"] for r in json.loads(payload)["results"])
                self.sent_to.append(port)
                break
        self.answers.append("done")


def _check(database: Database, chains: list[list[bytes]], client: Client) -> None:
    assert client.error is None, client.error
    assert client.answers.pop() == "done", "the client streamed to the end"
    assert set(client.answers) <= {"accepted", "duplicate"}, "no packet of a resent batch was refused"
    total = sum(len(c) for c in chains)
    assert len(client.answers) == total, "each batch answered once, in full"
    conn = storage.connect(database.target)
    for d, chain in enumerate(chains):
        seqs = [
            int(s) for (s,) in conn.execute("SELECT seq FROM packets WHERE device_id = ? ORDER BY seq", (f"dev-{d}",))
        ]
        assert seqs == list(range(len(chain))), "every packet exactly once, in order"
    assert len(stored_readings(conn)) == 16 * total
    report = replay.audit(
        conn, settings.log_signer({**settings.DEFAULTS, **database.config()}, create=False).verifier()
    )
    assert report.ok, (report.index, report.problem)
    conn.close()
    cli = [sys.executable, "-m", "wattproof.cli", "ledger", "audit", "--database", database.target]
    run = subprocess.run([*cli, "--log-key", str(database.log_key)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "audit OK" in run.stdout, run.stdout + run.stderr


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    return make_database("postgresql", tmp_path, request)


def test_two_hosts_one_alternating_client_exactly_once(pg: Database) -> None:
    chains = _chains(pg, 3, 300)
    hosts = [Worker(pg), Worker(pg, "--workers", "2")]
    hold = threading.Event()
    hold.set()
    client = Client([h.port for h in hosts], forge.batches(chains, random.Random(3)), hold)
    try:
        client.start()
        client.join(timeout=600)
    finally:
        for h in hosts:
            h.stop()
    assert set(client.sent_to) == {h.port for h in hosts}, "both hosts took batches"
    _check(pg, chains, client)


def _crash_stream(pg: Database, seed: int, crash: Any) -> Client:
    """Two hosts and a client streaming 1,400 packets in batches while crash(rng, n) strikes
    CRASHES times; the client's last batch waits until then. Returns the finished client."""
    chains = _chains(pg, 2, 700)
    hosts = [Worker(pg), Worker(pg)]
    rng = random.Random(seed)
    hold = threading.Event()
    client = Client([h.port for h in hosts], forge.batches(chains, rng), hold)
    crashes = 0
    try:
        client.start()
        while crashes < CRASHES and client.is_alive():
            crash(rng, hosts, crashes)
            crashes += 1
        hold.set()
        client.join(timeout=300)
    finally:
        for h in hosts:
            h.stop()
    assert not client.is_alive(), "the stream did not finish"
    assert crashes >= CRASHES, f"only {crashes} crashes: the stream was too short"
    assert client.retries > 0, "the crashes were felt"
    _check(pg, chains, client)
    return client


def test_kill_9_of_a_worker_mid_batch(pg: Database) -> None:
    def kill(rng: random.Random, hosts: list[Worker], n: int) -> None:
        time.sleep(rng.uniform(0.05, 0.25))
        hosts[n % 2].kill()
        hosts[n % 2].restart()

    _crash_stream(pg, 17, kill)


def test_immediate_shutdown_of_postgresql_mid_stream(pg: Database, pg_cluster: Any) -> None:
    def shut_down(rng: random.Random, hosts: list[Worker], n: int) -> None:
        time.sleep(rng.uniform(0.1, 0.4))
        pg_cluster.stop("immediate")
        time.sleep(rng.uniform(0.0, 0.3))
        pg_cluster.start()

    _crash_stream(pg, 23, shut_down)
