"""Meter drivers under MicroPython against simulated meters on a pseudo-terminal RS485 bus."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from hardware import micropython
from hardware.simulators import ModbusMeter, Rs485Bus

READ_SCRIPT = micropython.ROOT / "tests" / "firmware" / "read_meter.py"


@pytest.fixture
def bus() -> Iterator[Rs485Bus]:
    bus = Rs485Bus()
    yield bus
    bus.close()


def _wh(value_kwh: float) -> int:
    """The Wh a meter shows for a float32 kWh register: exact, half up (independent of the firmware)."""
    exact = Fraction(struct.unpack(">f", struct.pack(">f", value_kwh))[0]) * 1000
    return int(exact + Fraction(1, 2)) if exact >= 0 else -int(-exact + Fraction(1, 2))


def _read(tmp_path: Path, bus: Rs485Bus, meter_cfg: dict[str, object], count: int = 2) -> list[str]:
    sim = tmp_path / "sim"
    sim.mkdir(exist_ok=True)
    (sim / "uart").write_text(bus.board_port)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"meter": meter_cfg}))
    result = micropython.run(READ_SCRIPT, str(sim), str(cfg), str(count), paths=(micropython.compiled_firmware(),))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("model", "address", "import_wh", "export_wh", "power_w"),
    [
        ("sdm120", 1, 1_204_350.4, 880_120.6, 2310.7),
        ("sdm120", 7, 16_777.2, 0.0, -1234.4),  # exporting: negative power
        ("sdm630", 2, 98_765_432.1, 12_345_678.9, 11_000.2),  # past float32's exact-Wh range
        ("pzem004t", 0xF8, 4_321_987.0, 0.0, 880.4),
    ],
)
def test_readings_match_the_meter_exactly(
    tmp_path: Path, bus: Rs485Bus, model: str, address: int, import_wh: float, export_wh: float, power_w: float
) -> None:
    meter = ModbusMeter(
        model, bus.meter_port, address=address, profile=None, speed=0, import_wh=import_wh, export_wh=export_wh
    )
    meter.power_w = power_w
    try:
        lines = _read(tmp_path, bus, {"model": model, "address": address})
    finally:
        meter.close()
    reads = [line.split()[1:] for line in lines if line.startswith("READ ")]
    assert len(reads) == 2 and reads[0] == reads[1]
    imp, exp, power = (int(x) for x in reads[0])
    if model == "pzem004t":
        assert (imp, exp, power) == (int(import_wh), 0, round(power_w * 10 + 0.5) // 10)
    else:
        assert (imp, exp) == (_wh(import_wh / 1000), _wh(export_wh / 1000))
        assert power == _wh(power_w / 1000)  # W to W: the same exact rounding at scale 1
    assert "MODBUS_ERRORS 0" in lines or model == "sdm120"  # SDM120 has no per-phase registers


def test_sdm630_per_phase_registers(tmp_path: Path, bus: Rs485Bus) -> None:
    meter = ModbusMeter("sdm630", bus.meter_port, address=1, profile=None, speed=0, import_wh=300_000.0)
    meter.power_w = 3000.0
    try:
        lines = _read(tmp_path, bus, {"model": "sdm630", "address": 1}, count=1)
    finally:
        meter.close()
    phases = next(line for line in lines if line.startswith("PHASES ")).split()[1:]
    assert [int(x) for x in phases] == [1000, 1000, 1000, 100_000, 100_000, 100_000]


def test_crc_errors_are_retried_then_reported(tmp_path: Path, bus: Rs485Bus) -> None:
    meter = ModbusMeter("sdm120", bus.meter_port, address=1, profile=None, speed=0)
    bus.fault = "corrupt"
    try:
        lines = _read(tmp_path, bus, {"model": "sdm120", "address": 1, "retries": 2}, count=1)
    finally:
        meter.close()
    errors = [line for line in lines if line.startswith("ERROR ")]
    # The identity and the energy read: each answer arrives, each fails its CRC.
    assert "register 0xfc00: CRC error" in errors[0] and "register 0x0048: CRC error" in errors[1], lines
    assert "MODBUS_ERRORS 9" in lines  # three requests, each tried three times


def test_a_silent_meter_times_out(tmp_path: Path, bus: Rs485Bus) -> None:
    bus.fault = "silent"
    lines = _read(tmp_path, bus, {"model": "sdm120", "address": 1, "timeout_ms": 100, "retries": 1}, count=1)
    assert [line for line in lines if line.startswith("ERROR ")][0].endswith("no answer")


def test_wrong_address_gets_no_answer(tmp_path: Path, bus: Rs485Bus) -> None:
    meter = ModbusMeter("sdm120", bus.meter_port, address=5, profile=None, speed=0)
    try:
        lines = _read(tmp_path, bus, {"model": "sdm120", "address": 6, "timeout_ms": 100, "retries": 0}, count=1)
    finally:
        meter.close()
    assert any(line.startswith("ERROR ") and "no answer" in line for line in lines)
