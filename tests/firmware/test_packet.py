# Runs under MicroPython with the ESP32 heap: packets build, chain and refuse misuse.

import gc
import hashlib

import cbor
import cose
import merkle
import p256
import packet
import reading

KEY = p256.SigningKey(0xC0FFEE)


def _meter(n, ts):
    return reading.meter_interval(n, ts, reading.TIME_SYNCHRONISED, 1000 + n, 5, -200)


def _fill(builder, count, first=0, ts=1795000000):
    for i in range(count):
        builder.add(_meter(first + i, ts + 60 * i), ts + 60 * i)


def test_packet_structure_and_header():
    b = packet.PacketBuilder("meter-7", KEY)
    _fill(b, 3)
    raws = [_meter(i, 1795000000 + 60 * i) for i in range(3)]
    data = bytes(b.close())
    top = cbor.decode(data)
    assert len(top) == 2 and top[1] == raws
    sign1 = top[0]
    assert sign1.tag == 18
    protected, unprotected, payload, sig = sign1.value
    assert cbor.decode(protected) == {1: -7, 4: cose.key_id(KEY.spki_der())}
    assert unprotected == {} and len(sig) == 64
    h = cbor.decode(payload)
    assert h == {
        1: 1,
        2: "meter-7",
        3: 0,
        4: packet.GENESIS,
        5: merkle.root(raws),
        6: 3,
        7: 1795000000,
        8: 1795000120,
    }


def test_chain_links_headers():
    b = packet.PacketBuilder("meter-7", KEY)
    _fill(b, 2)
    first = bytes(b.close())
    _fill(b, 2, first=2, ts=1795000200)
    second = bytes(b.close())
    header1 = cbor.encode(cbor.decode(first)[0])
    payload2 = cbor.decode(cbor.decode(second)[0].value[2])
    assert payload2[3] == 1
    assert payload2[4] == hashlib.sha256(header1).digest()
    assert b.seq == 2


def test_reading_kinds_encode_deterministically():
    salt = b"s" * 16
    th = reading.token_hash(salt, b"04A2B3C4D5E6F7")
    assert len(th) == 32 and th != reading.token_hash(b"t" * 16, b"04A2B3C4D5E6F7")
    r = reading.session_event(
        9, 1795000000, reading.TIME_INFORMATIVE, reading.SESSION_START, b"\x01" * 16, 1, 123456, token_hash=th
    )
    assert cbor.decode(r) == {
        0: 2,
        1: 9,
        2: 1795000000,
        3: 1,
        20: 1,
        21: b"\x01" * 16,
        22: 1,
        23: 123456,
        24: th,
    }
    assert b"04A2B3C4D5E6F7" not in r
    e = reading.device_event(10, 1795000001, reading.TIME_UNKNOWN, reading.EVENT_CLOCK_SET, value=-42)
    assert cbor.decode(e) == {0: 3, 1: 10, 2: 1795000001, 3: 0, 30: 2, 32: -42}


def test_64_readings_build_and_sign_in_the_esp32_heap():
    gc.collect()
    b = packet.PacketBuilder("meter-7", KEY)
    _fill(b, 64)
    top = cbor.decode(bytes(b.close()))
    assert len(top[1]) == 64 and cbor.decode(top[0].value[2])[6] == 64


def test_full_and_misuse_refused():
    b = packet.PacketBuilder("meter-7", KEY, capacity=packet.HEADROOM + 400)
    n = 0
    while not b.full():
        b.add(_meter(n, 1795000000 + n), 1795000000 + n)
        n += 1
    assert 5 <= n <= 400 // 30
    for bad in (
        lambda: b.add(_meter(n, 1795000000 + n), 1795000000 + n),
        lambda: packet.PacketBuilder("m", KEY, capacity=packet.HEADROOM + 300).close(),
    ):
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("accepted misuse")
    c = packet.PacketBuilder("m", KEY, capacity=packet.HEADROOM + 300)
    c.add(_meter(0, 100), 100)
    for bad in (lambda: c.add(_meter(1, 99), 99), lambda: c.add(b"x" * 241, 100)):
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("accepted misuse")
