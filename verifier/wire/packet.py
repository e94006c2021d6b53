"""Strict decoding and verification of device packets (docs/protocol.md).

`decode_packet` checks structure, types, limits and deterministic encoding and
names the offending field; `verify_packet` checks the signature, the Merkle root,
the count and the timestamps against a device's public key. Both raise
PacketError, whose `kind` is the stable slug of its problem type (verifier.wire.problems).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from verifier.wire import cose, merkle, strict_cbor
from verifier.wire.problems import PacketError
from verifier.wire.times import MAX_TIME

VERSION = 1
MAX_READINGS = 256
MAX_READING_BYTES = 240
MAX_PACKET_BYTES = 65536
GENESIS = bytes(32)
DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
UINT64_MAX = (1 << 64) - 1
TS_MAX = MAX_TIME  # Unix seconds up to 9999-12-31T23:59:59Z: every time can be shown

KIND_METER, KIND_SESSION, KIND_DEVICE = 1, 2, 3
TIME_UNKNOWN, TIME_INFORMATIVE, TIME_SYNCHRONISED = 0, 1, 2
SESSION_EVENTS = {1: "start", 2: "sample", 3: "stop"}
DEVICE_EVENTS = {
    1: "boot",
    2: "clock-set",
    3: "power-loss",
    4: "meter-fault",
    5: "tamper",
    6: "key-rotation",
    7: "journal-full",
}
EVENT_CLOCK_SET = 2
EVENT_METER_FAULT = 4


@dataclass(frozen=True)
class Header:
    version: int
    device_id: str
    seq: int
    prev: bytes
    root: bytes
    count: int
    first_ts: int
    last_ts: int


@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to build, and packets carry thousands
class Reading:
    kind: int
    number: int
    ts: int
    quality: int
    values: dict[str, Any]  # kind-specific fields by their protocol names
    raw: bytes  # the exact CBOR bytes the board hashed


@dataclass(frozen=True)
class Packet:
    header: Header
    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes
    cose_sign1: bytes  # exact bytes of the tagged COSE_Sign1
    readings: tuple[Reading, ...]

    @property
    def header_hash(self) -> bytes:
        """The chain link the next packet of the device must carry as prev."""
        return hashlib.sha256(self.cose_sign1).digest()


_Check = Callable[[Any], bool]


def _uint(limit: int = UINT64_MAX) -> _Check:
    return lambda v: type(v) is int and 0 <= v <= limit


def _int64(v: Any) -> bool:
    return type(v) is int and -(1 << 63) <= v < (1 << 63)


def _bstr(lo: int, hi: int) -> _Check:
    return lambda v: type(v) is bytes and lo <= len(v) <= hi


def _tstr(hi: int) -> _Check:
    return lambda v: type(v) is str and len(v.encode()) <= hi


def _device_id(v: Any) -> bool:
    return type(v) is str and DEVICE_ID.fullmatch(v) is not None


Field = tuple[str, _Check, str, bool]  # protocol name, type check, what is expected, required

HEADER_FIELDS: dict[int, Field] = {
    1: ("version", _uint(), "unsigned integer", True),
    2: ("device_id", _device_id, "text matching [a-z0-9][a-z0-9._-]{0,63}", True),
    3: ("seq", _uint(), "unsigned integer", True),
    4: ("prev", _bstr(32, 32), "32-byte string", True),
    5: ("root", _bstr(32, 32), "32-byte string", True),
    6: ("count", _uint(MAX_READINGS), f"unsigned integer up to {MAX_READINGS}", True),
    7: ("first_ts", _uint(TS_MAX), "Unix seconds", True),
    8: ("last_ts", _uint(TS_MAX), "Unix seconds", True),
}

COMMON_FIELDS: dict[int, Field] = {
    0: ("kind", _uint(), "unsigned integer", True),
    1: ("number", _uint(), "unsigned integer", True),
    2: ("ts", _uint(TS_MAX), "Unix seconds", True),
    3: ("quality", _uint(TIME_SYNCHRONISED), "time quality 0, 1 or 2", True),
}


def _one_of(codes: dict[int, str]) -> _Check:
    return lambda v: type(v) is int and v in codes


KIND_FIELDS: dict[int, dict[int, Field]] = {
    KIND_METER: {
        10: ("import_wh", _uint(), "unsigned integer (Wh)", True),
        11: ("export_wh", _uint(), "unsigned integer (Wh)", True),
        12: ("power_w", _int64, "integer (W)", False),
    },
    KIND_SESSION: {
        20: ("event", _one_of(SESSION_EVENTS), "session event 1, 2 or 3", True),
        21: ("session_id", _bstr(1, 32), "byte string of 1 to 32 bytes", True),
        22: ("connector", _uint(255), "connector number up to 255", True),
        23: ("register_wh", _uint(), "unsigned integer (Wh)", True),
        24: ("token_hash", _bstr(32, 32), "32-byte string", False),
        25: ("reason", _uint(255), "stop reason up to 255", False),
        26: ("ocmf_sig", _bstr(8, 72), "DER signature of 8 to 72 bytes", False),
    },
    KIND_DEVICE: {
        30: ("event", _one_of(DEVICE_EVENTS), "device event 1 to 7", True),
        31: ("detail", _tstr(64), "text of up to 64 bytes", False),
        32: ("value", _int64, "integer", False),
    },
}


def _loads(data: bytes, field: str, tags: tuple[int, ...] = ()) -> Any:
    try:
        return strict_cbor.loads(data, tags)
    except strict_cbor.CBORProfileError as e:
        raise PacketError("malformed-cbor", field, str(e)) from None


def _map_fields(value: Any, field: str, table: dict[int, Field]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PacketError("invalid-field", field, "expected a map")
    for key in value:
        if key not in table:
            raise PacketError("invalid-field", f"{field}.{key}", "unknown key")
    out = {}
    for key, (name, ok, expected, required) in table.items():
        if key not in value:
            if required:
                raise PacketError("invalid-field", f"{field}.{name}", "missing")
        elif not ok(value[key]):
            raise PacketError("invalid-field", f"{field}.{name}", f"expected {expected}")
        else:
            out[name] = value[key]
    return out


# Canonical heads (RFC 8949 4.2.1: shortest form) of an unsigned integer, and of an
# integer in the int64 range, each captured; `(?!...)` refuses the values a shorter head
# could carry.
_UINT = rb"([\x00-\x17]|\x18[\x18-\xff]|\x19[\x01-\xff].|\x1a(?!\x00\x00)....|\x1b(?!\x00{4}).{8})"
_INT64 = (
    rb"([\x00-\x17\x20-\x37]|[\x18\x38][\x18-\xff]|[\x19\x39][\x01-\xff].|[\x1a\x3a](?!\x00\x00)...."
    rb"|[\x1b\x3b](?!\x00{4})[\x00-\x7f].{7})"
)
# The exact deterministic encoding of a meter reading, {0: 1, 1: number, 2: ts, 3: quality,
# 10: import, 11: export} with 12: power when the map head says 7 pairs. Nearly every
# reading has this shape; those that match skip the general walker (same result, which
# tests/test_packet_decoder.py checks on random and mutated readings).
_METER_READING = re.compile(
    rb"(?:(\xa7)|\xa6)\x00\x01\x01" + _UINT + rb"\x02" + _UINT + rb"\x03([\x00-\x02])\x0a" + _UINT + rb"\x0b" + _UINT
    + rb"(?(1)\x0c" + _INT64 + rb")",
    re.DOTALL,
)  # fmt: skip


def _head_value(head: bytes) -> int:
    """The argument of a canonical integer head of major type 0 or 1 (its sign not applied)."""
    return head[0] & 0x1F if len(head) == 1 else int.from_bytes(head[1:], "big")


def decode_reading(raw: bytes, field: str = "reading", _match: Any = _METER_READING.fullmatch) -> Reading:
    m = _match(raw)
    if m is not None:
        # _head_value inlined (a packet has 64 readings of 5 integers each): an unsigned
        # one-byte head is its own value, a longer head's argument follows its first byte.
        power, number, ts, quality, import_wh, export_wh, power_w = m.groups()
        t = ts[0] if len(ts) == 1 else int.from_bytes(ts[1:], "big")
        if t <= TS_MAX:
            values = {
                "import_wh": import_wh[0] if len(import_wh) == 1 else int.from_bytes(import_wh[1:], "big"),
                "export_wh": export_wh[0] if len(export_wh) == 1 else int.from_bytes(export_wh[1:], "big"),
            }
            if power is not None:
                values["power_w"] = _head_value(power_w) if power_w[0] < 0x20 else -1 - _head_value(power_w)
            n = number[0] if len(number) == 1 else int.from_bytes(number[1:], "big")
            return Reading(KIND_METER, n, t, quality[0], values, raw)
    return decode_reading_strictly(raw, field)


_NAMES = {kind: {k: f[0] for k, f in {**COMMON_FIELDS, **table}.items()} for kind, table in KIND_FIELDS.items()}


def decode_stored(raw: bytes) -> Reading:
    """A reading the verifier stored, so checked by decode_reading at ingest: the meter
    shortcut or one cbor2 decode (C), its keys named, without checking again. Never for
    bytes from outside; a stored reading that is no longer a map of known keys still fails
    loudly (PacketError), as the audit's strict decoding would."""
    m = _METER_READING.fullmatch(raw)
    if m is not None:
        return decode_reading(raw)
    try:
        value = cbor2.loads(raw)
        names = _NAMES[value[0]]
        fields = {names[k]: v for k, v in value.items()}
    except (cbor2.CBORDecodeError, KeyError, TypeError, IndexError):
        return decode_reading_strictly(raw)
    return Reading(fields.pop("kind"), fields.pop("number"), fields.pop("ts"), fields.pop("quality"), fields, raw)


def decode_reading_strictly(raw: bytes, field: str = "reading") -> Reading:
    """decode_reading without the meter-reading shortcut: the foundation walker, then the schema."""
    if len(raw) > MAX_READING_BYTES:
        raise PacketError("reading-too-large", field, f"{len(raw)} bytes, at most {MAX_READING_BYTES}")
    value = _loads(raw, field)
    kind = value.get(0) if isinstance(value, dict) else None
    if type(kind) is not int or kind not in KIND_FIELDS:
        raise PacketError("invalid-field", f"{field}.kind", "expected reading kind 1, 2 or 3")
    fields = _map_fields(value, field, {**COMMON_FIELDS, **KIND_FIELDS[kind]})
    return Reading(
        kind=fields.pop("kind"),
        number=fields.pop("number"),
        ts=fields.pop("ts"),
        quality=fields.pop("quality"),
        values=fields,
        raw=raw,
    )


def _leaf(v: Any) -> bool:
    t = type(v)
    return t is bytes or t is str or (t is int and -(1 << 64) <= v < 1 << 64)


def _small_map(data: bytes, field: str) -> Any:
    """A map of small integer keys to plain values (the protected header, the header payload):
    decoded by cbor2 when the bytes are already its deterministic encoding (cbor2 re-encodes
    the map to the same bytes in the order read, and the keys, each under 24 and so one byte,
    increase); anything else goes to the strict walker, which names what is wrong."""
    try:
        value = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - the walker below says what
        value = None
    if type(value) is dict:
        keys = list(value)
        if (
            all(type(k) is int and 0 <= k < 24 for k in keys)
            and all(a < b for a, b in zip(keys, keys[1:], strict=False))
            and all(map(_leaf, value.values()))
            and cbor2.dumps(value) == data
        ):
            return value
    return _loads(data, field)


def _decode_sign1(sign1: Any) -> tuple[Header, bytes, bytes, bytes, bytes]:
    """Header, kid, protected, payload and signature of a decoded COSE_Sign1 value."""
    if not isinstance(sign1, cbor2.CBORTag) or sign1.tag != cose.TAG_SIGN1:
        raise PacketError("invalid-field", "header", "expected a tagged COSE_Sign1 (tag 18)")
    parts = sign1.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:  # cbor2 freezes tagged content
        raise PacketError("invalid-field", "header", "COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = parts
    if type(protected) is not bytes:
        raise PacketError("invalid-field", "header.protected", "expected a byte string")
    if unprotected != {}:
        raise PacketError("invalid-field", "header.unprotected", "must be an empty map")
    if type(payload) is not bytes:
        raise PacketError("invalid-field", "header.payload", "expected an attached payload")
    if type(signature) is not bytes or len(signature) != 64:
        raise PacketError("invalid-field", "header.signature", "expected 64 bytes r || s")
    kid = cose.decode_protected(_small_map(protected, "header.protected"))
    payload_map = _small_map(payload, "header.payload")
    if isinstance(payload_map, dict) and payload_map.get(1, VERSION) != VERSION:
        raise PacketError(
            "unsupported-version",
            "header.payload.version",
            f"version {payload_map.get(1)!r}; this verifier speaks {VERSION}",
        )
    header = Header(**_map_fields(payload_map, "header.payload", HEADER_FIELDS))
    return header, kid, protected, payload, signature


def decode_header(cose_sign1: bytes) -> Header:
    """The header payload of stored COSE_Sign1 bytes (no signature check)."""
    return _decode_sign1(_loads(cose_sign1, "header", tags=(cose.TAG_SIGN1,)))[0]


def verify_header(cose_sign1: bytes, public_key: bytes) -> Header:
    """A stored header's payload, once its ES256 signature and key id check out against
    public_key (SEC1 point); raises PacketError. For proofs checked long after ingest."""
    header, kid, protected, payload, signature = _decode_sign1(_loads(cose_sign1, "header", tags=(cose.TAG_SIGN1,)))
    _check_signed(public_key, kid, protected, payload, signature)
    return header


def _check_signed(public_key: bytes, kid: bytes, protected: bytes, payload: bytes, signature: bytes) -> None:
    """The header's key id is public_key's and its ES256 signature verifies; PacketError if not."""
    if kid != cose.key_id(public_key):
        raise PacketError("unknown-key", "header.protected.kid", "key id does not match the device key")
    cose.verify_es256(public_key, protected, payload, signature)


def _envelope(data: bytes) -> Any:
    """The packet's outer value when it has the usual shape and is already in deterministic
    encoding (cbor2 re-encodes it to the same bytes); None sends it to the strict walker,
    which names what is wrong. The inner parts (protected, payload, readings) are byte
    strings that are decoded strictly on their own."""
    try:
        top = cbor2.loads(data)
    except Exception:
        return None
    if (
        type(top) is not list
        or len(top) != 2
        or not isinstance(top[0], cbor2.CBORTag)
        or top[0].tag != cose.TAG_SIGN1
        or type(top[1]) is not list
        or not all(type(r) is bytes for r in top[1])
    ):
        return None
    parts = top[0].value
    if not (
        isinstance(parts, (list, tuple))
        and len(parts) == 4
        and type(parts[0]) is bytes
        and parts[1] == {}
        and type(parts[2]) is bytes
        and type(parts[3]) is bytes
    ):
        return None
    return top if cbor2.dumps(top, canonical=True) == data else None


def decode_packet(data: bytes) -> Packet:
    """Decodes packet bytes strictly. Raises PacketError naming the first bad field."""
    if len(data) > MAX_PACKET_BYTES:
        raise PacketError("packet-too-large", "packet", f"{len(data)} bytes, at most {MAX_PACKET_BYTES}")
    top = _envelope(data)
    if top is not None:
        cose_end = len(data) - len(cbor2.dumps(top[1]))
    else:
        top = _loads(data, "packet", tags=(cose.TAG_SIGN1,))
        if not isinstance(top, list) or len(top) != 2:
            raise PacketError("invalid-field", "packet", "expected an array of [header, readings]")
        cose_end = strict_cbor.value_end(data, 1, (cose.TAG_SIGN1,))
    sign1, readings = top
    header, kid, protected, payload, signature = _decode_sign1(sign1)
    if not isinstance(readings, list) or not readings:
        raise PacketError("invalid-field", "readings", "expected a non-empty array of byte strings")
    if len(readings) > MAX_READINGS:
        raise PacketError("too-many-readings", "readings", f"{len(readings)} readings, at most {MAX_READINGS}")
    decoded = []
    for i, raw in enumerate(readings):
        if type(raw) is not bytes:
            raise PacketError("invalid-field", f"readings[{i}]", "expected a byte string")
        decoded.append(decode_reading(raw, f"readings[{i}]"))
    # The header is the first element: its exact bytes follow the array head (0x82).
    cose_bytes = data[1:cose_end]
    return Packet(header, kid, protected, payload, signature, cose_bytes, tuple(decoded))


def verify_packet(packet: Packet, public_key: bytes) -> None:
    """Checks signature, key id, Merkle root, count and timestamps against public_key (SEC1 point).

    Raises PacketError. Device state (sequence, chain, registers) is the ingest's job.
    """
    h = packet.header
    _check_signed(public_key, packet.kid, packet.protected, packet.payload, packet.signature)
    if h.count != len(packet.readings):
        raise PacketError(
            "count-mismatch",
            "header.payload.count",
            f"header says {h.count}, packet carries {len(packet.readings)}",
        )
    computed = merkle.root([merkle.leaf_hash(r.raw) for r in packet.readings])
    if computed != h.root:
        raise PacketError("merkle-root-mismatch", "header.payload.root", "the readings do not hash to the signed root")
    times = [r.ts for r in packet.readings]
    numbers = [r.number for r in packet.readings]
    if (
        times[0] == h.first_ts
        and times[-1] == h.last_ts
        and all(a <= b for a, b in zip(times, times[1:], strict=False))
        and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    ):
        return  # the usual case; the checks below find what is wrong, in the documented order
    if h.first_ts > h.last_ts:
        raise PacketError("timestamp-out-of-range", "header.payload.first_ts", "after last_ts")
    previous = h.first_ts
    for i, r in enumerate(packet.readings):
        if not h.first_ts <= r.ts <= h.last_ts:
            raise PacketError(
                "timestamp-out-of-range",
                f"readings[{i}].ts",
                f"{r.ts} outside the header's {h.first_ts}..{h.last_ts}",
            )
        if r.ts < previous:
            raise PacketError("timestamp-out-of-range", f"readings[{i}].ts", "earlier than the reading before")
        previous = r.ts
    if packet.readings[0].ts != h.first_ts or packet.readings[-1].ts != h.last_ts:
        raise PacketError(
            "timestamp-out-of-range",
            "header.payload.first_ts",
            "first_ts and last_ts must be the first and last readings' times",
        )
    for i in range(1, len(packet.readings)):
        if packet.readings[i].number != packet.readings[i - 1].number + 1:
            raise PacketError(
                "reading-number-gap",
                f"readings[{i}].number",
                "reading numbers must increase by one within a packet",
            )
