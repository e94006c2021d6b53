"""COSE_Sign1 (RFC 9052) with ES256, as the packet header uses it."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from verifier.wire import strict_cbor
from verifier.wire.problems import PacketError

TAG_SIGN1 = 18
ALG_ES256 = -7
KID_BYTES = 16
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@functools.lru_cache(maxsize=4096)  # keys are immutable; a device's is used for every packet
def public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of an uncompressed SEC1 point (0x04 || X || Y)."""
    if len(point) != 65 or point[0] != 4:
        raise ValueError("expected a 65-byte uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def spki_der(point: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a P-256 point; a key stored as DER already (another
    curve's, a third-party charger's OCMF key) is its own."""
    if point[:1] == b"\x30":
        return point
    return public_key_from_point(point).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@functools.lru_cache(maxsize=4096)
def key_id(point: bytes) -> bytes:
    """Key id: the first 16 bytes of SHA-256 over the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(point)).digest()[:KID_BYTES]


def decode_protected(protected: Any) -> bytes:
    """The kid of a protected header {1: -7, 4: kid}; anything else raises PacketError."""
    if not isinstance(protected, dict) or set(protected) != {1, 4}:
        raise PacketError("invalid-field", "header.protected", "expected exactly {1: alg, 4: kid}")
    if protected[1] != ALG_ES256 or type(protected[1]) is not int:
        raise PacketError("unsupported-algorithm", "header.protected.alg", "only ES256 (-7) is accepted")
    kid = protected[4]
    if type(kid) is not bytes or len(kid) != KID_BYTES:
        raise PacketError("invalid-field", "header.protected.kid", f"expected {KID_BYTES} bytes")
    return kid


_SIG1_CONTEXT = b"\x84\x6aSignature1"  # an array of 4, then the text "Signature1"


def to_be_signed(protected: bytes, payload: bytes) -> bytes:
    """Sig_structure for COSE_Sign1 with empty external AAD: the deterministic encoding of
    ["Signature1", protected, h'', payload], put together from its parts (once a packet)."""
    bstr = strict_cbor.encode_head
    return b"".join((_SIG1_CONTEXT, bstr(2, len(protected)), protected, b"\x40", bstr(2, len(payload)), payload))


def verify_es256_message(point: bytes, message: bytes, signature: bytes) -> None:
    """Raises ValueError unless signature (r || s, low S) by point's key is valid for message."""
    if len(signature) != 64:
        raise ValueError("signature must be 64 bytes r || s")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < P256_ORDER and 0 < s <= P256_ORDER // 2):
        raise ValueError("r or s out of range (S must be low)")
    try:
        public_key_from_point(point).verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("signature does not verify") from None


def verify_es256(point: bytes, protected: bytes, payload: bytes, signature: bytes) -> None:
    """Raises PacketError(bad-signature) unless the COSE_Sign1 signature (r || s, low S) is valid."""
    try:
        verify_es256_message(point, to_be_signed(protected, payload), signature)
    except ValueError as e:
        raise PacketError("bad-signature", "header.signature", str(e)) from None
