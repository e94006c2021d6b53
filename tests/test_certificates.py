"""Granular certificates on both engines: one bundle per complete, measured producer hour,
exactly its generation, never twice, never beyond capacity, re-derived by the audit."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.meters import HOUR, T0, Meter
from verifier import storage
from verifier.audit import replay
from verifier.certificates import issuance, registry
from verifier.log import ledger, note

LOG = note.Signer.generate("test.example/log")


def Producer(db: storage.Connection, device_id: str, capacity_w: int = 4000, start: int = T0 + 600) -> Meter:  # noqa: N802
    """A producer's board: generation on export_wh (tests/meters.py)."""
    return Meter(db, device_id, "producer", capacity_w, start)


def _issue(conn: storage.Connection, now: int = T0 + 90 * 86400) -> tuple[list[dict], list[issuance.Skipped]]:  # type: ignore[type-arg]
    with storage.transaction(conn):
        return issuance.issue_pending(conn, now, LOG.name)


def _audit(conn: storage.Connection) -> replay.Report:
    report = replay.audit(conn, LOG.verifier())
    assert report.ok, (report.index, report.problem)
    return report


def test_each_complete_measured_hour_once_exactly_its_generation(conn: storage.Connection) -> None:
    pv = Producer(conn, "pv-1")
    pv.send(4 * 60 + 20)  # 00:10 .. 04:29 at 50 Wh a minute
    issued, skipped = _issue(conn)
    # 00:00 is partial (readings from 00:10); 01:00-03:00 are complete; 04:00 is not over yet.
    assert [b["production_starting_interval"] - T0 for b in issued] == [HOUR, 2 * HOUR, 3 * HOUR]
    assert all(b["bundle_quantity"] == 3000 and b["face_value"] == 1 for b in issued)
    assert [(s.start - T0, s.reason) for s in skipped] == [(0, "partial")]
    ranges = [(b["bundle_id_range_start"], b["bundle_id_range_end"]) for b in issued]
    assert ranges == [(1, 3000), (3001, 6000), (6001, 9000)]  # consecutive certificate ids, 1 Wh each
    first = issued[0]
    assert first["energy_source"] == "solar" and first["technology"] == "solar-pv" and first["status"] == "Active"
    assert first["production_ending_interval"] - first["production_starting_interval"] == HOUR
    assert first["issuing_body"] == LOG.name and first["device_capacity_w"] == 4000
    assert ledger.entry(conn, first["ledger_index"]).body["kind"] == "issuance"
    # Again: nothing new. Then the next hours arrive (a backlog after an outage): they are issued.
    assert _issue(conn) == ([], [])
    pv.send(3 * 60)
    issued, _ = _issue(conn)
    assert [b["production_starting_interval"] - T0 for b in issued] == [4 * HOUR, 5 * HOUR, 6 * HOUR]
    assert issued[0]["bundle_id_range_start"] == 9001
    report = _audit(conn)
    assert report.certificates == 6 and report.certified_wh == 6 * 3000
    listed, cursor = registry.list_bundles(conn, 0, 2**40, None, 4, device_id="pv-1")
    assert len(listed) == 4 and cursor is not None
    rest, cursor = registry.list_bundles(conn, 0, 2**40, cursor, 4, device_id="pv-1")
    assert len(rest) == 2 and cursor is None
    assert sum(b["bundle_quantity"] for b in listed + rest) == 6 * 3000


def test_never_for_a_disputed_or_missing_hour_nor_beyond_capacity(conn: storage.Connection) -> None:
    pv = Producer(conn, "pv-2", start=T0)
    pv.send(60)  # 00:00 measured
    pv.send(60, back_at=90)  # 01:00: the register went back at 01:30
    pv.ts += 2 * HOUR  # 02:00-03:59: the board was off (no readings)
    pv.send(60)  # 04:00 measured: its first reading is at 04:00 sharp
    pv.send(60)  # 05:00 measured
    pv.send(70, wh_per_min=80)  # 06:00: 4,800 Wh > 4,000 W x 1 h x 1.1 (settled: readings to 07:09)
    issued, skipped = _issue(conn)
    assert [b["production_starting_interval"] - T0 for b in issued] == [0, 4 * HOUR, 5 * HOUR]
    reasons = {(s.start - T0) // HOUR: s.reason for s in skipped}
    # 02:00 and 03:00 fall in the gap: their split is interpolated, never certified.
    assert reasons == {1: "disputed", 2: "interpolated", 3: "interpolated", 6: reasons[6]}
    assert "exceeds the capacity" in reasons[6]
    _audit(conn)


def test_the_audit_derives_every_quantity_again(conn: storage.Connection) -> None:
    pv = Producer(conn, "pv-3", start=T0)
    pv.send(3 * 60 + 10)
    issued, _ = _issue(conn)
    assert len(issued) == 3
    _audit(conn)
    # A bundle row changed behind the ledger's back.
    with storage.transaction(conn):
        conn.execute("UPDATE certificates SET bundle_quantity = bundle_quantity + 1 WHERE issuance_id = ?",
                     (issued[0]["issuance_id"],))  # fmt: skip
    report = replay.audit(conn, LOG.verifier())
    assert not report.ok and "certificates row" in str(report.problem)
    with storage.transaction(conn):
        conn.execute("UPDATE certificates SET bundle_quantity = bundle_quantity - 1 WHERE issuance_id = ?",
                     (issued[0]["issuance_id"],))  # fmt: skip
    _audit(conn)
    # An issuance entry for more than the readings support, ledger and table alike.
    pv.send(60)
    forged = issuance.bundle_fields(
        "pv-3",
        {"capacity_w": 4000, "technology": "solar-pv", "grid_area": "test-area"},
        T0 + 3 * HOUR,
        3001,
        9001,
        T0,
        LOG.name,
        issuance.DEFAULT_EXPIRY_S,
    )
    with storage.transaction(conn):
        index = ledger.append(conn, "issuance", "pv-3", forged)
        conn.execute(
            "INSERT INTO certificates (issuance_id, device_id, production_start, bundle_id_range_start,"
            " bundle_id_range_end, bundle_quantity, status, issued_at, expires_at, ledger_idx, fields)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (forged["issuance_id"], "pv-3", T0 + 3 * HOUR, 9001, 12001, 3001, "Active", T0, forged["expiry_date"],
             index, json.dumps(forged)),
        )  # fmt: skip
    report = replay.audit(conn, LOG.verifier())
    assert not report.ok and report.index == index and "readings support 3000" in str(report.problem)


def test_two_issuers_at_once_issue_each_hour_once(database: Database, conn: storage.Connection) -> None:
    pv = Producer(conn, "pv-4", start=T0)
    pv.send(6 * 60 + 10)
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def issuer() -> None:
        own = storage.connect(database.target)
        try:
            barrier.wait()
            with storage.transaction(own):
                issued, _ = issuance.issue_pending(own, T0 + 90 * 86400, LOG.name)
            results.append(len(issued))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            own.close()

    threads = [threading.Thread(target=issuer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == [0, 6]
    assert conn.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] == 6
    _audit(conn)


def test_the_api_issues_and_lists_bundles(database: Database, conn: storage.Connection) -> None:
    from tests.enroll import api_key
    from verifier.app import create_app

    pv = Producer(conn, "pv-5", start=T0)
    pv.send(2 * 60 + 10)
    client = create_app(database.config()).test_client()
    admin, utility = api_key(database.target, "admin"), api_key(database.target, "utility")
    assert client.post("/v1/certificates/issue").status_code == 401
    forbidden = client.post("/v1/certificates/issue", headers={"Authorization": f"Bearer {utility}"})
    assert forbidden.status_code == 403 and forbidden.mimetype == "application/problem+json"
    answer = client.post("/v1/certificates/issue", headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["issued"] == 2 and answer.get_json()["issued_wh"] == 6000
    auth = {"Authorization": f"Bearer {utility}"}
    page = client.get("/v1/certificates?device_id=pv-5&limit=1", headers=auth).get_json()
    assert len(page["bundles"]) == 1 and page["next_cursor"] is not None
    assert page["bundles"][0]["production_starting_interval_time"].endswith("Z")
    rest = client.get(f"/v1/certificates?device_id=pv-5&cursor={page['next_cursor']}", headers=auth).get_json()
    assert len(rest["bundles"]) == 1 and rest["next_cursor"] is None
    hour = client.get(f"/v1/certificates?from={T0 + HOUR}&to={T0 + 2 * HOUR}", headers=auth).get_json()
    assert [b["production_starting_interval"] for b in hour["bundles"]] == [T0 + HOUR]
    bad = client.get("/v1/certificates?colour=green", headers=auth)
    assert bad.status_code == 400 and bad.get_json()["field"] == "colour"
    _audit(conn)


def test_the_command_line_issues_and_lists(tmp_path: Path) -> None:
    import subprocess
    import sys

    from verifier.app import create_app

    db = tmp_path / "v.sqlite"
    create_app({"DATABASE": str(db)})  # as a first `wattproof serve` would: the database and its log key
    conn = storage.connect(db)
    Producer(conn, "pv-6", start=T0).send(2 * 60 + 10)
    conn.close()
    cli = [sys.executable, "-m", "wattproof.cli", "certificates"]
    issued = subprocess.run([*cli, "issue", "--db", str(db), "--verbose"], capture_output=True, text=True)
    assert issued.returncode == 0, issued.stderr
    assert "2 bundles, 6000 Wh issued" in issued.stdout and f"issued pv-6/{T0}: 3000 Wh" in issued.stdout
    listed = subprocess.run([*cli, "list", "--db", str(db), "--device", "pv-6"], capture_output=True, text=True)
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [b["bundle_quantity"] for b in lines] == [3000, 3000], listed.stderr
    again = subprocess.run([*cli, "issue", "--db", str(db)], capture_output=True, text=True)
    assert "0 bundles, 0 Wh issued" in again.stdout
    audit_run = subprocess.run(
        [sys.executable, "-m", "wattproof.cli", "ledger", "audit", "--db", str(db)], capture_output=True, text=True
    )
    assert audit_run.returncode == 0 and "certificate bundles 2 (6000 Wh)" in audit_run.stdout, audit_run.stdout


def test_a_running_server_issues_on_its_own(database: Database, conn: storage.Connection) -> None:
    import time
    import urllib.request

    from tests.conftest import serve
    from tests.enroll import api_key

    Producer(conn, "pv-7", start=T0).send(2 * 60 + 10)
    env = {**database.env(), "WATTPROOF_CERTIFICATE_INTERVAL_S": "0.3", "WATTPROOF_CERTIFICATE_EXPIRY_S": "86400"}
    proc, url = serve(database.target, 0, env, "--workers", "2")
    try:
        utility = api_key(database.target, "utility")
        found: list[dict] = []  # type: ignore[type-arg]
        deadline = time.monotonic() + 30
        while len(found) < 2 and time.monotonic() < deadline:
            req = urllib.request.Request(url + "/v1/certificates", headers={"Authorization": f"Bearer {utility}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                found = json.loads(resp.read())["bundles"]
            time.sleep(0.2)
        time.sleep(1)  # more rounds of both workers' issuers: still each hour once
        with urllib.request.urlopen(req, timeout=10) as resp:
            found = json.loads(resp.read())["bundles"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [b["production_starting_interval"] - T0 for b in found] == [0, HOUR]
    assert all(b["expiry_date"] - b["issuance_date"] == 86400 for b in found)
    _audit(conn)


def test_a_long_history_is_decided_a_round_at_a_time(conn: storage.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    pv = Producer(conn, "pv-8", start=T0)
    pv.send(7 * 60 + 10)
    with storage.transaction(conn):
        issued, skipped = issuance.issue_pending(conn, T0, LOG.name, budget=2)
    assert len(issued) + len(skipped) == 2  # a bounded round: the write lock is held briefly
    rounds = []
    real = issuance.issue_pending

    def counted(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        rounds.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(issuance, "ROUND_HOURS", 2)
    monkeypatch.setattr(issuance, "issue_pending", counted)
    more, _ = issuance.issue_all(conn, T0, LOG.name)
    assert [b["production_starting_interval"] - T0 for b in more] == [2 * HOUR + i * HOUR for i in range(5)]
    assert len(rounds) == 3  # 2 + 2 + 1 hours
    assert [b["bundle_id_range_start"] for b in issued + more] == [1 + 3000 * i for i in range(7)]
    _audit(conn)
