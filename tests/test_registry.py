"""The registry on both engines: accounts, transfers that split bundles, claims for a
beneficiary and a period, withdrawals, expiry; every action a ledger entry that the audit
replays under the same rules; no Wh ever claimed twice, also by two processes at once."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ENGINES, Database
from tests.meters import HOUR, T0, Meter, audit_tampered
from verifier import storage
from verifier.audit import replay
from verifier.certificates import issuance, registry
from verifier.devices import records
from verifier.log import ledger, note
from verifier.wire.problems import Problem

LOG = note.Signer.generate("test.example/log")
NOW = T0 + 40 * 86400


def _issue(conn: storage.Connection, now: int = NOW, expiry_s: int = 365 * 86400) -> list[dict[str, Any]]:
    with storage.transaction(conn):
        return issuance.issue_pending(conn, now, LOG.name, expiry_s)[0]


def _act(conn: storage.Connection, kind: str, **body: Any) -> tuple[int, list[registry.Bundle]]:
    body.setdefault("time", NOW)
    with storage.transaction(conn):
        return registry.act(conn, kind, body)


def _refused(conn: storage.Connection, kind: str, **body: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        _act(conn, kind, **body)
    return caught.value


def _audit(conn: storage.Connection) -> replay.Report:
    report = replay.audit(conn, LOG.verifier())
    assert report.ok, (report.index, report.problem)
    return report


def _accounts(conn: storage.Connection, *names: str) -> None:
    with storage.transaction(conn):
        for name in names:
            kind = {"sun": "producer", "city": "consumer", "green": "supplier"}.get(name, "community")
            registry.create_account(conn, name, name.title(), kind, now=T0)


def _balances(conn: storage.Connection) -> dict[str, dict[str, int]]:
    return {a["account_id"]: {k: v for k, v in a["balance_wh"].items() if v} for a in registry.accounts(conn)}


def test_transfer_a_part_claim_it_withdraw_the_rest(conn: storage.Connection) -> None:
    _accounts(conn, "sun", "city", "green")
    pv = Meter(conn, "pv-1")
    Meter(conn, "home-1", role="consumer", capacity_w=9000)
    with storage.transaction(conn):
        registry.assign_device(conn, "sun", "pv-1", now=T0)
    pv.send(3 * 60 + 20)  # 00:10 .. 03:29: hours 01:00 and 02:00 complete, 3,000 Wh each
    issued = _issue(conn)
    assert [(b["bundle_id_range_start"], b["account_id"]) for b in issued] == [(1, "sun"), (3001, "sun")]
    assert _balances(conn)["sun"] == {"active": 6000}

    # A part of the first bundle to the supplier: the bundle splits, the rest stays with sun.
    index, moved = _act(conn, "transfer", ranges=[[1, 1000]], to_account="green", from_account="sun")
    assert [(b.start, b.end, b.holder, b.ledger_idx) for b in moved] == [(1, 1000, "green", index)]
    rest = registry.containing(conn, 1001)
    assert rest is not None and (rest.start, rest.end, rest.holder) == (1001, 3000, "sun")
    assert rest.ledger_idx == issued[0]["ledger_index"]  # the remainder keeps its history
    assert ledger.entry(conn, index).body["kind"] == "transfer"

    # Only the holder moves certificates; a range must lie within one bundle.
    assert (
        "not held by sun" in _refused(conn, "transfer", ranges=[[1, 10]], to_account="city", from_account="sun").detail
    )
    assert (
        "within one bundle"
        in _refused(conn, "transfer", ranges=[[900, 1100]], to_account="city", from_account="green").detail
    )
    assert _refused(conn, "transfer", ranges=[[1, 5]], to_account="nobody", from_account="green").kind == (
        "unknown-account"
    )

    # The supplier claims 600 Wh of 01:00 for the city's home: Claimed, never again.
    period = {"period_start": T0 + HOUR, "period_end": T0 + 2 * HOUR}
    claim_id, _ = _act(
        conn, "claim", ranges=[[1, 600]], beneficiary="city", holder="green", consumer_device="home-1", **period
    )
    stated = registry.statement(conn, claim_id)
    assert stated["quantity_wh"] == 600 and stated["beneficiary"] == "city" and stated["holder"] == "green"
    assert stated["consumer_device"] == "home-1" and stated["by_energy_source_wh"] == {"solar": 600}
    assert [(b["bundle_id_range_start"], b["bundle_id_range_end"]) for b in stated["bundles"]] == [(1, 600)]
    again = _refused(conn, "claim", ranges=[[500, 700]], beneficiary="city", holder="green", **period)
    assert again.kind == "certificates-unavailable" and again.status == 409
    assert "Claimed" in _refused(conn, "transfer", ranges=[[1, 600]], to_account="sun", from_account="green").detail
    # A claim is for the hour it was produced in, and for a consumer device only.
    outside = {"period_start": T0 + 2 * HOUR, "period_end": T0 + 3 * HOUR}
    assert (
        "outside the consumption period"
        in _refused(conn, "claim", ranges=[[601, 700]], beneficiary="city", holder="green", **outside).detail
    )
    assert (
        _refused(
            conn, "claim", ranges=[[601, 700]], beneficiary="city", holder="green", consumer_device="pv-1", **period
        ).kind
        == "unprocessable"
    )

    # The issuer withdraws hour 02:00 (its readings were later found wrong); claimed Wh stay claimed.
    _act(conn, "withdraw", ranges=[[3001, 6000]], reason="meter recalibrated")
    gone = _refused(conn, "transfer", ranges=[[3001, 3001]], to_account="city", from_account="sun")
    assert "Withdrawn" in gone.detail
    assert "only active or expired" in _refused(conn, "withdraw", ranges=[[1, 600]], reason="no").detail
    assert _balances(conn) == {
        "sun": {"active": 2000, "withdrawn": 3000},
        "green": {"active": 400, "claimed": 600},
        "city": {},  # the beneficiary holds nothing: the supplier cancelled for it
    }
    listed, _ = registry.list_bundles(conn, 0, 2**40, None, 100, status="Claimed")
    assert [(b["bundle_id_range_start"], b["account_id"], b["claim_id"]) for b in listed] == [(1, "green", claim_id)]
    claims, _ = registry.claims(conn, "city", None, 10)
    assert [c["quantity_wh"] for c in claims] == [600]
    report = _audit(conn)
    assert (report.actions, report.claimed_wh) == (3, 600)  # a transfer, a claim, a withdrawal


def test_expired_certificates_neither_move_nor_count(conn: storage.Connection) -> None:
    _accounts(conn, "sun", "green")
    pv = Meter(conn, "pv-2")
    with storage.transaction(conn):
        registry.assign_device(conn, "sun", "pv-2", now=T0)
    pv.send(2 * 60 + 10)
    (bundle,) = _issue(conn, expiry_s=86400)
    expiry = bundle["expiry_date"]
    _act(conn, "transfer", ranges=[[1, 10]], to_account="green", from_account="sun", time=expiry - 1)
    late = _refused(conn, "transfer", ranges=[[11, 20]], to_account="green", from_account="sun", time=expiry)
    assert "Expired" in late.detail
    assert [b["status"] for b in registry.list_bundles(conn, 0, 2**40, None, 10, now=expiry)[0]] == ["Expired"] * 2
    assert registry.list_bundles(conn, 0, 2**40, None, 10, status="Active", now=expiry - 1)[0][0]["account_id"]
    _act(conn, "withdraw", ranges=[[11, 20]], reason="expired stock", time=expiry + 1)  # the issuer may still
    _audit(conn)


def test_the_audit_replays_the_registry(conn: storage.Connection) -> None:
    _accounts(conn, "sun", "green", "city")
    pv = Meter(conn, "pv-3")
    with storage.transaction(conn):
        registry.assign_device(conn, "sun", "pv-3", now=T0)
    pv.send(2 * 60 + 10)
    _issue(conn)
    _act(conn, "transfer", ranges=[[1, 100]], to_account="green", from_account="sun")
    claim_id, _ = _act(conn, "claim", ranges=[[1, 50]], beneficiary="city", holder="green",
                       period_start=T0, period_end=T0 + 86400)  # fmt: skip
    _audit(conn)
    tampering = [
        ("UPDATE bundles SET account_id = 'city' WHERE bundle_id_range_start = 51", "differs from the ledger"),
        ("UPDATE bundles SET status = 'Active' WHERE bundle_id_range_start = 1", "differs from the ledger"),
        (f"UPDATE claims SET quantity = 5000 WHERE claim_id = {claim_id}", "claims table"),
        ("UPDATE accounts SET kind = 'supplier' WHERE account_id = 'city'", "accounts table"),
        ("DELETE FROM device_accounts", "device_accounts table"),
        ("DELETE FROM bundles WHERE bundle_id_range_start = 101", "missing from the bundles table"),
    ]
    for statement, found in tampering:
        report = audit_tampered(conn, statement, LOG.verifier())
        assert not report.ok and found in str(report.problem), (statement, report.problem)
    _audit(conn)
    # An entry that breaks the rules (a second claim of the same Wh, forged straight into the
    # ledger) is found by the replay itself.
    with storage.transaction(conn):
        conn.execute("SAVEPOINT forged")
        ledger.append(conn, "claim", None, {"ranges": [[1, 50]], "beneficiary": "city", "holder": "green",
                                            "period_start": T0, "period_end": T0 + 86400, "time": NOW})  # fmt: skip
        report = replay.audit(conn, LOG.verifier())
        conn.execute("ROLLBACK TO SAVEPOINT forged")
    assert not report.ok and "Claimed" in str(report.problem)


# --- random sequences of issue, split, transfer, claim and withdraw -------------------------

ACCOUNTS = ("sun", "green", "city")
action = st.one_of(
    st.tuples(st.just("hour"), st.integers(0, 1), st.integers(1, 90)),
    st.tuples(
        st.sampled_from(["transfer", "claim", "withdraw"]),
        st.integers(1, 400),  # first id
        st.integers(0, 80),  # length - 1
        st.sampled_from(ACCOUNTS),  # the actor
        st.sampled_from(ACCOUNTS),  # the target
    ),
)


class Model:
    """Every certificate id on its own: (bundle, holder, status, hour). A range is one bundle
    when all its ids share one; an action gives its range and the parts around it new bundles."""

    def __init__(self) -> None:
        self.ids: dict[int, list[Any]] = {}
        self.bundle = itertools.count()

    def issue(self, start: int, end: int, holder: str, hour: int) -> None:
        b = next(self.bundle)
        for i in range(start, end + 1):
            self.ids[i] = [b, holder, registry.ACTIVE, hour]

    def allows(self, kind: str, s: int, e: int, actor: str, target: str) -> bool:
        ids = [self.ids.get(i) for i in range(s, e + 1)]
        if any(x is None for x in ids) or len({x[0] for x in ids}) != 1:  # type: ignore[index]
            return False
        first = ids[0]
        assert first is not None
        if kind == "withdraw":
            return bool(first[2] == registry.ACTIVE)
        return first[2] == registry.ACTIVE and first[1] == actor and (kind == "claim" or target != actor)

    def apply(self, kind: str, s: int, e: int, target: str) -> None:
        old = self.ids[s][0]
        around = [i for i, x in self.ids.items() if x[0] == old]
        left, right, middle = next(self.bundle), next(self.bundle), next(self.bundle)
        for i in around:
            x = self.ids[i]
            x[0] = left if i < s else right if i > e else middle
            if s <= i <= e:
                if kind == "transfer":
                    x[1] = target
                else:
                    x[2] = registry.CLAIMED if kind == "claim" else registry.WITHDRAWN


def _fresh(engine: str, folder: Path, request: pytest.FixtureRequest) -> str:
    if engine == "sqlite":
        return str(folder / f"{next(_names)}.sqlite")
    return str(request.getfixturevalue("pg_cluster").new_database())


_names = itertools.count()


@pytest.mark.parametrize("engine", ENGINES)
def test_random_actions_never_claim_a_wh_twice(
    engine: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path_factory.mktemp("registry")

    @settings(
        max_examples=25 if engine == "sqlite" else 8,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )
    @given(st.lists(action, min_size=1, max_size=25))
    def run(actions: list[tuple[Any, ...]]) -> None:
        conn = storage.connect(_fresh(engine, folder, request))
        try:
            _accounts(conn, *ACCOUNTS)
            meters = [Meter(conn, f"pv-{n}", start=T0) for n in range(2)]
            with storage.transaction(conn):
                for m in meters:
                    registry.assign_device(conn, "sun", m.device_id, now=T0)
            for m in meters:
                m.send(60 + 10, wh_per_min=2)  # hour 00:00 complete: 120 Wh each
            model = Model()

            def issue() -> None:
                for b in _issue(conn):
                    model.issue(b["bundle_id_range_start"], b["bundle_id_range_end"], "sun",
                                b["production_starting_interval"])  # fmt: skip

            issue()
            for step in actions:
                if step[0] == "hour":
                    meters[step[1]].send(60, wh_per_min=1 + step[2] % 3)
                    issue()
                    continue
                kind, s, length, actor, target = step
                e = s + length
                body: dict[str, Any] = {"ranges": [[s, e]]}
                if kind == "transfer":
                    body.update(to_account=target, from_account=actor)
                elif kind == "claim":
                    body.update(beneficiary=target, holder=actor, period_start=T0, period_end=T0 + 86400)
                else:
                    body.update(reason="test")
                expected = model.allows(kind, s, e, actor, target)
                try:
                    _act(conn, kind, **body)
                    accepted = True
                except Problem as p:
                    assert p.kind in ("certificates-unavailable", "unprocessable"), p
                    accepted = False
                assert accepted == expected, (step, model.ids.get(s))
                if accepted:
                    model.apply(kind, s, e, target)
            # The stored bundles are the model, id by id; claims never overlap.
            stored: dict[int, tuple[str | None, str]] = {}
            for b in registry.list_bundles(conn, 0, 2**40, None, 1000, now=NOW)[0]:
                for i in range(b["bundle_id_range_start"], b["bundle_id_range_end"] + 1):
                    stored[i] = (b["account_id"], b["status"])
            assert stored == {i: (x[1], x[2]) for i, x in model.ids.items()}
            claimed = [
                i
                for row in conn.execute("SELECT entry FROM ledger WHERE kind = 'claim'")
                for s, e in json.loads(json.dumps(ledger._entry((0, "claim", None, row[0])).body["ranges"]))
                for i in range(s, e + 1)
            ]
            assert len(claimed) == len(set(claimed))
            assert sum(1 for x in model.ids.values() if x[2] == registry.CLAIMED) == len(claimed)
            report = _audit(conn)
            assert report.certified_wh == len(model.ids) and report.claimed_wh == len(claimed)
        finally:
            conn.close()

    run()


# --- two processes, one bundle ------------------------------------------------------------


def _claimer(target: str, barrier: Any, results: Any, rounds: int, who: str) -> None:
    conn = storage.connect(target, upgrade=False)
    for r in range(rounds):
        barrier.wait()
        try:
            with storage.transaction(conn):
                registry.act(conn, "claim", {"ranges": [[r * 100 + 1, r * 100 + 100]], "beneficiary": "city",
                                             "holder": "green", "period_start": T0, "period_end": T0 + 86400,
                                             "time": NOW})  # fmt: skip
            results.put((r, who, "claimed"))
        except Problem as p:
            results.put((r, who, p.kind))
    conn.close()


def test_two_processes_claim_one_bundle_exactly_one_wins(database: Database, conn: storage.Connection) -> None:
    _accounts(conn, "green", "city")
    pv = Meter(conn, "pv-4", start=T0)
    with storage.transaction(conn):
        registry.assign_device(conn, "green", "pv-4", now=T0)
    pv.send(60 + 10, wh_per_min=20)  # 1,200 Wh in hour 00:00
    _issue(conn)
    rounds = 10
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_claimer, args=(database.target, barrier, results, rounds, w)) for w in "ab"]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * rounds)]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    for r in range(rounds):
        kinds = sorted(kind for rr, _, kind in outcomes if rr == r)
        assert kinds == ["certificates-unavailable", "claimed"], (r, kinds)
    report = _audit(conn)
    assert report.claimed_wh == rounds * 100


# --- the API ------------------------------------------------------------------------------


def test_the_api_acts_for_the_key_s_account(database: Database, conn: storage.Connection) -> None:
    from tests.enroll import api_key
    from verifier import auth
    from verifier.app import create_app

    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    client = app.test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    for account_id, kind in (("sun", "producer"), ("city", "consumer")):
        made = client.post("/v1/accounts", json={"account_id": account_id, "name": account_id.title(), "kind": kind},
                           headers=admin)  # fmt: skip
        assert made.status_code == 201, made.get_json()
    assert client.post("/v1/accounts", json={"account_id": "sun", "name": "x", "kind": "producer"},
                       headers=admin).status_code == 409  # fmt: skip
    pv = Meter(conn, "pv-5", start=T0)
    Meter(conn, "flat-5", role="consumer", start=T0)
    assert client.post("/v1/accounts/sun/devices", json={"device_id": "pv-5"}, headers=admin).status_code == 201
    pv.send(2 * 60 + 10)
    assert client.post("/v1/certificates/issue", headers=admin).get_json()["issued"] == 2
    with storage.transaction(conn):
        sun_token = auth.create_key(conn, "sun's registry key", "account", account="sun")
        city_token = auth.create_key(conn, "city's registry key", "account", account="city")
    sun, city = ({"Authorization": f"Bearer {t}"} for t in (sun_token, city_token))

    assert client.get("/v1/ledger/checkpoint").status_code == 200  # the log's first checkpoint, before the action
    moved = client.post("/v1/certificates/transfer", json={"ranges": [[1, 500]], "to_account": "city"}, headers=sun)
    assert moved.status_code == 201, moved.get_json()
    assert moved.get_json()["bundles"][0]["account_id"] == "city" and moved.get_json()["quantity_wh"] == 500
    # its answer is covered by a checkpoint at once (no publisher runs here: CHECKPOINT_INTERVAL_S=0)
    index = moved.get_json()["ledger_index"]
    size = int(client.get("/v1/ledger/checkpoint").get_data(as_text=True).split("\n")[1])
    assert size > index
    proof = client.get(f"/v1/ledger/proof/inclusion?index={index}&size={size}")
    assert proof.status_code == 200, proof.get_json()
    stolen = client.post("/v1/certificates/transfer", json={"ranges": [[501, 600]], "to_account": "city",
                                                            "from_account": "sun"}, headers=city)  # fmt: skip
    assert stolen.status_code == 403 and stolen.get_json()["field"] == "from_account"
    taken = client.post("/v1/certificates/transfer", json={"ranges": [[501, 600]], "to_account": "sun"}, headers=city)
    assert taken.status_code == 409 and taken.mimetype == "application/problem+json"
    assert taken.get_json()["type"].endswith("/certificates-unavailable")

    period = {"period_start": records.iso(T0), "period_end": T0 + HOUR}  # ISO 8601 or Unix seconds
    claim = {"ranges": [[1, 500]], "consumer_device": "flat-5", **period}
    stated = client.post("/v1/certificates/claim", json=claim, headers=city)
    assert stated.status_code == 201, stated.get_json()
    body = stated.get_json()
    assert body["beneficiary"] == "city" and body["quantity_wh"] == 500 and body["consumption_period_start"] == T0
    twice = client.post("/v1/certificates/claim", json=claim, headers=city)
    assert twice.status_code == 409
    assert client.get(f"/v1/claims/{body['claim_id']}", headers=city).get_json()["quantity_wh"] == 500
    assert [c["claim_id"] for c in client.get("/v1/claims?beneficiary=city", headers=city).get_json()["claims"]] == [
        body["claim_id"]
    ]
    assert client.get("/v1/claims?beneficiary=city", headers=sun).get_json()["claims"] == []  # not sun's claim
    claimed = client.get("/v1/certificates?account_id=city&status=Claimed", headers=city).get_json()["bundles"]
    assert [(b["bundle_id_range_start"], b["bundle_id_range_end"]) for b in claimed] == [(1, 500)]
    refused = client.post("/v1/certificates/withdraw", json={"issuance_id": f"pv-5/{T0}", "reason": "x"}, headers=sun)
    assert refused.status_code == 403
    withdrawn = client.post("/v1/certificates/withdraw", json={"issuance_id": f"pv-5/{T0 + HOUR}", "reason": "recal"},
                            headers=admin)  # fmt: skip
    assert withdrawn.status_code == 201 and withdrawn.get_json()["bundles"][0]["status"] == "Withdrawn"
    accounts = {a["account_id"]: a for a in client.get("/v1/accounts", headers=admin).get_json()["accounts"]}
    assert accounts["sun"]["devices"] == ["pv-5"] and accounts["city"]["balance_wh"]["claimed"] == 500
    assert accounts["sun"]["balance_wh"] == {"active": 2500, "claimed": 0, "withdrawn": 3000, "expired": 0}
    unknown = client.post("/v1/certificates/claim", json={**claim, "colour": "green"}, headers=city)
    assert unknown.status_code == 400 and unknown.get_json()["field"] == "colour"
    _audit_with(database)


def _audit_with(database: Database) -> None:
    conn = storage.connect(database.target)
    try:
        key = note.Signer.parse(database.log_key.read_text().strip())
        report = replay.audit(conn, key.verifier())
        assert report.ok, (report.index, report.problem)
    finally:
        conn.close()


def test_the_command_line_runs_the_registry(database: Database, conn: storage.Connection) -> None:
    import os
    import subprocess
    import sys

    from verifier.app import create_app

    create_app(database.config())  # as a first `wattproof serve` would: the schema and the log key
    env = {**os.environ, **database.env()}

    def cli(*args: str, ok: bool = True) -> str:
        done = subprocess.run([sys.executable, "-m", "wattproof.cli", *args], capture_output=True, text=True, env=env)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done.stdout + done.stderr

    cli("accounts", "create", "sun", "--name", "Rooftop owner", "--kind", "producer")
    cli("accounts", "create", "school", "--name", "Primary school", "--kind", "consumer")
    pv = Meter(conn, "pv-6", start=T0)
    Meter(conn, "school-meter", role="consumer", start=T0)
    assert "now belongs to sun" in cli("accounts", "assign", "sun", "pv-6")
    pv.send(2 * 60 + 10)
    assert "2 bundles, 6000 Wh issued" in cli("certificates", "issue")
    assert "1000 Wh transferred" in cli("certificates", "transfer", "--range", "1-1000", "--from", "sun", "--to",
                                        "school")  # fmt: skip
    stated = json.loads(
        cli("certificates", "claim", "--range", "1..400", "--holder", "school", "--beneficiary", "school",
            "--consumer-device", "school-meter", "--period-start", records.iso(T0), "--period-end", str(T0 + HOUR))
    )  # fmt: skip
    assert stated["quantity_wh"] == 400 and stated["consumer_device"] == "school-meter"
    again = cli("certificates", "claim", "--range", "1-400", "--holder", "school", "--beneficiary", "school",
                "--period-start", str(T0), "--period-end", str(T0 + HOUR), ok=False)  # fmt: skip
    assert "certificates-unavailable" in again and "Claimed" in again
    assert json.loads(cli("certificates", "statement", str(stated["claim_id"])))["quantity_wh"] == 400
    assert "3000 Wh withdrawn" in cli("certificates", "withdraw", "--issuance", f"pv-6/{T0 + HOUR}", "--reason", "x")
    listed = [json.loads(line) for line in cli("certificates", "list", "--account", "school").splitlines()]
    assert [(b["bundle_quantity"], b["status"]) for b in listed] == [(400, "Claimed"), (600, "Active")]
    table = cli("accounts", "list")
    assert "school" in table and "pv-6" in table
    assert "audit OK" in cli("ledger", "audit")


def test_a_retried_action_with_an_idempotency_key_gets_its_answer_again(database: Database, conn: Any) -> None:
    """A retried registry action can tell "already done" from "refused": the same request under
    the same Idempotency-Key gets the first answer, not a 409 for what it did itself."""
    from tests.enroll import api_key
    from verifier import auth
    from verifier.app import create_app

    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    client = app.test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    for account_id, kind in (("sun", "producer"), ("city", "consumer")):
        client.post("/v1/accounts", json={"account_id": account_id, "name": account_id, "kind": kind}, headers=admin)
    pv = Meter(conn, "pv-7", start=T0)
    client.post("/v1/accounts/sun/devices", json={"device_id": "pv-7"}, headers=admin)
    pv.send(2 * 60 + 10)
    assert client.post("/v1/certificates/issue", headers=admin).get_json()["issued"] == 2
    with storage.transaction(conn):
        sun = {"Authorization": f"Bearer {auth.create_key(conn, 'sun key', 'account', account='sun')}"}
    body = {"ranges": [[1, 100]], "to_account": "city"}
    first = client.post("/v1/certificates/transfer", json=body, headers={**sun, "Idempotency-Key": "t-1"})
    assert first.status_code == 201
    size = ledger.size(conn)
    again = client.post("/v1/certificates/transfer", json=body, headers={**sun, "Idempotency-Key": "t-1"})
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotency-Replayed"] == "true" and ledger.size(conn) == size  # nothing done twice
    plain = client.post("/v1/certificates/transfer", json=body, headers=sun)  # without a key: refused, held elsewhere
    assert plain.status_code == 409
    other = client.post("/v1/certificates/transfer", json={"ranges": [[101, 200]], "to_account": "city"},
                        headers={**sun, "Idempotency-Key": "t-1"})  # fmt: skip
    assert other.status_code == 422 and other.get_json()["field"] == "Idempotency-Key"
    claim = {"ranges": [[101, 150]], "beneficiary": "sun", "period_start": T0, "period_end": T0 + 2 * HOUR}
    made = client.post("/v1/certificates/claim", json=claim, headers={**sun, "Idempotency-Key": "c-1"})
    again = client.post("/v1/certificates/claim", json=claim, headers={**sun, "Idempotency-Key": "c-1"})
    assert made.status_code == again.status_code == 201 and made.get_json() == again.get_json()
    _audit_with(database)
