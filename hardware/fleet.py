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
import os
import queue
import random
import socket
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
        self.todo: queue.Queue[tuple[int, Device, int, bytes] | None] = queue.Queue(maxsize=4 * senders)
        self.latencies: list[float] = []
        self.answers: dict[int, int] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def build(self) -> None:
        n = 0
        for slot in range(self.slots):
            for device in self.devices:
                seq = device.seq
                self.todo.put((n, device, seq, device.next_packet(self.start + slot * SLOT_S)))
                n += 1
        for _ in range(self.senders):
            self.todo.put(None)

    def send(self, t0: float) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "application/cbor", **({} if self.keep_alive else {"Connection": "close"})}
        while (item := self.todo.get()) is not None:
            n, _, _, body = item
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


class MqttStream(Stream):
    """The same packets published at QoS 1 to each device's topic through a broker
    (`wattproof mqtt` bridges take them), over `connections` MQTT connections that publish
    for many devices each, as a load generator does; the receipts come back on one
    subscription to every device's receipt topic, each matched to its packet by device and
    seq: the latency is from the publication to the receipt."""

    def __init__(self, broker: str, devices: list[Device], slots: int, start: int, rate: float,
                 connections: int = 8, wait_s: float = 120) -> None:  # fmt: skip
        from urllib.parse import urlsplit

        where = urlsplit(broker)
        super().__init__(where.port or 1883, devices, slots, start, rate, connections, False, where.hostname or "")
        self.wait_s = wait_s
        self.sent: dict[tuple[str, int], float] = {}
        self.done = threading.Event()
        self.expected = len(devices) * slots

    def _client(self, name: str) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect(self.host, self.port, keepalive=120)
        client.loop_start()
        return client

    def _receipt(self, _client: Any, _userdata: Any, message: Any) -> None:
        now = time.perf_counter()
        device = message.topic.split("/")[1]
        answer = json.loads(message.payload)
        with self.lock:
            sent = self.sent.pop((device, answer.get("seq")), None)
            if sent is None:
                return  # a second receipt for one packet (a bridge's retry): counted once
            self.latencies.append(now - sent)
            self.answers[answer["status"]] = self.answers.get(answer["status"], 0) + 1
            if answer["status"] not in (200, 201) and len(self.errors) < 5:
                self.errors.append(f"{answer['status']} {str(answer['answer'])[:300]}")
            if len(self.latencies) == self.expected:
                self.done.set()

    def run(self) -> float:
        receiver = self._client(f"fleet-receipts-{os.getpid()}")
        receiver.on_message = self._receipt
        receiver.subscribe("wattproof/+/receipt", qos=1)
        time.sleep(0.5)
        publishers = [self._client(f"fleet-{os.getpid()}-{i}") for i in range(self.senders)]
        builder = threading.Thread(target=self.build, daemon=True)
        builder.start()
        t0 = time.perf_counter()
        pending: list[Any] = []
        ended = 0
        while ended < self.senders:
            item = self.todo.get()
            if item is None:
                ended += 1
                continue
            n, device, seq, body = item
            if self.rate:
                wait = t0 + n / self.rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            with self.lock:
                self.sent[(device.device_id, seq)] = time.perf_counter()
            pending.append(publishers[n % len(publishers)].publish(f"wattproof/{device.device_id}/packet", body, qos=1))
            if len(pending) >= 1000:
                for info in pending:
                    info.wait_for_publish(60)
                pending = []
        for info in pending:
            info.wait_for_publish(60)
        self.done.wait(self.wait_s)
        seconds = time.perf_counter() - t0
        for client in [receiver, *publishers]:
            client.loop_stop()
            client.disconnect()
        with self.lock:
            self.answers[0] = self.answers.get(0, 0) + len(self.sent)  # never answered: lost
        if not self.answers[0]:
            del self.answers[0]
        return seconds


def _mqtt_connect(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, keep-alive 0 (the broker never drops the
    connection for silence), no user (an anonymous broker: the load generator's)."""
    name = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(name).to_bytes(2, "big") + name
    assert len(body) < 128, "one byte of remaining length"
    return bytes([0x10, len(body)]) + body


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("closed by the broker")
        data += part
    return data


def hold_connections(host: str, port: int, count: int) -> list[socket.socket]:
    """count device connections that connect and stay, as a city's boards between two packets
    hold theirs: each CONNECT answered by a CONNACK that accepts it."""
    held = []
    for i in range(count):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(_mqtt_connect(f"held-{os.getpid()}-{i}"))
        held.append(s)
    for s in held:
        ack = _read(s, 4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise RuntimeError(f"the broker refused a held connection: CONNACK {ack.hex()}")
    return held


def still_held(held: list[socket.socket]) -> int:
    """How many of the held connections the broker still answers (PINGREQ, PINGRESP); closes them."""
    alive = 0
    for s in held:
        try:
            s.sendall(b"\xc0\x00")
        except OSError:
            continue
    for s in held:
        try:
            alive += _read(s, 2) == b"\xd0\x00"
        except OSError:
            pass
        s.close()
    return alive


class HeldConnections:
    """count idle device connections held by a process of their own, until still_held(): the
    load generator's MQTT clients (paho) wait on select(), which takes no descriptor past
    1,023, so the held ones must not be this process'."""

    def __init__(self, host: str, port: int, count: int) -> None:
        import subprocess
        import sys
        from pathlib import Path

        code = "import sys; from hardware.fleet import _hold; _hold(*sys.argv[1:])"
        self.proc = subprocess.Popen([sys.executable, "-c", code, host, str(port), str(count)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if line[:1] != ["held"]:
            self.proc.kill()
            raise RuntimeError(f"the connections were not held: {' '.join(line) or 'the holder stopped'}")
        self.count = int(line[1])

    def still_held(self) -> int:
        """How many the broker still answers (a ping each); then lets them all go."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("ping\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        self.proc.wait(timeout=60)
        return int(line[1]) if line[:1] == ["alive"] else 0


def _hold(host: str, port: str, count: str) -> None:
    """The holder process: opens the connections, says so, pings them when told."""
    import sys

    raise_file_limit(int(count) + 256)
    try:
        held = hold_connections(host, int(port), int(count))
    except (OSError, RuntimeError) as e:
        print(f"failed {e}", flush=True)
        return
    print(f"held {len(held)}", flush=True)
    sys.stdin.readline()
    print(f"alive {still_held(held)}", flush=True)


def raise_file_limit(wanted: int) -> None:
    """This process' descriptor limit raised to wanted (a connection each), as far as the hard
    limit lets; processes started from here inherit it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )
