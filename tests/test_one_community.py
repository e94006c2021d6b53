"""One device, one community at a time: the same devices joined any number of communities over
the same period, each allocated and settled the same production again (a rooftop "supplied"
more than it made), and the audit said OK. A membership that shares time with another
community's is refused (409 community-overlap, naming it and the time); the audit refuses a
ledger where two memberships of one device overlap, naming them; the operator ends one."""

from __future__ import annotations

from typing import Any

from tests.conftest import Database
from tests.enroll import api_key
from tests.meters import Meter
from verifier import storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.communities import operation
from verifier.devices import records
from verifier.log import ledger, note
from verifier.wire.problems import TYPE_BASE, Problem

LOG = note.Signer.generate("test.example/log")
START = operation.FRANCE_15_MIN_FROM
DAY = 86400


def _town(conn: storage.Connection) -> None:
    Meter(conn, "roof", start=START).send(3 * 60 + 10, wh_per_min=40)
    Meter(conn, "home", role="consumer", start=START).send(3 * 60 + 10, wh_per_min=30)
    with storage.transaction(conn):
        for c in ("ile", "quai"):
            operation.create(conn, c, c.title(), "FR", "EUR", START, "0.1", now=START)


def _supplied(conn: storage.Connection, device: str) -> int:
    total = 0
    for c in ("ile", "quai"):
        total += sum(s.supplied.get(device, 0) for s in operation.steps(conn, c, START, START + 3 * 3600))
    return total


def test_a_membership_that_overlaps_another_communitys_is_refused(database: Database, conn: Any) -> None:
    _town(conn)
    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    client = app.test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    for device in ("roof", "home"):
        assert client.post("/v1/communities/ile/members", json={"device_id": device, "from": START},
                           headers=admin).status_code == 201  # fmt: skip
    r = client.post("/v1/communities/quai/members", json={"device_id": "roof", "from": START + DAY},
                    headers=admin)  # fmt: skip
    assert r.status_code == 409 and r.get_json()["type"] == TYPE_BASE + "community-overlap"
    assert "community ile" in r.get_json()["detail"] and records.iso(START + DAY) in r.get_json()["detail"]
    # before the other membership begins, or once it has ended, the device may join another
    early = client.post("/v1/communities/quai/members", json={"device_id": "home", "from": START - DAY,
                        "until": START}, headers=admin)  # fmt: skip
    assert early.status_code == 201, early.get_json()
    ended = client.post("/v1/communities/ile/members/roof/end", json={"from": START, "until": START + 2 * 3600},
                        headers=admin)  # fmt: skip
    assert ended.status_code == 201, ended.get_json()
    later = client.post("/v1/communities/quai/members", json={"device_id": "roof", "from": START + 2 * 3600},
                        headers=admin)  # fmt: skip
    assert later.status_code == 201, later.get_json()
    made = sum(s.production.get("roof", 0) for s in operation.steps(conn, "ile", START, START + 3 * 3600))
    made += sum(s.production.get("roof", 0) for s in operation.steps(conn, "quai", START, START + 3 * 3600))
    assert _supplied(conn, "roof") <= made
    report = replay.audit(conn, app.extensions["wattproof.log_signer"].verifier())  # it signed the checkpoints
    assert report.ok, report.problem


def test_a_ledger_with_overlapping_memberships_fails_the_audit_until_one_ends(database: Database, conn: Any) -> None:
    _town(conn)
    with storage.transaction(conn):
        operation.add_member(conn, "ile", "roof", START)
        operation.add_member(conn, "ile", "home", START)
        # what the code before the rule wrote: the same devices in a second community at once
        for device, role in (("roof", "producer"), ("home", "consumer")):
            fields = {"community_id": "quai", "device_id": device, "from": START, "role": role}
            index = ledger.append(conn, "community-member", device, fields)
            operation.apply_entry(conn, "community-member", fields, index)
    assert _supplied(conn, "roof") > 0
    report = replay.audit(conn, LOG.verifier())
    assert not report.ok and "member of ile and of quai" in str(report.problem), report.problem
    with storage.transaction(conn):  # the operator ends the memberships that never should have been
        for device in ("roof", "home"):
            operation.end_member(conn, "quai", device, START, START)
    report = replay.audit(conn, LOG.verifier())
    assert report.ok, report.problem
    assert sum(s.allocated.get("home", 0) for s in operation.steps(conn, "quai", START, START + 3 * 3600)) == 0


def test_an_end_only_shortens(conn: Any) -> None:
    _town(conn)
    with storage.transaction(conn):
        operation.add_member(conn, "ile", "roof", START, START + DAY)
    for until, why in ((START + 2 * DAY, "already"), (START - 1, "at or after")):
        try:
            with storage.transaction(conn):
                operation.end_member(conn, "ile", "roof", START, until)
        except Problem as e:
            assert why in e.detail
        else:
            raise AssertionError(f"ended at {until}")


def test_the_audit_accepts_every_membership_the_live_path_accepts(conn: Any) -> None:
    """The audit and the live path decide "a member twice" with one rule: a membership ended at
    its beginning never took effect, so the device may join the same community again over a
    span that contains that instant (found by the model test: the audit refused it)."""
    _town(conn)
    with storage.transaction(conn):
        operation.add_member(conn, "ile", "roof", START + DAY)
        operation.end_member(conn, "ile", "roof", START + DAY, START + DAY)  # never took effect
        operation.add_member(conn, "ile", "roof", START)  # open, over that instant
    report = replay.audit(conn, LOG.verifier())
    assert report.ok, report.problem
    try:  # and both refuse a real second membership of the same time
        with storage.transaction(conn):
            operation.add_member(conn, "ile", "roof", START + 2 * DAY)
    except Problem as e:
        assert e.kind == "already-exists", e
    else:
        raise AssertionError("joined twice over one time")
