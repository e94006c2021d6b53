"""Times within what can be shown: every accepted time is bounded to 1970..9999-12-31T23:59:59Z,
the formatters are total, and a database that already holds a later time is repaired.

A community member added at 2^40 - 1 s (accepted before) made the communities API, pages and
`community list` fail with 500 for good."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests import forge
from tests.conftest import Database
from tests.enroll import api_key, enroll_key
from tests.meters import Meter
from verifier import storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.communities import operation
from verifier.devices import ingest, records
from verifier.log import ledger, note
from verifier.storage import tables, transaction
from verifier.wire import ocmf, times
from verifier.wire.packet import decode_packet
from verifier.wire.problems import PacketError

LOG = note.Signer.generate("test.example/log")
START = operation.FRANCE_15_MIN_FROM


@pytest.mark.parametrize(
    "ts, text",
    [
        (0, "1970-01-01T00:00:00Z"),
        (times.MAX_TIME, "9999-12-31T23:59:59Z"),
        (times.MAX_TIME + 1, "+10000-01-01T00:00:00Z"),
        (2**40 - 1, "+36812-02-20T00:36:15Z"),
        (-1, "+01969-12-31T23:59:59Z"),
        (1_790_006_400, "2026-09-21T16:00:00Z"),
    ],
)
def test_the_formatter_is_total(ts: int, text: str) -> None:
    assert records.iso(ts) == text
    if times.in_range(ts) and ts >= 0:
        import time

        assert text == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def test_civil_agrees_with_the_standard_library_across_the_range() -> None:
    import time

    for ts in range(0, times.MAX_TIME, times.MAX_TIME // 4099):
        assert times.civil(ts) == tuple(time.gmtime(ts)[:6])


@pytest.mark.parametrize(
    "raw", ["10000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", str(times.MAX_TIME + 1), str(2**40 - 1)]
)
def test_times_past_9999_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="9999-12-31T23:59:59Z"):
        records.parse_time(raw)
    assert records.parse_time("9999-12-31T23:59:59Z") == times.MAX_TIME


def test_a_reading_time_past_9999_is_refused_in_cbor() -> None:
    key = forge.new_key()
    late = times.MAX_TIME + 1
    readings = [forge.meter(0, late, 1000, 0)]
    data = forge.packet(key, forge.header_map("forge-1", 0, readings, [late]), readings)
    with pytest.raises(PacketError):
        decode_packet(data)


def test_an_ocmf_time_past_9999_or_not_a_date_is_refused() -> None:
    for tm in ("9999-12-31T23:59:59,000-0100 S", "2026-02-30T10:00:00,000+0000 S", "0000-01-01T00:00:00,000+0000 S"):
        with pytest.raises(ocmf.OcmfError, match="TM"):
            ocmf._time(tm)


def _member_past_9999(conn: storage.Connection) -> None:
    """What the code before the bound accepted and wrote (the same rows, the same entry)."""
    with transaction(conn):
        operation.create(conn, "ile", "Île", "FR-EDF-SEI", "EUR", START, "0.15")
        fields = {"community_id": "ile", "device_id": "home-1", "from": 2**40 - 1, "role": "consumer"}
        index = ledger.append(conn, "community-member", "home-1", fields)
        operation._write(conn, {"community_members": [("ile", "home-1", 2**40 - 1, "consumer", None, index)]})


def test_a_member_past_9999_is_refused_and_an_old_one_is_repaired(database: Database, conn: Any) -> None:
    Meter(conn, "home-1", role="consumer", start=START).send(30)
    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    client = app.test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    made = client.post(
        "/v1/communities",
        json={"community_id": "quartier", "name": "Q", "from": START, "price_per_kwh": "0.1"},
        headers=admin,
    )
    assert made.status_code == 201
    for late in (2**40 - 1, "10000-01-01T00:00:00Z", times.MAX_TIME + 1):
        refused = client.post("/v1/communities/quartier/members", json={"device_id": "home-1", "from": late},
                              headers=admin)  # fmt: skip
        assert refused.status_code == 400, refused.get_json()
        assert "9999-12-31T23:59:59Z" in refused.get_json()["detail"]

    _member_past_9999(conn)  # a database written before the bound
    listed = client.get("/v1/communities", headers=admin)
    assert listed.status_code == 200  # the formatter is total: +36812-...
    shown = client.get("/v1/communities/ile", headers=admin)
    assert shown.status_code == 200 and "+36812" in shown.get_data(as_text=True)
    from tests.test_account_scope import _signed_in

    page = _signed_in(app, admin["Authorization"].removeprefix("Bearer "))
    assert page.get("/communities").status_code == 200

    tables.times_in_range(conn)  # the repair (migration 0015 / PostgreSQL 0011)
    row = conn.execute("SELECT valid_from FROM community_members WHERE community_id = 'ile'").fetchone()
    assert int(row[0]) == times.MAX_TIME
    assert client.get("/v1/communities/ile", headers=admin).get_json()["members"][0]["from"] == times.MAX_TIME
    report = replay.audit(conn, app.extensions["wattproof.log_signer"].verifier())  # it signed the checkpoints
    assert report.problem is None, report.problem
    if database.engine == "sqlite":
        listed_cli = subprocess.run(
            [sys.executable, "-m", "wattproof.cli", "community", "list", "--db", database.target],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed_cli.returncode == 0, listed_cli.stderr
        assert "ile" in listed_cli.stdout


def test_the_repair_is_a_migration_of_both_engines() -> None:
    from verifier.storage import migrations

    found = [m for m in migrations.MIGRATIONS if m.name.endswith("_times_in_range")]
    assert len(found) == 1 and found[0].sqlite is found[0].postgres is tables.times_in_range


def test_batches_hold_reading_times_within_range(tmp_path: Any) -> None:
    db = storage.connect(str(tmp_path / "v.sqlite"))
    key = forge.new_key()
    enroll_key(str(tmp_path / "v.sqlite"), "forge-1", key)
    late = times.MAX_TIME + 60
    readings = [forge.meter(0, late, 1000, 0)]
    data = forge.packet(key, forge.header_map("forge-1", 0, readings, [late]), readings)
    (result,) = ingest.accept_batch(db, [data], now=1_790_006_400)
    assert not isinstance(result, ingest.Outcome)
