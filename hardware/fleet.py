"""A virtual fleet: many devices' keys, enrollment requests and packets, built in CPython
byte for byte as the firmware builds them (the same deterministic CBOR, RFC 6979 ECDSA with
low S as firmware/p256.py signs), for load at a city's scale (bench/fleet.py,
`wattproof sim fleet`). tests/test_fleet.py checks a device's packets against the firmware's
own PacketBuilder under MicroPython, for the same key and readings.

A device here is a meter read once a minute that closes a packet of 15 readings every 15
minutes: its import register grows by a household's few hundred watts."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from provisioning.client import VerifierClient
from provisioning.enrollment import Installer
from verifier.devices import identity
from verifier.wire import cose, merkle, strict_cbor
from verifier.wire.packet import GENESIS

READINGS_PER_PACKET = 15
SLOT_S = 15 * 60  # a packet every 15 minutes
CHUNK = 1000  # enrollments per request (the endpoint's most)
INTERVAL_S = 60
TIME_SYNCHRONISED = 2  # firmware/reading.py
KIND_METER = 1


def es256(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """r || s over SHA-256(message), RFC 6979 nonces and low S: firmware/p256.py's signature."""
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    s = min(s, cose.P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def meter_reading(number: int, ts: int, import_wh: int, export_wh: int = 0, power_w: int | None = None) -> bytes:
    """firmware/reading.py's meter_interval."""
    r: dict[int, Any] = {0: KIND_METER, 1: number, 2: ts, 3: TIME_SYNCHRONISED, 10: import_wh, 11: export_wh}
    if power_w is not None:
        r[12] = power_w
    return strict_cbor.dumps(r)


def key_from_scalar(d: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(d, ec.SECP256R1())


@dataclass
class Device:
    """One fleet member: its key and its chain (next sequence number, previous header hash,
    next reading number, its import register)."""

    device_id: str
    key: ec.EllipticCurvePrivateKey
    seq: int = 0
    prev: bytes = GENESIS
    number: int = 0
    import_wh: int = 1_000_000
    watts: int = field(default=400)

    @property
    def point(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def record(self, grid_area: str = "fleet") -> dict[str, Any]:
        """The enrollment record of a household meter's board."""
        return {
            "device_id": self.device_id,
            "public_key": self.point,
            "role": "consumer",
            "capacity_w": 12_000,  # a household's connection
            "grid_area": grid_area,
            "meter_model": "fleet-meter",
            "meter_serial": f"FLEET-{self.device_id}",
        }

    def enrollment(self, challenge: bytes, installer: Installer) -> dict[str, Any]:
        """An enrollment request: the board's proof over its own challenge, the installer's
        signature (the form POST /v1/enrollments and /v1/enrollments/batch take)."""
        device = self.record()
        pop = es256(self.key, identity.pop_message(device, challenge))
        return {
            "device": device,
            "challenge": challenge,
            "pop": pop,
            "installer": installer.name,
            "installer_sig": installer.sign(identity.installer_message(device, challenge, pop)),
        }

    def packet(self, readings: list[bytes], first_ts: int, last_ts: int) -> bytes:
        """The next packet of the chain over readings (firmware/packet.py's PacketBuilder.close)."""
        payload = strict_cbor.dumps({
            1: 1, 2: self.device_id, 3: self.seq, 4: self.prev,
            5: merkle.root([merkle.leaf_hash(r) for r in readings]),
            6: len(readings), 7: first_ts, 8: last_ts,
        })  # fmt: skip
        protected = strict_cbor.dumps({1: -7, 4: cose.key_id(self.point)})
        signature = es256(self.key, cose.to_be_signed(protected, payload))
        header = strict_cbor.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))
        self.seq += 1
        self.prev = hashlib.sha256(header).digest()
        return b"\x82" + header + strict_cbor.dumps(readings)  # [COSE_Sign1, [reading bytes...]]

    def next_packet(self, start: int) -> bytes:
        """Fifteen one-minute readings from start, closed into the next packet."""
        readings = []
        for i in range(READINGS_PER_PACKET):
            readings.append(meter_reading(self.number, start + i * INTERVAL_S, self.import_wh))
            self.number += 1
            self.import_wh += self.watts * INTERVAL_S // 3600
        return self.packet(readings, start, start + (READINGS_PER_PACKET - 1) * INTERVAL_S)


def fleet(count: int, seed: int = 1, prefix: str = "fleet") -> list[Device]:
    """count devices with keys made from seed (the same fleet on every run: a load test can
    enroll once and send again), a household's load each."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        d = rng.randrange(1, cose.P256_ORDER)
        out.append(Device(f"{prefix}-{n:06d}", key_from_scalar(d), watts=rng.randrange(150, 900)))
    return out


def enroll(url: str, admin: str, devices: list[Device]) -> float:
    """Registers an installer, then enrolls every device in batches; returns the seconds taken."""
    api = VerifierClient(url, admin, timeout=600)
    installer = Installer.generate("fleet-installer")
    status, answer = api.request("POST", "/v1/installers", json.dumps(
        {"name": installer.name, "public_key": base64.b64encode(installer.public_key).decode()}).encode())  # fmt: skip
    assert status == 201, answer
    status, answer = api.request("POST", "/v1/keys", json.dumps(
        {"name": "fleet-installer", "role": "installer", "installer": installer.name}).encode())  # fmt: skip
    assert status == 201, answer
    client = VerifierClient(url, answer["token"], timeout=600)
    t = time.perf_counter()
    for i in range(0, len(devices), CHUNK):
        group = devices[i : i + CHUNK]
        status, got = client.request("POST", "/v1/enrollments/challenges",
                                     json.dumps({"count": len(group)}).encode())  # fmt: skip
        assert status == 200, got
        requests = [d.enrollment(bytes.fromhex(c), installer) for d, c in zip(group, got["challenges"], strict=True)]
        status, got = client.request("POST", "/v1/enrollments/batch", strict_cbor.dumps(requests), "application/cbor")
        assert status == 200 and got["enrolled"] + got["already_enrolled"] == len(group), str(got)[:500]
    return time.perf_counter() - t


class Stream:
    """The packets of every slot, built in order by one thread (a device's chain is
    sequential), sent by --senders threads, each answer timed."""

    def __init__(self, port: int, devices: list[Device], slots: int, start: int, rate: float,
                 senders: int, keep_alive: bool, host: str = "127.0.0.1") -> None:  # fmt: skip
        self.host, self.port, self.devices, self.slots, self.start = host, port, devices, slots, start
        self.rate, self.senders, self.keep_alive = rate, senders, keep_alive
        self.todo: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=4 * senders)
        self.latencies: list[float] = []
        self.answers: dict[int, int] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def build(self) -> None:
        n = 0
        for slot in range(self.slots):
            for device in self.devices:
                self.todo.put((n, device.next_packet(self.start + slot * SLOT_S)))
                n += 1
        for _ in range(self.senders):
            self.todo.put(None)

    def send(self, t0: float) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "application/cbor", **({} if self.keep_alive else {"Connection": "close"})}
        while (item := self.todo.get()) is not None:
            n, body = item
            if self.rate:
                wait = t0 + n / self.rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                conn.request("POST", "/v1/packets", body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                status = resp.status
                if not self.keep_alive:
                    conn.close()
                    conn = None
            except OSError as e:
                status, answer = 0, str(e).encode()
                conn = None
            took = time.perf_counter() - t
            with self.lock:
                self.latencies.append(took)
                self.answers[status] = self.answers.get(status, 0) + 1
                if status not in (200, 201) and len(self.errors) < 5:
                    self.errors.append(f"{status} {answer[:300]!r}")

    def run(self) -> float:
        builder = threading.Thread(target=self.build, daemon=True)
        builder.start()
        while self.todo.qsize() < min(self.todo.maxsize, len(self.devices) * self.slots):
            time.sleep(0.01)  # a head start, so the first packets are not waiting on the builder
        t0 = time.perf_counter()
        threads = [threading.Thread(target=self.send, args=(t0,), daemon=True) for _ in range(self.senders)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return time.perf_counter() - t0
