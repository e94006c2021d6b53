# Runs under MicroPython: the firmware signer against RFC 6979 A.2.5 (P-256, SHA-256).

import binascii

import p256

X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
UX = "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
UY = "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
VECTORS = [
    # message, r, s as printed in the RFC
    (
        b"sample",
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8,
    ),
    (
        b"test",
        0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
        0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083,
    ),
]


def test_public_key_of_rfc6979_key():
    pub = p256.SigningKey(X).public_key()
    assert pub[0] == 4 and len(pub) == 65
    assert binascii.hexlify(pub[1:33]).decode() == UX
    assert binascii.hexlify(pub[33:]).decode() == UY


def test_rfc6979_vectors_with_low_s():
    key = p256.SigningKey(X)
    for message, r, s in VECTORS:
        sig = key.sign(message)
        low = s if s <= p256.N // 2 else p256.N - s
        assert int.from_bytes(sig[:32], "big") == r, message
        assert int.from_bytes(sig[32:], "big") == low, message
    # 'sample' is the vector whose RFC s is high: the signer must have flipped it.
    assert VECTORS[0][2] > p256.N // 2


def test_signatures_are_deterministic_and_low_s():
    key = p256.SigningKey(0x1234567890ABCDEF)
    for i in range(8):
        msg = b"reading %d" % i
        sig = key.sign(msg)
        assert sig == key.sign(msg)
        assert int.from_bytes(sig[32:], "big") <= p256.N // 2


def test_generated_keys_are_in_range_and_distinct():
    a, b = p256.SigningKey.generate(), p256.SigningKey.generate()
    assert a.to_bytes() != b.to_bytes()
    for k in (a, b):
        assert 0 < int.from_bytes(k.to_bytes(), "big") < p256.N
        assert p256.SigningKey.from_bytes(k.to_bytes()).public_key() == k.public_key()


def test_point_on_curve():
    for d in (1, 2, 15, 16, 17, p256.N - 1, X):
        x, y = p256.mul_g(d)
        assert (y * y - (x * x * x - 3 * x + p256.B)) % p256.P == 0, d
    assert p256.mul_g(1) == (p256.GX, p256.GY)


def test_scalar_out_of_range_refused():
    for d in (0, p256.N, -1):
        try:
            p256.SigningKey(d)
        except ValueError:
            continue
        raise AssertionError(d)
