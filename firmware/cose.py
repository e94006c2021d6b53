# COSE_Sign1 (RFC 9052) with ES256 for packet headers. The protected header is
# {1 (alg): -7 (ES256), 4 (kid): key id}; the unprotected header is empty; the
# signature is r || s over the Sig_structure ["Signature1", protected, h'', payload].

import hashlib

import cbor

ALG_ES256 = -7
TAG_SIGN1 = 18


def key_id(spki_der):
    """Key id: the first 16 bytes of SHA-256 over the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).digest()[:16]


def protected_header(kid):
    return cbor.encode({1: ALG_ES256, 4: kid})


def to_be_signed(protected, payload):
    return cbor.encode(["Signature1", protected, b"", payload])


def sign1(key, kid, payload):
    """Tagged COSE_Sign1 bytes over payload (bytes), signed by key (p256.SigningKey)."""
    protected = protected_header(kid)
    signature = key.sign(to_be_signed(protected, payload))
    return cbor.encode(cbor.Tag(TAG_SIGN1, [protected, {}, payload, signature]))
