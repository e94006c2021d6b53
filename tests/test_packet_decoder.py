"""The strict packet decoder and packet checks: every refusal names its field and kind."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import forge
from tests.conftest import BuiltPackets
from verifier.wire import cose, strict_cbor
from verifier.wire.packet import (
    _METER_READING,
    MAX_PACKET_BYTES,
    decode_packet,
    decode_reading,
    decode_reading_strictly,
    verify_packet,
)
from verifier.wire.problems import PacketError

KEY = forge.new_key()
POINT = forge.point(KEY)
TS = [1795000000, 1795000060, 1795000120]


def _refusal(data: bytes, point: bytes = POINT) -> PacketError:
    with pytest.raises(PacketError) as info:
        verify_packet(decode_packet(data), point)
    return info.value


def _readings(extra: dict[int, Any] | None = None) -> list[bytes]:
    return [forge.meter(i, t, 1000 + i, extra=extra) for i, t in enumerate(TS)]


def test_forged_valid_packet_passes() -> None:
    verify_packet(decode_packet(forge.simple(KEY)), POINT)


def test_every_single_byte_flip_is_refused_with_the_right_error(chain: BuiltPackets) -> None:
    data = chain.packets[1][:]
    packet = decode_packet(data)
    header_end = 1 + len(packet.cose_sign1)
    signature_start = header_end - 64
    # Where each reading's content lies in the packet bytes.
    spans, pos = [], strict_cbor.value_end(data, 1, (18,))
    pos += len(strict_cbor.dumps(len(packet.readings))) if len(packet.readings) > 23 else 1
    for r in packet.readings:
        pos += len(strict_cbor.dumps(r.raw)) - len(r.raw)
        spans.append((pos, pos + len(r.raw)))
        pos += len(r.raw)
    assert pos == len(data)
    for offset in range(len(data)):
        mutated = bytearray(data)
        mutated[offset] ^= 0x01
        error = _refusal(bytes(mutated), chain.public_key)
        if offset >= signature_start and offset < header_end:
            assert error.kind == "bad-signature", (offset, error)
        elif 1 <= offset < header_end:
            assert error.field.startswith("header") or error.kind in ("malformed-cbor", "unknown-key"), (
                offset,
                error,
            )
        else:
            inside = [i for i, (a, b) in enumerate(spans) if a <= offset < b]
            if inside:
                i = inside[0]
                assert error.kind == "merkle-root-mismatch" or error.field.startswith(f"readings[{i}]"), (
                    offset,
                    error,
                )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_raise_packet_error(data: bytes) -> None:
    with pytest.raises(PacketError):
        verify_packet(decode_packet(data), POINT)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_packets_only_ever_raise_packet_error(data: st.DataObject) -> None:
    original = forge.simple(KEY)
    packet = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, len(packet) - 1))
        if op == "replace":
            packet[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            packet.insert(at, data.draw(st.integers(0, 255)))
        elif op == "delete":
            del packet[at]
        else:
            del packet[at:]
        if not packet:
            packet.append(0)
    if bytes(packet) == original:  # a mutation that changed nothing
        return
    with pytest.raises(PacketError):
        verify_packet(decode_packet(bytes(packet)), POINT)


def _header(**override: Any) -> dict[int, Any]:
    return forge.header_map("forge-1", 0, _readings(), TS, **override)


def _cases() -> list[tuple[str, bytes, str, str]]:
    readings = _readings()
    valid = forge.simple(KEY)
    non_shortest = b"\xa6\x00\x01\x01\x00\x02\x1a" + TS[0].to_bytes(4, "big") + b"\x03\x02\x0a\x19\x00\x05\x0b\x00"
    unsorted_payload = b"\xa8" + b"".join(
        strict_cbor.dumps(k) + strict_cbor.dumps(v) for k, v in sorted(_header().items(), reverse=True)
    )
    big_reading = forge.meter(0, TS[0], 1, extra={12: 1})
    return [
        (
            "unknown header field",
            forge.packet(KEY, _header(_9=1), readings),
            "invalid-field",
            "header.payload.9",
        ),
        ("missing seq", forge.packet(KEY, _header(_3=None), readings), "invalid-field", "header.payload.seq"),
        ("seq as text", forge.packet(KEY, _header(_3="0"), readings), "invalid-field", "header.payload.seq"),
        ("negative seq", forge.packet(KEY, _header(_3=-1), readings), "invalid-field", "header.payload.seq"),
        (
            "device id with capitals",
            forge.packet(KEY, _header(_2="Meter"), readings),
            "invalid-field",
            "header.payload.device_id",
        ),
        (
            "short prev",
            forge.packet(KEY, _header(_4=b"\0" * 31), readings),
            "invalid-field",
            "header.payload.prev",
        ),
        (
            "version 2",
            forge.packet(KEY, _header(_1=2), readings),
            "unsupported-version",
            "header.payload.version",
        ),
        (
            "alg ES384",
            forge.packet(KEY, _header(), readings, protected={1: -35, 4: cose.key_id(POINT)}),
            "unsupported-algorithm",
            "header.protected.alg",
        ),
        (
            "extra protected field",
            forge.packet(KEY, _header(), readings, protected={1: -7, 3: 60, 4: cose.key_id(POINT)}),
            "invalid-field",
            "header.protected",
        ),
        (
            "unprotected header used",
            forge.packet(KEY, _header(), readings, unprotected={4: b"x"}),
            "invalid-field",
            "header.unprotected",
        ),
        (
            "short signature",
            forge.packet(KEY, _header(), readings, signature=b"\1" * 63),
            "invalid-field",
            "header.signature",
        ),
        ("trailing byte", valid + b"\x00", "malformed-cbor", "packet"),
        (
            "unsorted payload keys",
            forge.packet(KEY, unsorted_payload, readings),
            "malformed-cbor",
            "header.payload",
        ),
        (
            "non-shortest integer in a reading",
            forge.packet(KEY, forge.header_map("forge-1", 0, [non_shortest], TS[:1]), [non_shortest]),
            "malformed-cbor",
            "readings[0]",
        ),
        (
            "float in a reading",
            forge.packet(KEY, _header(), [readings[0][:-1] + b"\xf9\x3c\x00"] + readings[1:]),
            "malformed-cbor",
            "readings[0]",
        ),
        (
            "indefinite-length readings",
            valid[: valid.rindex(b"\x83")] + b"\x9f" + valid[valid.rindex(b"\x83") + 1 :] + b"\xff",
            "malformed-cbor",
            "packet",
        ),
        ("tag other than 18", b"\x82\xd1" + valid[2:], "malformed-cbor", "packet"),
        ("no readings", forge.packet(KEY, _header(), []), "invalid-field", "readings"),
        (
            "reading not a byte string",
            forge.packet(KEY, _header(), [1, 2, 3]),
            "invalid-field",
            "readings[0]",
        ),
        (
            "unknown reading kind",
            forge.packet(KEY, _header(), [strict_cbor.dumps({0: 9, 1: 0, 2: TS[0], 3: 2})]),
            "invalid-field",
            "readings[0].kind",
        ),
        (
            "reading missing import",
            forge.packet(KEY, _header(), [strict_cbor.dumps({0: 1, 1: 0, 2: TS[0], 3: 2, 11: 0})]),
            "invalid-field",
            "readings[0].import_wh",
        ),
        (
            "reading with unknown field",
            forge.packet(KEY, _header(), [forge.meter(0, TS[0], extra={13: 1})]),
            "invalid-field",
            "readings[0].13",
        ),
        (
            "time quality 3",
            forge.packet(KEY, _header(), [strict_cbor.dumps({0: 1, 1: 0, 2: TS[0], 3: 3, 10: 0, 11: 0})]),
            "invalid-field",
            "readings[0].quality",
        ),
        (
            "reading over 240 bytes",
            forge.packet(KEY, _header(), [big_reading[:-1] + b"\x78\xf0" + b"a" * 240]),
            "reading-too-large",
            "readings[0]",
        ),
        ("257 readings", forge.packet(KEY, _header(), [readings[0]] * 257), "too-many-readings", "readings"),
        ("packet over 64 KiB", b"\x82" + b"\x00" * MAX_PACKET_BYTES, "packet-too-large", "packet"),
        (
            "count says 2",
            forge.packet(KEY, _header(_6=2), readings),
            "count-mismatch",
            "header.payload.count",
        ),
        (
            "root of other readings",
            forge.packet(KEY, _header(), _readings({12: 5})),
            "merkle-root-mismatch",
            "header.payload.root",
        ),
        (
            "reading after last_ts",
            forge.packet(KEY, _header(_8=TS[1]), readings),
            "timestamp-out-of-range",
            "readings[2].ts",
        ),
        (
            "first_ts after last_ts",
            forge.packet(KEY, _header(_7=TS[2] + 1), readings),
            "timestamp-out-of-range",
            "header.payload.first_ts",
        ),
        (
            "readings out of time order",
            forge.packet(
                KEY,
                forge.header_map("forge-1", 0, [readings[0], readings[2], forge.meter(2, TS[1])], TS),
                [readings[0], readings[2], forge.meter(2, TS[1])],
            ),
            "timestamp-out-of-range",
            "readings[2].ts",
        ),
        (
            "reading numbers skip",
            forge.packet(
                KEY,
                forge.header_map("forge-1", 0, [readings[0], forge.meter(5, TS[1]), forge.meter(6, TS[2])], TS),
                [readings[0], forge.meter(5, TS[1]), forge.meter(6, TS[2])],
            ),
            "reading-number-gap",
            "readings[1].number",
        ),
        (
            "signature by another key",
            forge.packet(
                KEY,
                _header(),
                readings,
                signature=forge.sign(
                    forge.new_key(),
                    strict_cbor.dumps({1: -7, 4: cose.key_id(POINT)}),
                    strict_cbor.dumps(_header()),
                ),
            ),
            "bad-signature",
            "header.signature",
        ),
        (
            "key id of another key",
            forge.packet(KEY, _header(), readings, protected={1: -7, 4: cose.key_id(forge.point(forge.new_key()))}),
            "unknown-key",
            "header.protected.kid",
        ),
    ]


@pytest.mark.parametrize(("name", "data", "kind", "field"), _cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_refusal(name: str, data: bytes, kind: str, field: str) -> None:
    error = _refusal(data)
    assert (error.kind, error.field) == (kind, field), str(error)


def test_high_s_signature_refused() -> None:
    packet = decode_packet(forge.simple(KEY))
    s = int.from_bytes(packet.signature[32:], "big")
    high = packet.signature[:32] + (cose.P256_ORDER - s).to_bytes(32, "big")
    top = cbor2.loads(forge.simple(KEY))
    protected, _, payload, _ = top[0].value
    data = strict_cbor.dumps([cbor2.CBORTag(18, [protected, {}, payload, high]), list(top[1])])
    error = _refusal(data)
    assert (error.kind, error.field) == ("bad-signature", "header.signature")
    assert "low" in error.detail


def _slow_or_refusal(raw: bytes) -> Any:
    try:
        return decode_reading_strictly(raw, "r")
    except PacketError as e:
        return (e.kind, e.field)


def _fast_or_refusal(raw: bytes) -> Any:
    try:
        return decode_reading(raw, "r")
    except PacketError as e:
        return (e.kind, e.field)


def _head(major: int, n: int, width: int) -> bytes:
    """A head for n, in the given width (0 = in the initial byte): also the non-shortest ones."""
    if width == 0:
        return bytes([major << 5 | n]) if n < 24 else _head(major, n, 1)
    size = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | size]) + n.to_bytes(width, "big") if n < 1 << (8 * width) else _head(major, n, width * 2)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(0, (1 << 64) - 1), min_size=6, max_size=6),
    widths=st.lists(st.sampled_from([0, 0, 0, 0, 0, 1, 2, 4, 8]), min_size=7, max_size=7),
    power=st.one_of(st.none(), st.integers(-(1 << 64), (1 << 64) - 1)),
    flips=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=2),
)
def test_the_meter_reading_shortcut_decides_as_the_strict_decoder(
    values: list[int], widths: list[int], power: int | None, flips: list[tuple[int, int]]
) -> None:
    """Readings of the meter shape, in shortest and non-shortest encodings, with small values
    and out-of-range ones, some with bytes replaced: the shortcut decode_reading takes must
    give the very same reading or refusal as the strict walker and schema."""
    kind, number, ts, quality, import_wh, export_wh = values
    kind, quality = (1 if kind % 3 else kind % 5), quality % 4
    if ts % 2:
        ts %= 1 << 41  # near the timestamp limit, on both sides
    fields = [(0, kind), (1, number), (2, ts), (3, quality), (10, import_wh), (11, export_wh)]
    raw = bytearray(_head(5, len(fields) + (power is not None), 0))
    for (key, value), width in zip(fields, widths[:6], strict=True):
        raw += _head(0, key, 0) + _head(0, value, width)
    if power is not None:
        raw += b"\x0c" + (_head(0, power, widths[6]) if power >= 0 else _head(1, -1 - power, widths[6]))
    for at, byte in flips:
        if at < len(raw):
            raw[at] = byte
    assert _fast_or_refusal(bytes(raw)) == _slow_or_refusal(bytes(raw))


def test_the_meter_reading_shortcut_is_taken_for_firmware_readings(chain: BuiltPackets) -> None:
    raws = [r.raw for r in decode_packet(chain.packets[1]).readings]
    assert all(_METER_READING.fullmatch(raw) for raw in raws)
    assert [decode_reading(raw) for raw in raws] == [decode_reading_strictly(raw) for raw in raws]


@given(
    kind=st.sampled_from([1, 2, 3]),
    number=st.integers(0, 2**32),
    ts=st.integers(0, 253_402_300_799),
    quality=st.integers(0, 2),
    register=st.integers(0, 2**40),
    token=st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
    signature=st.one_of(st.none(), st.binary(min_size=70, max_size=72)),
)
def test_a_stored_reading_decodes_as_ingest_decoded_it(
    kind: int, number: int, ts: int, quality: int, register: int, token: bytes | None, signature: bytes | None
) -> None:
    from verifier.wire.packet import decode_stored

    fields: dict[int, Any] = {0: kind, 1: number, 2: ts, 3: quality}
    if kind == 1:
        fields.update({10: register, 11: register // 3})
    elif kind == 2:
        fields.update({20: 3 if signature else 1, 21: b"\x07" * 16, 22: 1, 23: register})
        if token is not None:
            fields[24] = token
        if signature is not None:
            fields.update({25: 2, 26: signature})
    else:
        fields.update({30: 3, 31: "running flag found"})
    raw = strict_cbor.dumps(fields)
    checked = _slow_or_refusal(raw)
    if isinstance(checked, PacketError):
        return  # only what ingest accepted is ever stored
    assert decode_stored(raw) == checked
