"""Energy communities on both engines: members, settings with history (30-minute steps until
2024, 15 since 2025), the dynamic D315-6 key, static and per-step coefficients, integer Wh by
largest remainder with the invariants at every step, a monthly settlement at cost, the
per-step CSV; all re-derived by the audit."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Database
from tests.meters import Meter, audit_tampered
from verifier import storage
from verifier.audit import replay
from verifier.communities import operation
from verifier.devices import records
from verifier.log import note
from verifier.wire.problems import Problem

LOG = note.Signer.generate("test.example/log")
NEW_YEAR = operation.FRANCE_15_MIN_FROM  # 2025-01-01T00:00Z
START = NEW_YEAR - 3 * 3600  # 2024-12-31T21:00Z


# --- the arithmetic ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    production=st.integers(0, 50_000),
    consumption=st.lists(st.integers(0, 20_000), min_size=1, max_size=12),
    weights=st.lists(st.integers(0, 1000), min_size=12, max_size=12),
    static=st.booleans(),
)
def test_every_step_s_allocation_keeps_the_invariants(
    production: int, consumption: list[int], weights: list[int], static: bool
) -> None:
    scaled = None
    if static:
        w = weights[: len(consumption)]
        total = max(sum(w), 1000)  # coefficients adding up to at most 1
        scaled = [k * operation.SCALE // total for k in w]
    alloc = operation.allocate(production, consumption, scaled)
    assert sum(alloc) <= min(production, sum(consumption))
    assert all(0 <= a <= c for a, c in zip(alloc, consumption, strict=True))
    if scaled is None:
        assert sum(alloc) == min(production, sum(consumption))  # the dynamic key shares all it can
        exact = [Fraction(c * min(production, sum(consumption)), sum(consumption) or 1) for c in consumption]
    else:
        pairs = zip(consumption, scaled, strict=True)
        exact = [min(Fraction(c), Fraction(k * production, operation.SCALE)) for c, k in pairs]
        assert sum(alloc) == int(sum(exact))
    assert all(int(e) <= a <= -(-e // 1) for a, e in zip(alloc, exact, strict=True))  # floor or ceiling
    supplied = operation.supply(sum(alloc), [production // 3, production - production // 3])
    assert sum(supplied) == sum(alloc) and supplied[0] <= production // 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.lists(st.integers(0, 400), min_size=3, max_size=3)),
                min_size=1, max_size=20))  # fmt: skip
def test_monthly_pairs_round_to_exact_totals(step_list: list[tuple[int, list[int]]]) -> None:
    exact: dict[tuple[str, str], Fraction] = {}
    rows: dict[str, int] = {}
    cols: dict[str, int] = {}
    for n, (alloc, parts) in enumerate(step_list):
        supplied = operation.supply(alloc, parts)
        consumer = f"c{n % 4}"
        rows[consumer] = rows.get(consumer, 0) + alloc
        for j, part in enumerate(supplied):
            cols[f"p{j}"] = cols.get(f"p{j}", 0) + part
            if part:
                key = (consumer, f"p{j}")
                exact[key] = exact.get(key, Fraction(0)) + Fraction(alloc * part, alloc)
    rows = {r: v for r, v in rows.items() if any(a == r for a, _ in exact)}
    cols = {c: v for c, v in cols.items() if any(b == c for _, b in exact)}
    rounded = operation._round_margins(exact, rows, cols)
    for r, total in rows.items():
        assert sum(v for (a, _), v in rounded.items() if a == r) == total
    for c, total in cols.items():
        assert sum(v for (_, b), v in rounded.items() if b == c) == total
    assert all(int(exact[p]) <= v <= -(-exact[p] // 1) for p, v in rounded.items())


# --- a community of the five kinds of member ------------------------------------------------


def _town(conn: storage.Connection, key: str = "dynamic", coefficients: dict[str, str] | None = None) -> None:
    """Two rooftops and three homes from 2024-12-31T21:00Z to 2025-01-01T03:10Z: 30-minute steps
    until the new year, 15-minute steps after it; a price of 0.12 EUR/kWh, 0.10 in 2025."""
    roof_a = Meter(conn, "roof-a", start=START, capacity_w=20_000)
    roof_b = Meter(conn, "roof-b", start=START, capacity_w=20_000)
    homes = [Meter(conn, f"home-{n}", role="consumer", start=START, capacity_w=20_000) for n in range(3)]
    minutes = 6 * 60 + 10
    roof_a.send(minutes, wh_per_min=lambda ts: 40 if (ts // 3600) % 2 else 5)
    roof_b.send(minutes, wh_per_min=lambda ts: 7)
    for n, home in enumerate(homes):

        def use(ts: int, n: int = n) -> int:
            return 3 + 7 * n + (ts // 900) % 3

        home.send(minutes, wh_per_min=use)
    with storage.transaction(conn):
        operation.create(conn, "quartier", "Quartier solaire", "FR-ENEDIS-LYON", "EUR", START, "0.12", key=key,
                           coefficients=coefficients, now=START)  # fmt: skip
        operation.change_settings(conn, "quartier", NEW_YEAR, "0.10", key=key, coefficients=coefficients)
        for device in ("roof-a", "roof-b", "home-0", "home-1", "home-2"):
            operation.add_member(conn, "quartier", device, START)


def _audit(conn: storage.Connection) -> replay.Report:
    report = replay.audit(conn, LOG.verifier())
    assert report.ok, (report.index, report.problem)
    return report


def test_the_dynamic_key_step_by_step_with_the_step_s_history(conn: storage.Connection) -> None:
    _town(conn)
    rows = operation.steps(conn, "quartier", START, NEW_YEAR + 3 * 3600)
    before = [s for s in rows if s.start < NEW_YEAR]
    after = [s for s in rows if s.start >= NEW_YEAR]
    assert len(before) == 6 and {s.step_s for s in before} == {1800}  # 30 minutes in 2024
    assert len(after) == 12 and {s.step_s for s in after} == {900}  # 15 minutes since 2025
    for s in rows:
        p, c = sum(s.production.values()), sum(s.consumption.values())
        a = sum(s.allocated.values())
        assert a == min(p, c) and all(s.allocated[d] <= s.consumption[d] for d in s.consumption)
        assert sum(s.supplied.values()) == a and sum(s.surplus.values()) == p - a
        # The members' energy is the records' energy of that step, exactly.
        (home,) = records.intervals(conn, "home-1", s.start, s.start + s.step_s, s.step_s)
        assert s.consumption["home-1"] == home.import_wh and s.quality == "measured"
    short = [s for s in rows if sum(s.production.values()) < sum(s.consumption.values())]
    assert short, "some steps have less production than consumption"
    for s in short:  # shared in proportion to consumption, never more than the share rounded up
        total = sum(s.consumption.values())
        p = sum(s.production.values())
        for d, c in s.consumption.items():
            assert c * p // total <= s.allocated[d] <= -(-c * p // total)
    _audit(conn)


def test_static_and_per_step_coefficients(conn: storage.Connection) -> None:
    _town(conn, key="static", coefficients={"home-0": "0.5", "home-1": "0.3", "home-2": "0.2"})
    for s in operation.steps(conn, "quartier", START, NEW_YEAR + 3 * 3600):
        p = sum(s.production.values())
        for d, k in (("home-0", 500_000), ("home-1", 300_000), ("home-2", 200_000)):
            exact = min(Fraction(s.consumption[d]), Fraction(k * p, operation.SCALE))
            assert int(exact) <= s.allocated[d] <= -(-exact // 1)
    with storage.transaction(conn):
        operation.change_settings(conn, "quartier", NEW_YEAR + 3600, "0.10", key="per-step")
        text = "Horodate;home-0;home-1;home-2\r\n" + "".join(
            f"{records.iso(NEW_YEAR + 3600 + 900 * n)};1;0;0\r\n" for n in range(2)
        )
        index, count = operation.upload_coefficients(conn, "quartier", text)
    assert count == 2
    rows = operation.steps(conn, "quartier", NEW_YEAR + 3600, NEW_YEAR + 7200)
    assert [s.key for s in rows] == ["per-step", "per-step", "dynamic", "dynamic"]  # no coefficients: the default
    for s in rows[:2]:
        assert s.allocated["home-1"] == s.allocated["home-2"] == 0
        assert s.allocated["home-0"] == min(s.consumption["home-0"], sum(s.production.values()))
    with pytest.raises(Problem) as bad:
        operation.parse_coefficients("Horodate;home-0;home-1\n2025-01-01T01:00:00Z;0.7;0.4\n")
    assert "more than 1" in bad.value.detail and bad.value.field == "line 2"
    with pytest.raises(Problem):
        operation.parse_coefficients("Time,home-0\n")
    _audit(conn)


def test_the_monthly_settlement_adds_up(conn: storage.Connection) -> None:
    _town(conn)
    for month, price in (("2024-12", Decimal("0.12")), ("2025-01", Decimal("0.10"))):
        statement = operation.settlement(conn, "quartier", month)
        start, end = operation.month_span(month)
        rows = operation.steps(conn, "quartier", start, end)
        for d, m in statement["consumers"].items():
            assert m["allocated_wh"] == sum(s.allocated.get(d, 0) for s in rows)
            assert m["allocated_wh"] + m["grid_wh"] == m["consumption_wh"]
            assert sum(f["energy_wh"] for f in statement["flows"] if f["consumer"] == d) == m["allocated_wh"]
        for d, m in statement["producers"].items():
            assert sum(f["energy_wh"] for f in statement["flows"] if f["producer"] == d) == m["supplied_wh"]
            assert m["supplied_wh"] + m["surplus_wh"] == m["production_wh"]
        for f in statement["flows"]:
            assert Decimal(f["amount"]) == (f["energy_wh"] * price / 1000).quantize(Decimal("0.01"))
        owed = sum(Decimal(m["owes"]) for m in statement["consumers"].values())
        received = sum(Decimal(m["receives"]) for m in statement["producers"].values())
        assert owed == received == Decimal(statement["total_amount"]) and owed > 0
        assert statement["allocated_wh"] == sum(f["energy_wh"] for f in statement["flows"])
    table = list(csv.reader(io.StringIO(operation.to_csv(rows, "allocated")), delimiter=";"))
    assert table[0] == ["Horodate", "home-0", "home-1", "home-2"]
    assert table[1][0] == records.iso(NEW_YEAR) and len(table) == 1 + len(rows)
    assert [int(v) for v in table[1][1:]] == [rows[0].allocated[d] for d in ("home-0", "home-1", "home-2")]


def test_members_settings_and_the_audit(conn: storage.Connection) -> None:
    _town(conn)
    with pytest.raises(Problem) as twice, storage.transaction(conn):
        operation.add_member(conn, "quartier", "home-2", NEW_YEAR)
    assert twice.value.kind == "already-exists"
    with pytest.raises(Problem) as unaligned, storage.transaction(conn):
        operation.change_settings(conn, "quartier", NEW_YEAR + 60, "0.1")
    assert unaligned.value.kind == "unprocessable"
    with pytest.raises(Problem) as heavy, storage.transaction(conn):
        operation.change_settings(conn, "quartier", NEW_YEAR + 900, "0.1", key="static",
                                    coefficients={"home-0": "0.6", "home-1": "0.6"})  # fmt: skip
    assert heavy.value.kind == "unprocessable"
    _audit(conn)
    for statement, found in (
        ("UPDATE community_settings SET price_per_kwh = '0.01'", "community_settings"),
        ("DELETE FROM community_members WHERE device_id = 'home-0'", "community_members"),
        ("UPDATE communities SET grid_area = 'elsewhere'", "communities"),
    ):
        report = audit_tampered(conn, statement, LOG.verifier())
        assert not report.ok and found in str(report.problem), (statement, report.problem)


def test_the_api_and_the_command_line(database: Database, conn: storage.Connection) -> None:
    import os
    import subprocess
    import sys

    from tests.enroll import api_key
    from verifier.app import create_app

    for n in range(2):
        Meter(conn, f"roof-{n}", start=NEW_YEAR).send(2 * 60 + 10, wh_per_min=30)
        Meter(conn, f"flat-{n}", role="consumer", start=NEW_YEAR).send(2 * 60 + 10, wh_per_min=20 + n * 20)
    client = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0)).test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    utility = {"Authorization": f"Bearer {api_key(database.target, 'utility')}"}

    def post(path: str, body: dict[str, Any]) -> Any:
        answer = client.post(path, json=body, headers=admin)
        assert answer.status_code == 201, answer.get_json()
        return answer.get_json()

    made = post("/v1/communities", {"community_id": "ile", "name": "Île", "grid_area": "FR-EDF-SEI", "currency": "EUR",
                                    "from": records.iso(NEW_YEAR), "price_per_kwh": "0.15"})  # fmt: skip
    assert made["settings"][0]["step_s"] == 900 and made["settings"][0]["key"] == "dynamic"
    for device in ("roof-0", "roof-1", "flat-0", "flat-1"):
        post("/v1/communities/ile/members", {"device_id": device, "from": NEW_YEAR})
    got = client.get(f"/v1/communities/ile/allocation?from={NEW_YEAR}&to={NEW_YEAR + 3600}", headers=utility)
    assert got.status_code == 200, got.get_json()
    first = got.get_json()["steps"][0]
    assert first["production_wh"] == 900 and first["consumption_wh"] == 900 and first["allocated_wh"] == 900
    assert first["consumers"]["flat-1"] == {"consumption_wh": 600, "allocated_wh": 600, "grid_wh": 0}
    as_csv = client.get(f"/v1/communities/ile/allocation?from={NEW_YEAR}&to={NEW_YEAR + 3600}&format=csv"
                        "&quantity=surplus", headers=utility)  # fmt: skip
    assert as_csv.mimetype == "text/csv" and as_csv.data.decode().startswith("Horodate;roof-0;roof-1")
    uploaded = client.post("/v1/communities/ile/coefficients", data="Horodate;flat-0\nnot a time;0.5\n",
                           headers={**admin, "Content-Type": "text/csv"})  # fmt: skip
    assert uploaded.status_code == 400 and uploaded.get_json()["field"] == "line 2"
    month = "Horodate;flat-0;flat-1\n" + "".join(f"{records.iso(NEW_YEAR + 900 * n)};0.5;0.25\n" for n in range(2976))
    assert len(month) > 64 * 1024  # a month of quarter hours: more than other JSON bodies may carry
    uploaded = client.post(
        "/v1/communities/ile/coefficients", data=month, headers={**admin, "Content-Type": "text/csv"}
    )
    assert uploaded.status_code == 201 and uploaded.get_json()["steps"] == 2976, uploaded.get_json()
    statement = client.get("/v1/communities/ile/settlement?month=2025-01", headers=utility).get_json()
    assert statement["currency"] == "EUR" and Decimal(statement["total_amount"]) > 0
    assert client.get("/v1/communities/nowhere/settlement?month=2025-01", headers=utility).status_code == 404
    assert client.get("/v1/communities/ile/settlement?month=2025-13", headers=utility).status_code == 400

    env = {**os.environ, **database.env()}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "wattproof.cli", "community", *args], capture_output=True,
                              text=True, env=env)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "Île" in cli("list")
    shown = cli("settlement", "ile", "--month", "2025-01")
    assert "flat-1" in shown and "roof-0" in shown and statement["total_amount"] in shown
    exported = cli("export", "ile", "--from", str(NEW_YEAR), "--to", str(NEW_YEAR + 1800))
    assert exported.splitlines()[0] == "Horodate;flat-0;flat-1" and len(exported.splitlines()) == 3
    _audit_with(database)


def _audit_with(database: Database) -> None:
    c = storage.connect(database.target)
    try:
        report = replay.audit(c, note.Signer.parse(database.log_key.read_text().strip()).verifier())
        assert report.ok, (report.index, report.problem)
    finally:
        c.close()
