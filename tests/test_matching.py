"""Hourly matching on both engines: a consumer's hourly load against the certificates
claimed for it, hour by hour, beside the annual-volume match; JSON and CSV, by device and
by account, through the API with the key's own account only."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tests.conftest import Database
from tests.meters import HOUR, T0, Meter
from verifier import storage
from verifier.certificates import issuance, matching, registry
from verifier.devices import records
from verifier.log import note

LOG = note.Signer.generate("test.example/log")
NOW = T0 + 40 * 86400


def _community(conn: storage.Connection) -> None:
    """sun's rooftop: 3,000, 3,000 and 300 Wh in hours 0-2; the city's school uses 1,200 Wh an
    hour; the city holds everything and claims 2,000 + 500 + 300 Wh of it for the school."""
    with storage.transaction(conn):
        registry.create_account(conn, "sun", "Rooftop", "producer", now=T0)
        registry.create_account(conn, "city", "City", "consumer", now=T0)
    pv = Meter(conn, "pv-1", start=T0)
    school = Meter(conn, "school-1", role="consumer", capacity_w=20_000, start=T0)
    with storage.transaction(conn):
        registry.assign_device(conn, "sun", "pv-1", now=T0)
        registry.assign_device(conn, "city", "school-1", now=T0)
    pv.send(3 * 60 + 10, wh_per_min=lambda ts: 5 if ts >= T0 + 2 * HOUR else 50)
    school.send(3 * 60 + 10, wh_per_min=20)
    with storage.transaction(conn):
        issued, _ = issuance.issue_pending(conn, NOW, LOG.name)
    assert [b["bundle_quantity"] for b in issued] == [3000, 3000, 300]
    with storage.transaction(conn):
        registry.act(
            conn,
            "transfer",
            {
                "ranges": [[1, 3000], [3001, 6000], [6001, 6300]],
                "to_account": "city",
                "from_account": "sun",
                "time": NOW,
            },
        )
        registry.act(
            conn,
            "claim",
            {
                "ranges": [[1, 2000], [3001, 3500], [6001, 6300]],
                "beneficiary": "city",
                "holder": "city",
                "consumer_device": "school-1",
                "period_start": T0,
                "period_end": T0 + 3 * HOUR,
                "time": NOW,
            },
        )


def test_hour_by_hour_against_the_claimed_certificates(conn: storage.Connection) -> None:
    _community(conn)
    for who in ({"device_id": "school-1"}, {"account_id": "city"}):
        rows = matching.hours(conn, T0, T0 + 3 * HOUR, **who)
        # The load is the school's energy per hour, exactly as records give it.
        loads = [h["import_wh"] for h in records.energy(conn, "school-1", T0, T0 + 3 * HOUR, "1h")]
        assert [h.load_wh for h in rows] == loads == [1200, 1200, 1200]
        assert [(h.claimed_wh, h.matched_wh) for h in rows] == [(2000, 1200), (500, 500), (300, 300)]
        total = matching.summary(rows)
        assert (total["load_wh"], total["claimed_wh"], total["matched_wh"]) == (3600, 2800, 2000)
        assert (total["unmatched_wh"], total["excess_wh"]) == (1600, 800)
        assert total["hourly_match"] == round(2000 / 3600, 6)  # the noon surplus does not cover the evening
        assert total["volume_match"] == round(2800 / 3600, 6)
        assert total["hours_not_covered"] == [T0 + HOUR, T0 + 2 * HOUR]
    # Hours without load or certificates are there too; a producer is not matched.
    longer = matching.hours(conn, T0 - HOUR, T0 + 4 * HOUR, device_id="school-1")
    assert [h.quality for h in longer] == ["missing", "measured", "measured", "measured", "partial"]
    try:
        matching.hours(conn, T0, T0 + HOUR, device_id="pv-1")
        raise AssertionError("a producer was matched")
    except matching.NotAConsumer:
        pass
    table = list(csv.reader(io.StringIO(matching.to_csv(rows))))
    assert table[0] == list(matching.CSV_COLUMNS)
    assert [r[2:7] for r in table[1:]] == [
        ["1200", "2000", "1200", "0", "800"],
        ["1200", "500", "500", "700", "0"],
        ["1200", "300", "300", "900", "0"],
    ]


def test_the_api_answers_json_and_csv_for_the_key_s_own_account(database: Database, conn: storage.Connection) -> None:
    from verifier import auth
    from verifier.app import create_app

    _community(conn)
    with storage.transaction(conn):
        registry.create_account(conn, "other", "Someone else", "consumer", now=T0)
        city = auth.create_key(conn, "city", "account", account="city")
        other = auth.create_key(conn, "other", "account", account="other")
        utility = auth.create_key(conn, "utility", "utility")
    client = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0)).test_client()

    def get(query: str, token: str) -> Any:
        return client.get(f"/v1/matching?{query}", headers={"Authorization": f"Bearer {token}"})

    span = f"from={records.iso(T0)}&to={T0 + 3 * HOUR}"
    answer = get(f"account_id=city&{span}", city)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["summary"]["hourly_match"] == round(2000 / 3600, 6) and len(body["hours"]) == 3
    assert body["hours"][1]["unmatched_wh"] == 700 and body["hours"][0]["start_time"] == records.iso(T0)
    assert get(f"device_id=school-1&{span}", city).get_json()["summary"] == body["summary"]
    as_csv = get(f"device_id=school-1&{span}&format=csv", utility)
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.data.decode().splitlines()[0] == ",".join(matching.CSV_COLUMNS)
    assert get(f"account_id=city&{span}", other).status_code == 403
    assert get(f"device_id=school-1&{span}", other).status_code == 403
    assert get(f"device_id=pv-1&{span}", utility).status_code == 404
    both = get(f"device_id=school-1&account_id=city&{span}", utility)
    assert both.status_code == 422 and both.mimetype == "application/problem+json"
    year = get(f"account_id=city&from={T0}&to={T0 + 400 * 86400}", utility)
    assert year.status_code == 422


def test_the_command_line_matches(database: Database, conn: storage.Connection) -> None:
    import os
    import subprocess
    import sys

    _community(conn)
    env = {**os.environ, **database.env()}
    cli = [
        sys.executable,
        "-m",
        "wattproof.cli",
        "certificates",
        "match",
        "--from",
        str(T0),
        "--to",
        str(T0 + 3 * HOUR),
    ]
    done = subprocess.run([*cli, "--account", "city"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "hourly match 55.6% (annual-volume match 77.8%); 2 hours not covered" in done.stdout, done.stdout
    table = subprocess.run([*cli, "--device", "school-1", "--csv"], capture_output=True, text=True, env=env)
    assert table.stdout.splitlines()[1].split(",")[2:5] == ["1200", "2000", "1200"], table.stdout
    every = subprocess.run([*cli, "--all", "--jobs", "2"], capture_output=True, text=True, env=env)
    lines = [json.loads(line) for line in every.stdout.splitlines()]
    assert [(r["device_id"], r["matched_wh"], r["hours_not_covered"]) for r in lines] == [("school-1", 2000, 2)], (
        every.stdout + every.stderr
    )
