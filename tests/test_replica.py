"""Reads apart from writes: the API reads from a PostgreSQL hot standby (READ_DATABASE) made
by pg_basebackup, writes go to the primary; a read that must write runs again on the
primary; a lagging standby answers with what it holds, never with something false."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hardware import fleet
from tests.conftest import serve
from tests.enroll import api_key
from verifier import settings
from verifier.wire import merkle

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


def _get(url: str, token: str) -> tuple[int, Any, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Wattproof-Read-From", "")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers.get("Wattproof-Read-From", "")


def _post_packet(url: str, body: bytes) -> int:
    req = urllib.request.Request(url + "/v1/packets", body, {"Content-Type": "application/cbor"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


def _until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_reads_come_from_a_lagging_standby_and_writes_from_the_primary(tmp_path: Path, pg_cluster: Any) -> None:
    primary = pg_cluster.new_database()
    key = tmp_path / "log.key"
    subprocess.run([*WATTPROOF, "db", "upgrade", "--database", primary, "--log-key", str(key)], check=True,
                   capture_output=True)  # fmt: skip
    standby = pg_cluster.replica()
    proc, url = serve(primary, 0, {
        "WATTPROOF_LOG_KEY_FILE": str(key),
        "WATTPROOF_READ_DATABASE": standby.database(primary),
        "WATTPROOF_CHECKPOINT_MIN_GAP_S": "3600",  # receipts then publish their own checkpoint
        "WATTPROOF_CHECKPOINT_INTERVAL_S": "0",
    })  # fmt: skip
    try:
        admin = api_key(primary, "admin")  # made on the primary: a key is checked there, never on the standby
        a, b = fleet.fleet(2, seed=3, prefix="rep")
        fleet.enroll(url, admin, [a, b])
        start = 1_795_000_020
        assert _post_packet(url, a.next_packet(start)) == 201  # its batch signs a checkpoint (the first)
        assert _post_packet(url, a.next_packet(start + 900)) == 201  # within the gap: none

        def standby_has(device: str, packets: int) -> bool:
            status, got, where = _get(f"{url}/v1/devices/{device}", admin)
            return status == 200 and where == "replica" and got["packets"] == packets

        _until(lambda: standby_has(a.device_id, 2), "the standby to replay the first packets")
        standby.pause()  # the standby lags from here
        for n in range(2, 4):
            assert _post_packet(url, a.next_packet(start + n * 900)) == 201  # writes: the primary
        time.sleep(0.5)
        status, got, where = _get(f"{url}/v1/devices/{a.device_id}", admin)
        assert (status, got["packets"], where) == (200, 2, "replica")  # what it holds, two packets behind
        # A receipt whose checkpoint does not exist yet must be published: the standby cannot
        # write, so the request runs again on the primary and proves the packet.
        status, got, where = _get(f"{url}/v1/packets/{a.device_id}/1", admin)
        assert status == 200 and where == "primary", (status, got, where)
        assert len(got["inclusion_proof"]) == merkle.inclusion_length(got["ledger_index"], got["tree_size"])
        # Something the standby has not seen yet: a 404 from the standby, not a false answer.
        status, got, where = _get(f"{url}/v1/packets/{a.device_id}/3", admin)
        assert (status, where) == (404, "replica"), got
        standby.resume()
        _until(lambda: standby_has(a.device_id, 4), "the standby to catch up")
    finally:
        proc.terminate()
        proc.wait()
        standby.close()
    audit = subprocess.run([*WATTPROOF, "ledger", "audit", "--database", primary, "--log-key", str(key)],
                           capture_output=True, text=True)  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_read_database_must_be_a_postgresql_standby(tmp_path: Path) -> None:
    from verifier.app import create_app

    with pytest.raises(settings.SettingsError, match="READ_DATABASE"):
        create_app({"DATABASE": str(tmp_path / "v.sqlite"), "READ_DATABASE": str(tmp_path / "other.sqlite")})
