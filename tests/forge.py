"""Builds packets in CPython, field by field, to test what the verifier refuses.

An independent builder (signing with `cryptography`) so that tests can produce
packets the firmware never would: unknown fields, wrong types, bad order.
"""

from __future__ import annotations

import random
import time
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from verifier.wire import cose, merkle, strict_cbor
from verifier.wire.packet import GENESIS

N = cose.P256_ORDER


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def sign(key: ec.EllipticCurvePrivateKey, protected: bytes, payload: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(cose.to_be_signed(protected, payload), ec.ECDSA(hashes.SHA256())))
    s = min(s, N - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def meter(
    number: int, ts: int, import_wh: int = 1000, export_wh: int = 0, extra: dict[int, Any] | None = None
) -> bytes:
    return strict_cbor.dumps({0: 1, 1: number, 2: ts, 3: 2, 10: import_wh, 11: export_wh, **(extra or {})})


def header_map(
    device_id: str, seq: int, readings: list[bytes], ts: list[int], prev: bytes = GENESIS, **override: Any
) -> dict[int, Any]:
    h = {
        1: 1,
        2: device_id,
        3: seq,
        4: prev,
        5: merkle.root([merkle.leaf_hash(r) for r in readings]),
        6: len(readings),
        7: ts[0],
        8: ts[-1],
    }
    h.update({int(k[1:]): v for k, v in override.items()})  # k = "_5" overrides key 5
    return {k: v for k, v in h.items() if v is not None}


def packet(
    key: ec.EllipticCurvePrivateKey,
    payload: dict[int, Any] | bytes,
    readings: list[Any],
    protected: dict[int, Any] | None = None,
    unprotected: Any = None,
    signature: bytes | None = None,
) -> bytes:
    prot = strict_cbor.dumps(protected if protected is not None else {1: -7, 4: cose.key_id(point(key))})
    body = payload if isinstance(payload, bytes) else strict_cbor.dumps(payload)
    sig = signature if signature is not None else sign(key, prot, body)
    sign1 = cbor2.CBORTag(18, [prot, unprotected if unprotected is not None else {}, body, sig])
    return strict_cbor.dumps([sign1, readings])


def simple(
    key: ec.EllipticCurvePrivateKey,
    device_id: str = "forge-1",
    seq: int = 0,
    count: int = 3,
    prev: bytes = GENESIS,
    first_number: int = 0,
    t0: int = 1795000000,
) -> bytes:
    """A valid packet of count meter readings."""
    ts = [t0 + 60 * i for i in range(count)]
    readings = [meter(first_number + i, t, 1000 + first_number + i) for i, t in enumerate(ts)]
    return packet(key, header_map(device_id, seq, readings, ts, prev), readings)


def chain(
    key: ec.EllipticCurvePrivateKey, device_id: str, n: int, count: int = 16, t0: int | None = None
) -> list[bytes]:
    """n consecutive packets of a device, count one-minute readings each, a packet every
    1000 s or 60 * count s, whichever is longer (all in the past by default)."""
    from verifier.wire.packet import decode_packet

    step = max(1000, 60 * count)
    start = int(time.time()) - 30 * 86400 - n * step if t0 is None else t0
    out, prev = [], GENESIS
    for seq in range(n):
        data = simple(key, device_id, seq=seq, prev=prev, count=count, first_number=count * seq, t0=start + step * seq)
        out.append(data)
        prev = decode_packet(data).header_hash
    return out


def batches(chains: list[list[bytes]], rng: random.Random, most: int = 8) -> list[list[bytes]]:
    """The chains interleaved (each device's packets stay in order) and cut into batches of 1
    to most packets."""
    merged = [p for group in zip(*chains, strict=True) for p in group]
    out, i = [], 0
    while i < len(merged):
        n = rng.randint(1, most)
        out.append(merged[i : i + n])
        i += n
    return out
