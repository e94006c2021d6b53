# ECDSA over NIST P-256 with SHA-256 for the board: RFC 6979 deterministic
# nonces, low-S signatures, keys born from os.urandom. Signing only needs k*G,
# so there is one fixed-base scalar multiplication with a 4-bit window table.

import hashlib
import os

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
_HALF_N = N >> 1

# DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte SEC1 point follows.
SPKI_PREFIX = b"0Y0\x13\x06\x07*\x86H\xce=\x02\x01\x06\x08*\x86H\xce=\x03\x01\x07\x03B\x00"


def _double(x1, y1, z1):
    # dbl-2001-b, for a = -3. Infinity is z == 0.
    if z1 == 0 or y1 == 0:
        return 0, 1, 0
    delta = z1 * z1 % P
    gamma = y1 * y1 % P
    beta = x1 * gamma % P
    alpha = 3 * (x1 - delta) * (x1 + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y1 + z1) * (y1 + z1) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add_affine(x1, y1, z1, x2, y2):
    # madd-2007-bl: Jacobian (x1, y1, z1) plus affine (x2, y2).
    if z1 == 0:
        return x2, y2, 1
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = 2 * (s2 - y1) % P
    if h == 0:
        if r == 0:
            return _double(x1, y1, z1)
        return 0, 1, 0
    hh = h * h % P
    i = 4 * hh % P
    j = h * i % P
    v = x1 * i % P
    x3 = (r * r - j - 2 * v) % P
    y3 = (r * (v - x3) - 2 * y1 * j) % P
    z3 = ((z1 + h) * (z1 + h) - z1z1 - hh) % P
    return x3, y3, z3


def _to_affine(x, y, z):
    if z == 0:
        raise ValueError("p256: point at infinity")
    zi = pow(z, P - 2, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


_table = None  # j*G in affine coordinates for j = 0..15 (index 0 unused)


def _g_table():
    global _table
    if _table is None:
        t = [None, (GX, GY)]
        acc = (GX, GY, 1)
        for _ in range(14):
            acc = _add_affine(acc[0], acc[1], acc[2], GX, GY)
            t.append(_to_affine(*acc))
        _table = t
    return _table


def mul_g(k):
    """k*G in affine coordinates. Requires 0 < k < N."""
    if not 0 < k < N:
        raise ValueError("p256: scalar out of range")
    table = _g_table()
    x, y, z = 0, 1, 0
    for shift in range(252, -4, -4):
        if z:
            for _ in range(4):
                x, y, z = _double(x, y, z)
        nib = (k >> shift) & 15
        if nib:
            px, py = table[nib]
            x, y, z = _add_affine(x, y, z, px, py)
    return _to_affine(x, y, z)


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104): RFC 6979's nonces, and the charger's token hash."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def _int32(x):
    return x.to_bytes(32, "big")


def _nonces(d, digest):
    # RFC 6979 section 3.2 with qlen = hlen = 256: yields candidate k in order.
    x = _int32(d)
    h = _int32(int.from_bytes(digest, "big") % N)
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac_sha256(k, v + b"\x00" + x + h)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v + b"\x01" + x + h)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        candidate = int.from_bytes(v, "big")
        if 0 < candidate < N:
            yield candidate
        k = hmac_sha256(k, v + b"\x00")
        v = hmac_sha256(k, v)


class SigningKey:
    """A P-256 private key. The scalar never leaves this object except via to_bytes()."""

    def __init__(self, d):
        if not 0 < d < N:
            raise ValueError("p256: private scalar out of range")
        self._d = d
        self._pub = None

    @classmethod
    def generate(cls):
        while True:
            d = int.from_bytes(os.urandom(32), "big")
            if 0 < d < N:
                return cls(d)

    @classmethod
    def from_bytes(cls, raw):
        if len(raw) != 32:
            raise ValueError("p256: private key must be 32 bytes")
        return cls(int.from_bytes(raw, "big"))

    def to_bytes(self):
        return _int32(self._d)

    def public_key(self):
        """Uncompressed SEC1 point: 0x04 || X || Y (65 bytes)."""
        if self._pub is None:
            x, y = mul_g(self._d)
            self._pub = b"\x04" + _int32(x) + _int32(y)
        return self._pub

    def spki_der(self):
        return SPKI_PREFIX + self.public_key()

    def sign_digest(self, digest):
        """Signature r || s (64 bytes, low S) over a 32-byte SHA-256 digest."""
        z = int.from_bytes(digest, "big") % N
        for k in _nonces(self._d, digest):
            r = mul_g(k)[0] % N
            if r == 0:
                continue
            s = pow(k, N - 2, N) * (z + r * self._d) % N
            if s == 0:
                continue
            if s > _HALF_N:
                s = N - s
            return _int32(r) + _int32(s)

    def sign(self, message):
        return self.sign_digest(hashlib.sha256(message).digest())
