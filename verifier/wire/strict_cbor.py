"""Strict decoding of the deterministic CBOR profile of docs/protocol.md.

The wire format allows RFC 8949 core deterministic encoding only, and within it
only unsigned and negative integers, byte and text strings, arrays, maps and
(where the caller allows it) a few tags. `check` walks the bytes without building
values and names the first offending offset; `loads` then lets cbor2 build them.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from typing import Any

import cbor2

MAX_DEPTH = 8


class CBORProfileError(ValueError):
    """The bytes are not well-formed deterministic CBOR of the allowed profile."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.offset = offset
        self.reason = reason


def head(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument, position after) of the definite, shortest-form head at pos."""
    if pos >= len(buf):
        raise CBORProfileError(pos, "truncated")
    ib = buf[pos]
    major, info = ib >> 5, ib & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info > 27:
        raise CBORProfileError(pos, "indefinite length or reserved head")
    size = 1 << (info - 24)
    end = pos + 1 + size
    if end > len(buf):
        raise CBORProfileError(pos, "truncated")
    n = int.from_bytes(buf[pos + 1 : end], "big")
    smallest = 24 if info == 24 else 1 << (8 << (info - 25))
    if n < smallest:
        raise CBORProfileError(pos, "non-shortest integer head")
    return major, n, end


def _walk(buf: bytes, pos: int, depth: int, tags: Collection[int]) -> int:
    if depth > MAX_DEPTH:
        raise CBORProfileError(pos, "nested too deep")
    start = pos
    major, n, pos = head(buf, pos)
    if major in (0, 1):
        return pos
    if major in (2, 3):
        if pos + n > len(buf):
            raise CBORProfileError(start, "truncated string")
        if major == 3:
            try:
                buf[pos : pos + n].decode("utf-8")
            except UnicodeDecodeError:
                raise CBORProfileError(start, "text string is not UTF-8") from None
        return pos + n
    if major == 4:
        for _ in range(n):
            pos = _walk(buf, pos, depth + 1, tags)
        return pos
    if major == 5:
        previous: bytes | None = None
        for _ in range(n):
            key_start = pos
            pos = _walk(buf, pos, depth + 1, tags)
            key = buf[key_start:pos]
            if previous is not None and key <= previous:
                raise CBORProfileError(key_start, "map keys not in deterministic order or duplicated")
            previous = key
            pos = _walk(buf, pos, depth + 1, tags)
        return pos
    if major == 6:
        if n not in tags:
            raise CBORProfileError(start, f"tag {n} not allowed here")
        return _walk(buf, pos, depth + 1, ())
    raise CBORProfileError(start, "floats and simple values are not allowed")


def check(data: bytes, tags: Collection[int] = ()) -> None:
    """Raises CBORProfileError unless data is exactly one value of the profile."""
    end = _walk(data, 0, 0, tags)
    if end != len(data):
        raise CBORProfileError(end, f"{len(data) - end} trailing bytes")


def value_end(data: bytes, start: int, tags: Collection[int] = ()) -> int:
    """Offset just past the value that starts at start (for slicing out exact sub-bytes)."""
    return _walk(data, start, 0, tags)


def loads(data: bytes, tags: Collection[int] = ()) -> Any:
    """The value in data, after `check`; tags come back as cbor2.CBORTag."""
    check(data, tags)
    # The profile has no tag with a semantic decoder, so cbor2 builds plain values.
    return cbor2.CBORDecoder(io.BytesIO(data), max_depth=MAX_DEPTH + 1).decode()


def dumps(obj: Any) -> bytes:
    """Deterministic encoding (RFC 8949 section 4.2.1) of plain values: int, bytes, str, list, dict."""
    if _text_keyed(obj):
        # cbor2 (C) sorts map keys as RFC 7049's canonical form does, shortest first: for
        # text keys that is the same order as RFC 8949's bytewise one (a text key's head
        # carries its length), so its encoding is this one (tests/test_strict_cbor.py).
        return cbor2.dumps(obj, canonical=True)
    return _dumps(obj)


def _text_keyed(obj: Any) -> bool:
    """Whether obj holds only what the profile encodes, with every map keyed by text."""
    t = type(obj)
    if t is int:
        return bool(-(1 << 64) <= obj < 1 << 64)
    if t is bytes or t is str:
        return True
    if t is list or t is tuple:
        return all(map(_text_keyed, obj))
    if t is dict:
        return all(type(k) is str and _text_keyed(v) for k, v in obj.items())
    return False


def _dumps(obj: Any) -> bytes:
    if isinstance(obj, dict):
        items = sorted((_dumps(k), _dumps(v)) for k, v in obj.items())
        return encode_head(5, len(items)) + b"".join(k + v for k, v in items)
    if isinstance(obj, (list, tuple)):
        return encode_head(4, len(obj)) + b"".join(_dumps(v) for v in obj)
    if isinstance(obj, bool) or obj is None:
        raise TypeError("booleans and null are outside the profile")
    if isinstance(obj, int):
        return encode_head(0, obj) if obj >= 0 else encode_head(1, -1 - obj)
    if isinstance(obj, bytes):
        return encode_head(2, len(obj)) + obj
    if isinstance(obj, str):
        raw = obj.encode("utf-8")
        return encode_head(3, len(raw)) + raw
    if isinstance(obj, cbor2.CBORTag):
        return encode_head(6, obj.tag) + _dumps(obj.value)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode_head(major: int, n: int) -> bytes:
    """The shortest head of major type major with argument n."""
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError("integer does not fit 64 bits")
