"""What the firmware signs under MicroPython, checked by code nobody here wrote:
`cryptography`, the pure-Python `ecdsa`, and the COSE library `pycose`."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import cbor2
import ecdsa
from ecdsa.util import sigdecode_string
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages.sign1message import Sign1Message

from hardware import micropython
from tests.conftest import TEST_KEY_HEX, BuiltPackets
from verifier.wire import merkle
from verifier.wire.packet import GENESIS, decode_packet, verify_packet

SIGN_SCRIPT = micropython.ROOT / "tests" / "firmware" / "sign_messages.py"


def _sign1_parts(data: bytes) -> tuple[bytes, dict[int, object], bytes, bytes]:
    top = cbor2.loads(data)
    protected, unprotected, payload, signature = top[0].value
    return protected, dict(unprotected), payload, signature


def _to_be_signed_by_hand(protected: bytes, payload: bytes) -> bytes:
    # RFC 9052 section 4.4, written out: array(4), "Signature1", protected, h'', payload.
    return cbor2.dumps(["Signature1", protected, b"", payload])


def test_firmware_packets_verify_with_cryptography(chain: BuiltPackets, board_born: BuiltPackets) -> None:
    for built in (chain, board_born):
        prev = GENESIS
        for seq, data in enumerate(built.packets):
            p = decode_packet(data)
            verify_packet(p, built.public_key)
            assert (p.header.seq, p.header.prev) == (seq, prev)
            prev = p.header_hash


def test_firmware_signatures_verify_with_ecdsa(chain: BuiltPackets, board_born: BuiltPackets) -> None:
    for built in (chain, board_born):
        vk = ecdsa.VerifyingKey.from_string(built.public_key, curve=ecdsa.NIST256p)
        for data in built.packets:
            protected, _, payload, signature = _sign1_parts(data)
            assert vk.verify(
                signature,
                _to_be_signed_by_hand(protected, payload),
                hashfunc=hashlib.sha256,
                sigdecode=sigdecode_string,
            )
            s = int.from_bytes(signature[32:], "big")
            assert s <= ecdsa.NIST256p.order // 2, "firmware must emit low S"


def test_firmware_headers_verify_with_pycose(chain: BuiltPackets) -> None:
    x, y = chain.public_key[1:33], chain.public_key[33:]
    key = EC2Key(crv=P256, x=x, y=y)
    for data in chain.packets:
        protected, unprotected, payload, signature = _sign1_parts(data)
        # pycose's decode() predates cbor2 freezing tagged arrays; from_cose_obj is its parser.
        msg = Sign1Message.from_cose_obj([protected, unprotected, payload, signature], True)
        msg.key = key
        assert msg.verify_signature()
        tampered = Sign1Message.from_cose_obj([protected, unprotected, payload[:-1] + b"\x00", signature], True)
        tampered.key = key
        assert not tampered.verify_signature()


def test_firmware_merkle_root_matches_independent_recomputation(chain: BuiltPackets) -> None:
    def mth(leaves: list[bytes]) -> bytes:  # RFC 9162 2.1.1, straight from the text
        if len(leaves) == 1:
            return hashlib.sha256(b"\x00" + leaves[0]).digest()
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()

    for data in chain.packets:
        p = decode_packet(data)
        assert mth([r.raw for r in p.readings]) == p.header.root
        assert merkle.root([merkle.leaf_hash(r.raw) for r in p.readings]) == p.header.root


def test_firmware_rfc6979_nonces_match_ecdsa_package(tmp_path: Path) -> None:
    """Deterministic signatures over random messages agree with `ecdsa`'s RFC 6979 (after low-S)."""
    messages = [secrets.token_bytes(n) for n in (0, 1, 31, 32, 33, 100, 500)] + [b"sample", b"test"]
    listing = tmp_path / "messages.hex"
    listing.write_text("".join(m.hex() + "\n" for m in messages))
    result = micropython.run(SIGN_SCRIPT, TEST_KEY_HEX, str(listing))
    assert result.returncode == 0, result.stderr
    signatures = [bytes.fromhex(line) for line in result.stdout.split()]
    sk = ecdsa.SigningKey.from_secret_exponent(int(TEST_KEY_HEX, 16), curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
    n = ecdsa.NIST256p.order
    assert len(signatures) == len(messages)
    for message, sig in zip(messages, signatures, strict=True):
        reference = sk.sign_deterministic(
            message, hashfunc=hashlib.sha256, sigencode=lambda r, s, order: (r, min(s, order - s))
        )
        assert (int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")) == reference
        assert reference[1] <= n // 2
