"""Power cuts on the board: kill -9 of the MicroPython process at random instants.

The virtual board reads an S0 meter and posts packets to a real verifier over HTTP.
After every cut it boots again. In the end every reading it took reaches the verifier
exactly once, the chain is unbroken, and the S0 energy is exact to the pulse.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import pytest

from hardware.virtual_board import VirtualBoard
from tests.conftest import RunningVerifier, stored_readings
from verifier import storage
from verifier.devices import ingest
from verifier.wire.packet import Reading, decode_header, decode_reading

pytestmark = pytest.mark.crash  # a slow tier: `make check` leaves it out, `make test` runs it

CUTS = 200
SPEED = 600  # one simulated minute every 100 ms


def _config(url: str, **overrides: object) -> dict[str, object]:
    cfg: dict[str, object] = {
        "device_id": "s0-cut-1",
        "verifier": url,
        "meter": {"model": "s0", "pulses_per_kwh": 1000},
        "interval_s": 60,
        "packet_readings": 4,  # packets close often: cuts land in every phase
        "packet_seconds": 600,
        "backoff_s": 1,
        "backoff_max_s": 30,
    }
    cfg.update(overrides)
    return cfg


def _wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _stored(db: Path) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    conn = storage.connect(db, create=False)
    packets = ingest.headers(conn, "s0-cut-1")
    readings = stored_readings(conn)
    conn.close()
    return packets, readings


def _new_board(tmp_path: Path, verifier: RunningVerifier, **overrides: object) -> VirtualBoard:
    board = VirtualBoard(
        tmp_path / "board",
        _config(verifier.url, **overrides),
        speed=SPEED,
        virtual_epoch=int(time.time()) - 3 * 86400,
    )
    board.start()
    _wait_for(lambda: (board.flash / "device.pub").exists(), 20)
    verifier.register("s0-cut-1", board.flash)
    return board


def _finish(board: VirtualBoard, verifier: RunningVerifier) -> None:
    """Power back for good: every pending reading is packed and delivered, then a clean stop."""
    (board.flash / "config.json").write_text(json.dumps(_config(verifier.url, packet_seconds=0)))
    board.start()
    time.sleep(0.5)  # a few samples after the last pulse
    _wait_for(lambda: not list((board.flash / "out").glob("*.pkt")), 60)
    board.stop()
    assert "Traceback" not in board.console(), board.console()[-3000:]


def _check_exactly_once(board: VirtualBoard, verifier: RunningVerifier) -> list[Reading]:
    packets, raws = _stored(verifier.db)
    readings = [decode_reading(r) for r in raws]
    # Exactly once: reading numbers are 0..n-1 with no gap (the database key forbids repeats).
    assert [r.number for r in readings] == list(range(len(readings)))
    # The chain: seq 0..k, each header's prev the hash of the one before.
    assert [seq for seq, _ in packets] == list(range(len(packets)))
    for (_, before), (_, after) in zip(packets, packets[1:], strict=False):
        assert decode_header(after).prev == hashlib.sha256(before).digest()
    registers = [r.values["import_wh"] for r in readings if r.kind == 1]
    assert registers == sorted(registers), "a register went back"
    # S0 exact: the last register is every pulse sent (1 Wh per pulse at 1000 pulses/kWh).
    assert registers[-1] == board.pulses_sent()
    # Nothing is left on the board: every reading taken went out.
    assert (board.flash / "readings.log").read_bytes() == b""
    return readings


def _details(readings: list[Reading]) -> list[str]:
    return [str(r.values.get("detail", "")) for r in readings if r.kind == 3]


def test_random_power_cuts_lose_nothing_and_count_nothing_twice(tmp_path: Path, verifier: RunningVerifier) -> None:
    rng = random.Random(20261121)
    board = _new_board(tmp_path, verifier)
    for _ in range(CUTS):
        if not board.running():
            board.start()
        for _ in range(rng.randint(1, 3)):
            board.pulse(rng.randint(0, 9))
            time.sleep(rng.uniform(0.0, 0.12))
        board.cut_power()
    _finish(board, verifier)
    readings = _check_exactly_once(board, verifier)
    events = [r.values["event"] for r in readings if r.kind == 3]
    assert events.count(1) >= CUTS // 2  # boots
    assert events.count(3) >= CUTS // 4  # power losses noticed at boot


@pytest.mark.parametrize(
    ("failpoint", "repair"),
    [
        ("packet-written", "state advanced to packet"),  # packet on flash, state not saved
        ("state-saved", "readings already in a packet"),  # state saved, log not cleared
        ("log-rewritten", "readings already in a packet"),  # new log written, not yet renamed
        ("acknowledging", None),  # the verifier stored it, the board had not yet deleted it
    ],
)
def test_power_cut_at_each_journal_step(
    tmp_path: Path, verifier: RunningVerifier, failpoint: str, repair: str | None
) -> None:
    board = _new_board(tmp_path, verifier, packet_readings=3)
    board.pulse(5)
    time.sleep(0.3)
    board.arm_failpoint(failpoint)
    board.pulse(4)
    _wait_for(board.failpoint_hit, 30)
    board.cut_power()
    board.pulse(3)
    _finish(board, verifier)
    readings = _check_exactly_once(board, verifier)
    if repair is not None:
        assert any(repair in d for d in _details(readings)), _details(readings)


def test_torn_reading_record_is_dropped_at_boot(tmp_path: Path, verifier: RunningVerifier) -> None:
    board = _new_board(tmp_path, verifier, packet_readings=50)
    board.pulse(6)
    time.sleep(0.4)
    board.cut_power()
    with open(board.flash / "readings.log", "ab") as log:
        log.write(b"\x00\x1c\xa7\x00\x01\x01")  # the first bytes of a record, as a cut mid-write leaves them
    board.pulse(2)
    _finish(board, verifier)
    readings = _check_exactly_once(board, verifier)
    assert any("torn reading record" in d for d in _details(readings)), _details(readings)
