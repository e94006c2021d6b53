"""The gateway firmware end to end on virtual boards, against a real verifier over HTTP."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import cbor2
import pyocmf
import pytest
from ocpi_types import v2_2_1

from hardware.flash import files as flash
from hardware.simulators import ModbusMeter, Rs485Bus
from hardware.virtual_board import VirtualBoard
from tests.conftest import RunningVerifier, stored_readings
from tests.test_ocpi import CHARGE_POINT
from verifier import auth, storage
from verifier.charging import ocpi, tokens
from verifier.charging.sessions import derive as derive_sessions
from verifier.wire import cose, ocmf
from verifier.wire.packet import Reading, decode_reading

pytestmark = pytest.mark.board  # a slow tier: `make check` leaves it out, `make test` runs it

SECRET = bytes(range(32))  # the operator's token secret
PAST = int(time.time()) - 30 * 86400  # boards at speed run ahead; start them in the past


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _board(
    tmp_path: Path,
    verifier: RunningVerifier,
    device_id: str,
    speed: float,
    uart: str = "",
    enrollment: dict[str, Any] | None = None,
    **cfg: Any,
) -> VirtualBoard:
    config = {"device_id": device_id, "verifier": verifier.url, "backoff_s": 1, "backoff_max_s": 20, **cfg}
    board = VirtualBoard(tmp_path / device_id, config, speed=speed, virtual_epoch=PAST)
    if uart:
        board.set_uart(uart)
    board.start()
    _wait_for(lambda: (board.flash / "device.pub").exists(), 20, "the device key")
    verifier.register(device_id, board.flash, **(enrollment or {}))
    return board


def _reconfigure(board: VirtualBoard, **changes: Any) -> None:
    cfg = json.loads((board.flash / "config.json").read_text())
    cfg.update(changes)
    (board.flash / "config.json").write_text(json.dumps(cfg))


def _coalescing(board: VirtualBoard) -> Callable[[], bool]:
    """A predicate, and the pulses that make it observable: the board's backlog is full and it
    has sampled its meter three times (each sample saves the new pulse total) while its
    pending readings did not grow: it merges intervals instead of journaling them. Evidence of
    the board's own steps, whatever the host's load (a starved board samples late, not never)."""
    seen: dict[str, Any] = {"samples": 0}

    def check() -> bool:
        log, state = board.flash / flash.JOURNAL_LOG, board.flash / flash.S0_STATE
        size = log.stat().st_size if log.exists() else 0
        total = cbor2.loads(state.read_bytes())["pulses"] if state.exists() else 0
        if total == board.pulses_sent():
            board.pulse(1)  # the next sample has a pulse to save
        if len(list((board.flash / "out").glob("*.pkt"))) < 2 or seen.get("size") != size:
            seen.update(size=size, total=total, samples=0)
            return False
        if total != seen.get("total"):
            seen.update(total=total, samples=seen["samples"] + 1)
        return bool(seen["samples"] >= 3)

    return check


def _packets(verifier: RunningVerifier, device_id: str) -> int:
    conn = sqlite3.connect(verifier.db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM packets WHERE device_id = ?", (device_id,)).fetchone()[0])
    finally:
        conn.close()


def _pulses_in_ledger(board: VirtualBoard, verifier: RunningVerifier, device_id: str) -> bool:
    """The verifier's last meter reading of an S0 board counts every pulse sent to it."""
    meters = [r for r in _readings(verifier, device_id) if r.kind == 1]
    return bool(meters) and meters[-1].values["import_wh"] == board.pulses_sent()


def _drain(board: VirtualBoard, verifier: RunningVerifier, device_id: str | None = None) -> None:
    """Closes every pending reading into packets, delivers them, stops the board cleanly.

    It waits for evidence, not for a pause: the restarted board's first packet (its boot
    event closes one) is in the ledger and nothing waits on its flash; for an S0 board
    (device_id given), its last reading in the ledger counts every pulse sent. A fixed 0.3 s
    for the restart was too short on a loaded machine: the empty outbox was seen before the
    board had packed what it held, and the last pulses were missing."""
    before = None if device_id is None else _packets(verifier, device_id)
    board.stop()
    _reconfigure(board, packet_seconds=0, verifier=verifier.url)
    board.start()

    def drained() -> bool:
        if list((board.flash / "out").glob("*.pkt")):
            return False
        if device_id is None or before is None:
            return True
        return _packets(verifier, device_id) > before and _pulses_in_ledger(board, verifier, device_id)

    time.sleep(0.3)
    try:
        _wait_for(drained, 60, "the backlog to drain")
    finally:
        board.stop()
    assert "Traceback" not in board.console(), board.console()[-3000:]


def _readings(verifier: RunningVerifier, device_id: str) -> list[Reading]:
    conn = sqlite3.connect(verifier.db)
    rows = [(raw,) for raw in stored_readings(conn, device_id)]
    conn.close()
    readings = [decode_reading(bytes(raw)) for (raw,) in rows]
    assert [r.number for r in readings] == list(range(len(readings))), "a reading is missing or repeated"
    return readings


def _events(readings: list[Reading], code: int) -> list[Reading]:
    return [r for r in readings if r.kind == 3 and r.values["event"] == code]


@pytest.fixture
def bus() -> Iterator[Rs485Bus]:
    bus = Rs485Bus()
    yield bus
    bus.close()


def test_charging_session_survives_a_power_cut(tmp_path: Path, verifier: RunningVerifier) -> None:
    token = "04A2B3C4D5E6F7"
    board = _board(
        tmp_path,
        verifier,
        "charger-1",
        speed=60,
        meter={"model": "s0", "pulses_per_kwh": 1000},
        charger={"connector": 2, "sample_s": 120, "token_key": tokens.charger_key(SECRET, "charger-1").hex()},
        enrollment={"role": "charger", "charge_point": CHARGE_POINT, "location": [48_856_600, 2_352_200]},
    )
    board.pulse(100)  # energy before the session is not the session's
    board.set_pilot(9.0)  # B: a vehicle is plugged in
    time.sleep(0.3)
    board.present_token(token)
    time.sleep(0.3)
    assert not board.relay(), "no charging before the vehicle asks"
    board.set_pilot(6.0)  # C: the vehicle wants to charge
    _wait_for(board.relay, 10, "the contactor to close")
    board.pulse(1500)
    time.sleep(2.5)
    board.cut_power()  # in the middle of the session
    board.pulse(700)
    board.start()
    time.sleep(2.5)
    board.pulse(300)
    time.sleep(1.5)
    board.set_pilot(9.0)  # the vehicle is full: back to B
    _wait_for(lambda: not board.relay(), 10, "the contactor to open")
    board.pulse(50)  # after the session
    time.sleep(0.5)
    _drain(board, verifier)

    readings = _readings(verifier, "charger-1")
    sessions = [r for r in readings if r.kind == 2]
    starts = [r for r in sessions if r.values["event"] == 1]
    stops = [r for r in sessions if r.values["event"] == 3]
    samples = [r for r in sessions if r.values["event"] == 2]
    assert len(starts) == 1 and len(stops) == 1 and samples, [r.values for r in sessions]
    session_id = starts[0].values["session_id"]
    assert all(r.values["session_id"] == session_id and r.values["connector"] == 2 for r in sessions)
    assert stops[0].values["reason"] == 1  # the vehicle stopped charging
    assert stops[0].values["register_wh"] - starts[0].values["register_wh"] == 1500 + 700 + 300
    token_hash = starts[0].values["token_hash"]
    # the board's keyed hash is the one the operator computes over its token list
    assert token_hash == tokens.token_hash(tokens.charger_key(SECRET, "charger-1"), token)
    assert all(token.encode() not in r.raw and bytes.fromhex(token) not in r.raw for r in readings)
    assert _events(readings, 3), "the power cut was noticed"
    # The stop carries the charger's OCMF signature: the record rebuilt from the start and
    # stop readings verifies with the enrolled key, in pyocmf too, and passes its Eichrecht checks.
    start, stop = starts[0], stops[0]
    text = ocmf.payload(
        "charger-1",
        stop.number,
        token_hash,
        (start.ts, start.quality, start.values["register_wh"]),
        (stop.ts, stop.quality, stop.values["register_wh"]),
    )
    conn = sqlite3.connect(verifier.db)
    (point,) = conn.execute("SELECT public_key FROM devices WHERE device_id = 'charger-1'").fetchone()
    conn.close()
    assert ocmf.verify(text, stop.values["ocmf_sig"], bytes(point))
    record = pyocmf.OCMF.from_string(ocmf.record(text, stop.values["ocmf_sig"]))
    assert record.verify_signature(cose.spki_der(bytes(point)).hex())
    (session,) = derive_sessions("charger-1", readings, bytes(point))
    assert (session.state, session.energy_wh, session.ocmf_verified) == ("completed-after-power-loss", 2500, True)
    # The same over the API: the session record, and the OCMF record a driver pastes.
    db = storage.connect(verifier.db)
    key = auth.create_key(db, "sessions-reader", "utility")
    db.close()

    def get(path: str) -> bytes:
        req = urllib.request.Request(verifier.url + path, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bytes(resp.read())

    (listed,) = json.loads(get("/v1/devices/charger-1/sessions?state=completed-after-power-loss"))["sessions"]
    assert (listed["energy_wh"], listed["ocmf_verified"], listed["stop_reason"]) == (
        2500,
        True,
        "the vehicle stopped charging",
    )
    one = json.loads(get(f"/v1/devices/charger-1/sessions/{listed['session_id']}"))
    assert [x["register_wh"] for x in one["samples"]] == [r.values["register_wh"] for r in samples]
    pasted, spki = get(f"/v1/devices/charger-1/sessions/{listed['session_id']}/ocmf").decode().splitlines()
    assert pyocmf.OCMF.from_string(pasted).verify_signature(spki)
    assert json.loads(get("/v1/devices/charger-1/sessions?state=disputed"))["sessions"] == []
    # Its OCPI CDR, as a mobility service provider's system reads it.
    req = urllib.request.Request(
        verifier.url + "/ocpi/2.2.1/cdrs",
        headers={"Authorization": "Token " + base64.b64encode(key.encode()).decode()},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        (cdr,) = json.loads(resp.read())["data"]
    assert v2_2_1.Cdr.from_dict(cdr) and ocpi.field_errors(cdr) == []
    assert (cdr["total_energy"], cdr["cdr_location"]["connector_id"]) == (2.5, CHARGE_POINT["connector_id"])
    assert cdr["signed_data"]["signed_values"][0]["signed_data"] == pasted
    assert [r.RV for r in record.payload.RD] == [
        Decimal(start.values["register_wh"]) / 1000,
        Decimal(stop.values["register_wh"]) / 1000,
    ]


def test_verifier_outage_then_backlog_drains_in_order(tmp_path: Path, verifier: RunningVerifier) -> None:
    board = _board(tmp_path, verifier, "meter-outage", speed=600, meter={"model": "s0"}, packet_readings=4)
    board.pulse(10)
    _wait_for(lambda: len(_readings(verifier, "meter-outage")) >= 4, 20, "a first delivery")
    verifier.stop()
    for _ in range(20):  # many packets' worth of readings while the verifier is down
        board.pulse(3)
        time.sleep(0.1)
    _wait_for(lambda: len(list((board.flash / "out").glob("*.pkt"))) >= 10, 30, "a backlog")
    backlog = len(list((board.flash / "out").glob("*.pkt")))
    verifier.start()
    _wait_for(lambda: not list((board.flash / "out").glob("*.pkt")), 60, "the backlog to drain")
    _drain(board, verifier, "meter-outage")
    readings = _readings(verifier, "meter-outage")
    conn = sqlite3.connect(verifier.db)
    seqs = [s for (s,) in conn.execute("SELECT seq FROM packets WHERE device_id = 'meter-outage' ORDER BY seq")]
    conn.close()
    assert seqs == list(range(len(seqs))) and len(seqs) > backlog
    registers = [r.values["import_wh"] for r in readings if r.kind == 1]
    assert registers[-1] == board.pulses_sent() == 70


def test_full_journal_coalesces_intervals_and_keeps_energy_exact(tmp_path: Path, verifier: RunningVerifier) -> None:
    board = _board(
        tmp_path,
        verifier,
        "meter-full",
        speed=600,
        meter={"model": "s0"},
        packet_readings=4,
        max_packets=2,
        packet_bytes=700,  # a small pending area: coalescing starts after about 14 readings
    )
    verifier.stop()
    started = board.virtual_now()
    for _ in range(30):
        board.pulse(2)
        time.sleep(0.05)
    # An hour on the board's clock (60 intervals): far past the bound. And evidence, not a
    # pause: the backlog full, the pending readings no longer growing for five intervals of the
    # board's clock while it keeps measuring (coalescing). On a loaded host the board wakes
    # late and takes fewer readings in the hour; it then takes longer to get there.
    _wait_for(lambda: board.virtual_now() - started >= 3600, 60, "a simulated hour")
    _wait_for(_coalescing(board), 120, "the journal to coalesce intervals")
    assert len(list((board.flash / "out").glob("*.pkt"))) <= 2, "the journal stays within its bound"
    verifier.start()
    # The board reports how many intervals it merged in the first reading it journals once its
    # backlog has room (the count is kept in its memory): wait for that, then drain the rest.
    _wait_for(lambda: bool(_events(_readings(verifier, "meter-full"), 7)), 120, "the journal-full event")
    _drain(board, verifier, "meter-full")
    readings = _readings(verifier, "meter-full")
    coalesced = _events(readings, 7)  # journal full
    assert coalesced and coalesced[0].values["value"] > 0
    registers = [r.values["import_wh"] for r in readings if r.kind == 1]
    assert registers == sorted(registers)
    assert registers[-1] == board.pulses_sent() >= 60  # every pulse counted, none twice


def test_meter_swap_and_silence_are_device_events(tmp_path: Path, verifier: RunningVerifier, bus: Rs485Bus) -> None:
    meter = ModbusMeter("sdm120", bus.meter_port, address=1, speed=600, virtual_epoch=PAST, serial=1111)
    try:
        board = _board(
            tmp_path,
            verifier,
            "meter-swap",
            speed=600,
            uart=bus.board_port,
            meter={"model": "sdm120", "address": 1, "timeout_ms": 100, "retries": 1},
            packet_readings=8,
        )
        time.sleep(1.5)
        bus.fault = "silent"  # the meter stops answering
        time.sleep(1.5)
        bus.fault = "none"
        meter.replace(serial=2222, import_wh=5.0)  # a technician fits another meter
        time.sleep(1.5)
        _drain(board, verifier)
    finally:
        meter.close()
    readings = _readings(verifier, "meter-swap")
    faults = [str(r.values.get("detail", "")) for r in _events(readings, 4)]
    assert any("no answer" in f for f in faults), faults
    assert any("meter replaced: sdm120-2222" in f for f in faults), faults
    assert any("registers went back" in f for f in faults), faults
    assert sum(1 for f in faults if "no answer" in f) == 1, "one event per fault, not one per interval"


def test_24_hours_at_one_minute_in_the_esp32_heap(tmp_path: Path, verifier: RunningVerifier, bus: Rs485Bus) -> None:
    speed = 1500  # 24 h in about a minute; faster, a 20 ms HTTP post would take a simulated minute
    meter = ModbusMeter("sdm120", bus.meter_port, address=1, profile="prosumer", speed=speed, virtual_epoch=PAST)
    try:
        board = _board(
            tmp_path, verifier, "meter-24h", speed=speed, uart=bus.board_port, meter={"model": "sdm120", "address": 1}
        )
        try:
            _wait_for(
                lambda: sum(r.kind == 1 for r in _readings(verifier, "meter-24h")) >= 1440, 240, "24 simulated hours"
            )
        except AssertionError:
            board.stop()
            raise AssertionError(board.console()[-3000:]) from None
        board.stop()
    finally:
        meter.close()
    console = board.console()
    assert "MemoryError" not in console and "Traceback" not in console, console[-3000:]
    peaks = [int(m) for m in re.findall(r"HEAP peak (\d+)", console)]
    assert peaks and max(peaks) < 96 * 1024
    print(f"heap high-water mark over 24 simulated hours: {max(peaks)} bytes")
    readings = _readings(verifier, "meter-24h")
    meter_readings = [r for r in readings if r.kind == 1]
    assert len(meter_readings) >= 1440
    # In time order, a minute apart on the board's clock (the host's scheduling at 1500x can
    # stretch a gap now and then; that is the simulation, not the firmware, so only order counts).
    assert all(b.ts > a.ts for a, b in zip(meter_readings, meter_readings[1:], strict=False))
    imports = [r.values["import_wh"] for r in meter_readings]
    exports = [r.values["export_wh"] for r in meter_readings]
    assert imports == sorted(imports) and exports == sorted(exports)
    assert exports[-1] > exports[0] and imports[-1] > imports[0], "a day of solar and household load"


@pytest.mark.parametrize("offset", [-300, 300])
def test_time_quality_and_clock_steps(tmp_path: Path, verifier: RunningVerifier, offset: int) -> None:
    """A board whose clock is 5 minutes off and which has no time server, until it has one."""
    config = {
        "device_id": "meter-clock",
        "verifier": verifier.url,
        "meter": {"model": "s0"},
        "sync_s": 600,
        "packet_readings": 5,
    }
    board = VirtualBoard(tmp_path / "board", config, speed=600, virtual_epoch=PAST, ntp=False)
    (board.sim / "clock_offset").write_text(str(offset))
    board.start()
    _wait_for(lambda: (board.flash / "device.pub").exists(), 20, "the device key")
    verifier.register("meter-clock", board.flash)
    time.sleep(1.5)
    (board.sim / "ntp").write_text("pool.ntp.org")  # the time server becomes reachable
    time.sleep(2.5)
    _drain(board, verifier)
    readings = _readings(verifier, "meter-clock")
    steps = _events(readings, 2)  # one when the server appeared; one more at each later boot (RTC lost)
    assert steps and all(r.values["value"] == -offset for r in steps), [r.values for r in steps]
    before = [r for r in readings if r.number < steps[0].number]
    after = [r for r in readings if r.number > steps[0].number]
    assert before and all(r.quality == 0 for r in before), "unknown until the first sync"
    assert after and all(r.quality == 2 for r in after), "synchronised after it"
    assert after[0].ts - before[-1].ts >= -offset - 120 if offset < 0 else after[0].ts < before[-1].ts
