"""Energy per interval: whole Wh that add up exactly to the registers over any span, on
both engines; partial intervals where the readings begin or end; qualities as documented."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import forge
from tests.conftest import Database, make_database
from verifier import storage
from verifier.devices import records
from verifier.wire import strict_cbor

BASE = 1_790_000_000 - 1_790_000_000 % 86400  # a midnight
_DEVICES = itertools.count()
COLUMNS = ("device_id", "seq", "header_hash", "ledger_idx", "reading_count", "first_number", "first_ts", "last_ts",
           "received_at", "readings")  # fmt: skip
PER_PACKET = 15


def _store(conn: storage.Connection, device_id: str, readings: list[tuple[int, int, int]]) -> None:
    """A device's meter readings as ingest keeps them (in packets of 15, its chain head naming
    its longest packet), behind the ledger's back: the energy arithmetic reads nothing else."""
    raws = [forge.meter(n, ts, imp, exp) for n, (ts, imp, exp) in enumerate(readings)]
    rows = []
    for seq, first in enumerate(range(0, len(raws), PER_PACKET)):
        part = raws[first : first + PER_PACKET]
        first_ts, last_ts = readings[first][0], readings[first + len(part) - 1][0]
        rows.append((device_id, seq, bytes(32), seq, len(part), first, first_ts, last_ts, 0, records.pack(part)))
    span = max(row[7] - row[6] for row in rows)
    with storage.transaction(conn):
        conn.execute(
            "INSERT INTO devices (device_id, public_key, kid, role, attributes, status, enrolled_idx)"
            " VALUES (?, ?, ?, 'producer', '{}', 'active', 0)",
            (device_id, bytes(65), device_id.encode()),
        )
        conn.insert_rows("packets", COLUMNS, rows)
        conn.execute(
            "INSERT INTO chain_heads (device_id, seq, header_hash, reading, meter, fault, span)"
            " VALUES (?, ?, ?, ?, ?, 0, ?)",
            (device_id, rows[-1][1], bytes(32), raws[-1], raws[-1], span),
        )


def _floor_register(readings: list[tuple[int, int, int]], t: int, k: int) -> int:
    """The register k (1 import, 2 export) at t, computed here from the definition."""
    before = max((r for r in readings if r[0] <= t), key=lambda r: r[0])
    after = min((r for r in readings if r[0] >= t), key=lambda r: r[0])
    if after[0] == before[0]:
        return before[k]
    return before[k] + (after[k] - before[k]) * (t - before[0]) // (after[0] - before[0])


@pytest.fixture(params=["sqlite", "postgresql"])
def conn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[storage.Connection]:
    database: Database = make_database(request.param, tmp_path_factory.mktemp("energy"), request)
    c = storage.connect(database.target)
    try:
        yield c
    finally:
        c.close()


steps = st.lists(st.tuples(st.integers(1, 5400), st.integers(0, 4000), st.integers(0, 300)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(0, 7200), steps=steps, interval=st.sampled_from(["15m", "1h"]))
def test_intervals_add_up_to_the_registers_over_any_span(
    conn: storage.Connection, first: int, steps: list[tuple[int, int, int]], interval: str
) -> None:
    device = f"dev-{next(_DEVICES)}"  # each example its own device (hypothesis replays examples)
    ts, imp, exp = BASE + first, 10_000, 500
    readings = [(ts, imp, exp)]
    for dt, di, de in steps:
        ts, imp, exp = ts + dt, imp + di, exp + de
        readings.append((ts, imp, exp))
    _store(conn, device, readings)
    step = records.INTERVALS[interval]
    start, end = BASE - step, readings[-1][0] + 2 * step
    out = records.energy(conn, device, start, end, interval)
    present = [i for i in out if i["quality"] != "missing"]
    assert all(type(i["import_wh"]) is int and type(i["export_wh"]) is int for i in present)
    # The whole history: exactly the last reading minus the first, not a Wh more or less.
    assert sum(i["import_wh"] for i in present) == readings[-1][1] - readings[0][1]
    assert sum(i["export_wh"] for i in present) == readings[-1][2] - readings[0][2]
    # Where the readings begin and end, the interval says so and what it covers.
    if readings[0][0] % step:
        assert present[0]["quality"] == "partial" and present[0]["covered_from"] == readings[0][0]
    for i in out:
        if i["quality"] == "missing":
            assert i["import_wh"] is None and (i["end"] <= readings[0][0] or i["start"] >= readings[-1][0])
    # Any span of whole intervals inside the readings: the registers' delta at its ends.
    inside = [i for i in out if i["start"] >= readings[0][0] and i["end"] <= readings[-1][0]]
    for a in range(0, len(inside), 3):
        for b in range(a, len(inside), 4):
            span = inside[a : b + 1]
            lo, hi = span[0]["start"], span[-1]["end"]
            assert sum(i["import_wh"] for i in span) == _floor_register(readings, hi, 1) - _floor_register(
                readings, lo, 1
            )
            assert sum(i["export_wh"] for i in span) == _floor_register(readings, hi, 2) - _floor_register(
                readings, lo, 2
            )


def test_a_day_with_data_is_not_missing_and_qualities_follow_the_readings(conn: storage.Connection) -> None:
    # Readings every minute from 06:10 to 09:50, but none from 07:10 to 07:40 (inside an hour)
    # and none from 08:50 to 09:10 (across the 09:00 boundary).
    minutes = [m for m in range(370, 591) if not 430 < m < 460 and not 530 < m < 550]
    readings = [(BASE + 60 * m, 1000 + 7 * m, 0) for m in minutes]
    _store(conn, "day-1", readings)
    (day,) = records.energy(conn, "day-1", BASE, BASE + 86400, "1d")
    assert day["quality"] == "partial" and day["import_wh"] == 7 * (590 - 370)
    hours = {h["start_time"][11:16]: h for h in records.energy(conn, "day-1", BASE, BASE + 86400, "1h")}
    assert hours["05:00"]["quality"] == "missing" and hours["05:00"]["import_wh"] is None
    assert hours["06:00"]["quality"] == "partial" and hours["06:00"]["import_wh"] == 7 * 50
    assert hours["07:00"]["quality"] == "measured"  # its gap lies inside: the hour's total is exact
    assert hours["08:00"]["quality"] == "interpolated"  # 09:00 falls in a gap: split by time
    assert hours["09:00"]["quality"] == "partial" and hours["09:00"]["covered_to_time"].endswith("09:50:00Z")
    assert hours["10:00"]["quality"] == "missing"
    assert sum(h["import_wh"] or 0 for h in hours.values()) == day["import_wh"]


def test_a_producer_reads_its_generation_from_its_register(conn: storage.Connection) -> None:
    readings = [(BASE + 60 * m, 5000 + 3 * m, 20 + m) for m in range(0, 121)]
    _store(conn, "pv-1", readings)
    s0 = records.energy(
        conn,
        "pv-1",
        BASE,
        BASE + 7200,
        "1h",
        records.generation_register({"role": "producer", "generation_register": "import_wh"}),
    )
    two_way = records.energy(conn, "pv-1", BASE, BASE + 7200, "1h", records.generation_register({"role": "producer"}))
    assert [h["generation_wh"] for h in s0] == [180, 180]
    assert [h["generation_wh"] for h in two_way] == [60, 60]
    assert records.generation_register({"role": "consumer"}) is None


def test_the_meter_decides_the_generation_register() -> None:
    from verifier.devices import identity

    for one_way in ("s0", "pzem004t"):  # they count one energy, the generator's output when wired there
        assert identity.generation_register_of(one_way) == "import_wh"
    for two_way in ("sdm120", "sdm630"):
        assert identity.generation_register_of(two_way) == "export_wh"


# --- the register edges ingest keeps give the same energy as looking them up -------------


def _informative(number: int, ts: int, imp: int, exp: int) -> bytes:

    return strict_cbor.dumps({0: 1, 1: number, 2: ts, 3: 1, 10: imp, 11: exp})  # quality 1: may go back


packets_of = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.sampled_from([0, 1, 60, 299, 450, 900, 3600, 7200]), st.booleans(), st.integers(0, 90)),
            min_size=1,
            max_size=12,
        ),
        st.integers(-4000, 0),  # the packet's first reading this far from the last one (<0: time went back)
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packets=packets_of, back=st.booleans())
def test_kept_edges_give_the_energy_of_the_lookups(
    conn: storage.Connection, packets: list[tuple[list[tuple[int, bool, int]], int]], back: bool
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.enroll import enroll, es256_signer, record
    from verifier.audit import replay
    from verifier.devices import ingest
    from verifier.log import note
    from verifier.wire.packet import GENESIS, decode_packet

    device = f"edge-{next(_DEVICES)}"
    key = ec.generate_private_key(ec.SECP256R1())
    enroll(conn, record(device, forge.point(key)), es256_signer(key))
    ts, imp, exp, number, prev, datas, latest = BASE + 123, 5000, 100, 0, GENESIS, [], 0
    for seq, (steps, jump) in enumerate(packets):
        if back and seq:
            ts = max(BASE, ts + jump)  # an unsynchronised clock may be set back between packets
        readings: list[bytes] = []
        times: list[int] = []
        for dt, snap, wh in steps:
            ts += dt
            if snap:
                ts -= ts % 900  # exactly on a quarter hour, sometimes twice
            ts = max(ts, times[-1] if times else ts)
            imp, exp = imp + wh, exp + wh // 3
            readings.append(_informative(number, ts, imp, exp))
            times.append(ts)
            number += 1
        data = forge.packet(key, forge.header_map(device, seq, readings, times, prev), readings)
        prev = decode_packet(data).header_hash
        datas.append(data)
        latest = max(latest, ts)
    results = ingest.accept_batch(conn, datas, now=latest + 60)
    assert all(isinstance(r, ingest.Outcome) for r in results), results
    for interval in ("15m", "1h", "1d"):
        kept = records.energy(conn, device, BASE - 86400, latest + 86400, interval)
        looked_up = records.energy(conn, device, BASE - 86400, latest + 86400, interval, kept_edges=False)
        assert kept == looked_up, interval
    report = replay.audit(conn, note.Signer.generate("test.example/log").verifier())
    assert report.ok, report.problem


def test_the_audit_derives_the_kept_edges_again(conn: storage.Connection) -> None:
    from tests.meters import T0, Meter, audit_tampered
    from verifier.audit import replay
    from verifier.log import note

    Meter(conn, f"edges-{next(_DEVICES)}", role="consumer", start=T0).send(300)
    log = note.Signer.generate("test.example/log").verifier()
    assert replay.audit(conn, log).ok
    for statement in (
        f"UPDATE register_edges SET import_wh = import_wh + 1 WHERE t = {T0 + 3600}",
        f"DELETE FROM register_edges WHERE t = {T0 + 1800}",
        "INSERT INTO edges_unordered (device_id) SELECT device_id FROM chain_heads",
    ):
        report = audit_tampered(conn, statement, log)
        assert not report.ok and "edges" in str(report.problem), (statement, report.problem)
