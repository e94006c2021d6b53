# Deterministic CBOR (RFC 8949 section 4.2.1) for the board.
#
# The encoder emits core deterministic encoding only: shortest integer heads,
# definite lengths, map keys sorted by their encoded bytes, no floats.
# The decoder reads what a board needs (verifier answers, its own journal) and
# refuses anything the encoder would not have produced.

from micropython import const

_UINT = const(0)
_NINT = const(1)
BYTES = const(2)
_TEXT = const(3)
ARRAY = const(4)
_MAP = const(5)
_TAG = const(6)
_SIMPLE = const(7)


class Tag:
    """A CBOR tag number around one value (COSE_Sign1 is tag 18)."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value


def head(major, n):
    """The shortest head for major type major with argument n."""
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25, n >> 8, n & 0xFF))
    if n < 0x100000000:
        return bytes((mt | 26, n >> 24, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))
    if n < 0x10000000000000000:
        return bytes((mt | 27,)) + n.to_bytes(8, "big")
    raise ValueError("cbor: integer out of range")


def _encode_into(out, obj):
    # bool before int: True is not an integer on the wire.
    if obj is True:
        out.append(b"\xf5")
    elif obj is False:
        out.append(b"\xf4")
    elif obj is None:
        out.append(b"\xf6")
    elif isinstance(obj, int):
        if obj >= 0:
            out.append(head(_UINT, obj))
        else:
            out.append(head(_NINT, -1 - obj))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.append(head(BYTES, len(obj)))
        out.append(bytes(obj))
    elif isinstance(obj, str):
        b = obj.encode()
        out.append(head(_TEXT, len(b)))
        out.append(b)
    elif isinstance(obj, (list, tuple)):
        out.append(head(ARRAY, len(obj)))
        for item in obj:
            _encode_into(out, item)
    elif isinstance(obj, dict):
        items = [(encode(k), v) for k, v in obj.items()]
        items.sort(key=lambda kv: kv[0])
        out.append(head(_MAP, len(items)))
        for i in range(len(items)):
            if i and items[i][0] == items[i - 1][0]:
                raise ValueError("cbor: duplicate map key")
            out.append(items[i][0])
            _encode_into(out, items[i][1])
    elif isinstance(obj, Tag):
        out.append(head(_TAG, obj.tag))
        _encode_into(out, obj.value)
    else:
        raise TypeError("cbor: cannot encode " + str(type(obj)))


def encode(obj):
    """Deterministic CBOR bytes of obj (int, bytes, str, list, dict, bool, None, Tag)."""
    out = []  # type: list[bytes]
    _encode_into(out, obj)
    return b"".join(out)


class DecodeError(ValueError):
    pass


def _readhead(buf, pos):
    if pos >= len(buf):
        raise DecodeError("cbor: truncated at %d" % pos)
    ib = buf[pos]
    major = ib >> 5
    info = ib & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        raise DecodeError("cbor: indefinite or reserved head at %d" % (pos - 1))
    size = 1 << (info - 24)
    if pos + size > len(buf):
        raise DecodeError("cbor: truncated at %d" % pos)
    n = int.from_bytes(buf[pos : pos + size], "big")
    # Shortest form: a value that fits a smaller head must use it.
    if (info == 24 and n < 24) or (info > 24 and n < (1 << (8 << (info - 25)))):
        raise DecodeError("cbor: non-shortest integer at %d" % (pos - 1))
    return major, n, pos + size


def _decode_at(buf, pos, depth):
    if depth > 16:
        raise DecodeError("cbor: nested too deep")
    start = pos
    major, n, pos = _readhead(buf, pos)
    if major == _UINT:
        return n, pos
    if major == _NINT:
        return -1 - n, pos
    if major == BYTES or major == _TEXT:
        end = pos + n
        if end > len(buf):
            raise DecodeError("cbor: truncated string at %d" % start)
        raw = bytes(buf[pos:end])
        return (raw if major == BYTES else raw.decode()), end
    if major == ARRAY:
        items = []
        for _ in range(n):
            item, pos = _decode_at(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == _MAP:
        result = {}
        last_key = None
        for _ in range(n):
            key_start = pos
            key, pos = _decode_at(buf, pos, depth + 1)
            key_bytes = bytes(buf[key_start:pos])
            if last_key is not None and key_bytes <= last_key:
                raise DecodeError("cbor: map keys unsorted or duplicate at %d" % key_start)
            last_key = key_bytes
            result[key], pos = _decode_at(buf, pos, depth + 1)
        return result, pos
    if major == _TAG:
        value, pos = _decode_at(buf, pos, depth + 1)
        return Tag(n, value), pos
    # Major type 7 with a short head: false, true, null only.
    if n == 20:
        return False, pos
    if n == 21:
        return True, pos
    if n == 22:
        return None, pos
    raise DecodeError("cbor: unsupported simple value or float at %d" % start)


def decode(buf):
    """The one value in buf; trailing bytes, floats and non-deterministic forms raise DecodeError."""
    value, pos = _decode_at(buf, 0, 0)
    if pos != len(buf):
        raise DecodeError("cbor: %d trailing bytes" % (len(buf) - pos))
    return value
