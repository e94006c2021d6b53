# Runs under MicroPython. RFC 8949 Appendix A examples (deterministic subset) and
# the decoder's refusals.

import binascii

import cbor

VECTORS = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
]


def test_rfc8949_examples_encode():
    for value, hexed in VECTORS:
        got = binascii.hexlify(cbor.encode(value)).decode()
        assert got == hexed, "%r: %s != %s" % (value, got, hexed)


def test_rfc8949_examples_round_trip():
    for value, hexed in VECTORS:
        assert cbor.decode(binascii.unhexlify(hexed)) == value, hexed


def test_map_keys_sorted_by_encoded_bytes():
    # RFC 8949 4.2.1: bytewise order of encoded keys, so 10 < 100 < -1 < "z" < "aa".
    encoded = cbor.encode({"aa": 0, "z": 0, -1: 0, 100: 0, 10: 0})
    assert encoded == binascii.unhexlify("a50a001864002000617a0062616100")


def test_tag_round_trip():
    encoded = cbor.encode(cbor.Tag(18, [b"", {}, b"x", b""]))
    assert encoded == binascii.unhexlify("d28440a0417840")
    value = cbor.decode(encoded)
    assert value.tag == 18 and value.value == [b"", {}, b"x", b""]


def _refused(hexed):
    try:
        cbor.decode(binascii.unhexlify(hexed))
    except cbor.DecodeError:
        return True
    return False


def test_decoder_refuses_non_deterministic_and_unsupported():
    for hexed in [
        "1817",  # 23 in a 1-byte head
        "190017",  # 23 in a 2-byte head
        "1a000000ff",  # 255 in a 4-byte head
        "1b00000000ffffffff",  # 2^32-1 in an 8-byte head
        "5f4101ff",  # indefinite-length byte string
        "9f01ff",  # indefinite-length array
        "a203040102",  # keys out of order
        "a201020103",  # duplicate key
        "f93c00",  # half float
        "fb3ff0000000000000",  # double
        "0102",  # trailing byte
        "83",  # truncated array
        "4401",  # truncated string
    ]:
        assert _refused(hexed), hexed


def test_unencodable_types():
    for bad in (1.5, object()):
        try:
            cbor.encode(bad)
        except (TypeError, ValueError):
            continue
        raise AssertionError("encoded %r" % (bad,))
