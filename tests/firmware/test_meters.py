# Runs under MicroPython: Modbus CRC against published frames, and the exact float32
# to integer conversion of the Eastron driver.

import modbus
from meters import MeterError
from meters.sdm import float32_scaled


def test_crc_of_published_frames():
    # PZEM-004T v3 "read all" and a plain read of one input register at address 1.
    assert modbus.frame(bytes.fromhex("f8040000000a"))[-2:] == bytes.fromhex("6464")
    assert modbus.frame(bytes.fromhex("010400000001"))[-2:] == bytes.fromhex("31ca")
    assert modbus.crc16(b"") == 0xFFFF


def _f32(hexed):
    return bytes.fromhex(hexed)


def test_float32_exact_conversion():
    assert float32_scaled(_f32("3f800000"), 1000) == 1000  # 1.0 kWh
    assert float32_scaled(_f32("00000000"), 1000) == 0
    assert float32_scaled(_f32("bf800000"), 1) == -1  # -1.0 W
    assert float32_scaled(_f32("3f000000"), 1) == 1  # 0.5 rounds half up
    assert float32_scaled(_f32("4b7fffff"), 1000) == 16777215000  # 2^24 - 1 kWh
    # 1204.3504 kWh is 0x4496 8b35 as float32: exactly 1204.35034179688 kWh -> 1204350 Wh
    assert float32_scaled(_f32("44968b35"), 1000) == 1204350
    assert float32_scaled(_f32("00000001"), 1000) == 0  # the smallest subnormal


def test_nan_register_is_refused():
    for bad in ("7fc00000", "7f800000"):
        try:
            float32_scaled(_f32(bad), 1000)
        except MeterError:
            continue
        raise AssertionError(bad)
