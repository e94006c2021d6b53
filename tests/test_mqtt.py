"""The MQTT transport end to end: Debian's mosquitto on 127.0.0.1, `wattproof mqtt` bridges
taking the packets to the verifier's ingest, receipts back on the device's topic. A virtual
board (real MicroPython, the firmware's own MQTT client) delivers over it; the same packet
delivered twice counts once; a packet on another device's topic is refused by the broker's
ACL, and by the bridge where the ACL lets it through; a bridge killed with SIGKILL while it
holds messages loses none (its persistent session gives them back when it comes again);
the broker restarted while a board delivers loses nothing. Every run ends with `ledger
audit` clean and each reading once."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning.provision import set_broker_password
from tests import forge
from tests.conftest import RunningVerifier
from tests.enroll import enroll_key
from tests.test_gateway import _wait_for
from wattproof.broker import LocalBroker, mosquitto

pytestmark = pytest.mark.board  # MicroPython boards and broker processes: a slow tier

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


def _need_mosquitto() -> None:
    try:
        mosquitto()
    except FileNotFoundError:
        if not os.environ.get("CI"):
            pytest.skip("make test installs Debian's mosquitto")
        raise


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    _need_mosquitto()
    running = LocalBroker(tmp_path / "broker")
    running.start()
    yield running
    running.stop()


class Bridge:
    def __init__(
        self, db: Path, broker: LocalBroker, name: str, user: str | None = None, ca: Path | None = None
    ) -> None:
        args = ["--db", str(db), "--broker", broker.url, "--client-id", name, *(["--ca", str(ca)] if ca else [])]
        if user is not None:
            assert broker.users is not None
            secret = db.parent / f"{name}.password"
            secret.write_text(broker.users[user])
            args += ["--user", user, "--password-file", str(secret)]
        self.proc = subprocess.Popen([*WATTPROOF, "mqtt", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)  # fmt: skip
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        assert first.startswith("bridge from "), first
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def subscribed(self) -> bool:
        return any("connected to" in line for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Device:
    """A device's own MQTT connection (paho, MQTT 3.1.1 as the boards speak it) with the
    receipts it got."""

    def __init__(self, broker: LocalBroker, device_id: str, user: str | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.receipts: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device_id}", protocol=mqtt.MQTTv311)
        if user is not None:
            assert broker.users is not None
            self.client.username_pw_set(user, broker.users[user])
        self.client.on_message = lambda c, u, m: self.receipts.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(f"wattproof/{device_id}/receipt", qos=1)
        time.sleep(0.2)

    def publish(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _packets(db: Path, device_id: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM packets WHERE device_id = ?", (device_id,)).fetchone()[0])
    finally:
        conn.close()


def _audit(db: Path) -> None:
    audit = subprocess.run([*WATTPROOF, "ledger", "audit", "--db", str(db)], capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _enrolled(verifier: RunningVerifier, device_id: str, packets: int) -> list[bytes]:
    key = forge.new_key()
    enroll_key(verifier.db, device_id, key)
    return forge.chain(key, device_id, packets, count=15)


def test_the_same_packet_twice_counts_once_and_a_foreign_topic_is_refused(
    verifier: RunningVerifier, broker: LocalBroker
) -> None:
    first, second, third = _enrolled(verifier, "mq-a", 3)
    bridge = Bridge(verifier.db, broker, "bridge-1")
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription")
        device = Device(broker, "mq-a")
        for data in (first, first, second):
            device.publish("wattproof/mq-a/packet", data)
        _wait_for(lambda: len(device.receipts) == 3, 20, "three receipts")
        assert [(r["seq"], r["status"]) for r in device.receipts] == [(0, 201), (0, 200), (1, 201)]
        assert device.receipts[1]["answer"]["status"] == "duplicate"
        assert _packets(verifier.db, "mq-a") == 2
        # A packet of mq-a published on mq-b's topic (no ACL here): the bridge refuses it.
        other = Device(broker, "mq-b")
        other.publish("wattproof/mq-b/packet", third)
        _wait_for(lambda: len(other.receipts) == 1, 20, "the refusal")
        assert other.receipts[0]["status"] == 403 and other.receipts[0]["answer"]["field"] == "topic"
        assert _packets(verifier.db, "mq-a") == 2
        device.close()
        other.close()
    finally:
        bridge.stop()
    _audit(verifier.db)


def test_a_packet_ahead_of_its_chain_waits_for_the_one_before(verifier: RunningVerifier, broker: LocalBroker) -> None:
    """A shared subscription may hand a device's next packet to a bridge before the one
    before it reached the ledger: the later one waits, unanswered, and is taken after it
    (not refused as a sequence conflict); one past the wait is refused as before."""
    from verifier.mqtt import bridge as bridging

    first, second, third, fourth = _enrolled(verifier, "mq-order", 4)
    bridge = Bridge(verifier.db, broker, "bridge-1")
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription")
        device = Device(broker, "mq-order")
        device.publish("wattproof/mq-order/packet", second)
        time.sleep(0.5)
        device.publish("wattproof/mq-order/packet", first)
        _wait_for(lambda: len(device.receipts) == 2, 20, "two receipts")
        assert sorted((r["seq"], r["status"]) for r in device.receipts) == [(0, 201), (1, 201)]
        device.publish("wattproof/mq-order/packet", fourth)  # the third never comes
        _wait_for(lambda: len(device.receipts) == 3, 10 + bridging.AHEAD_WAIT_S, "the refusal")
        assert device.receipts[2]["status"] == 409 and device.receipts[2]["answer"]["expected_seq"] == 2
        device.publish("wattproof/mq-order/packet", third)
        device.publish("wattproof/mq-order/packet", fourth)
        _wait_for(lambda: len(device.receipts) == 5, 20, "the last two receipts")
        assert [r["status"] for r in device.receipts[3:]] == [201, 201]
        device.close()
    finally:
        bridge.stop()
    assert _packets(verifier.db, "mq-order") == 4
    _audit(verifier.db)


def test_a_board_delivers_over_mqtt_and_a_bridge_killed_loses_nothing(
    tmp_path: Path, verifier: RunningVerifier, broker: LocalBroker
) -> None:
    """The firmware's own MQTT client, in MicroPython with the ESP32's heap: its packets go
    through mosquitto and a bridge, each leaves the journal when its receipt came. One
    bridge is killed with SIGKILL while the board sends; the second takes over (a shared
    subscription), and the first, started again under its client id, finds its session."""
    from tests.test_gateway import _drain, _readings

    first = Bridge(verifier.db, broker, "bridge-1")
    second = Bridge(verifier.db, broker, "bridge-2")
    try:
        _wait_for(lambda: first.subscribed() and second.subscribed(), 20, "both bridges' subscriptions")
        board = _mqtt_board(tmp_path, verifier, broker, "mq-board", speed=120, packet_readings=4)
        for _ in range(6):
            board.pulse(40)
            time.sleep(0.5)
        _wait_for(lambda: _packets(verifier.db, "mq-board") >= 2, 60, "packets over MQTT")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        killed = first
        for _ in range(6):
            board.pulse(40)
            time.sleep(0.5)
        first = Bridge(verifier.db, broker, "bridge-1")
        _drain(board, verifier, "mq-board")
        board.stop()
    finally:
        first.stop()
        second.stop()
    readings = _readings(verifier, "mq-board")  # each number once, none missing
    assert readings
    # Every packet came through a bridge (the board's HTTP is only its clock's source).
    through = {line.split("#")[1].split(":")[0] for b in (killed, first, second) for line in b.lines
               if "mq-board #" in line and line.rstrip().endswith("(mqtt)")}  # fmt: skip
    assert len(through) == _packets(verifier.db, "mq-board"), through
    _audit(verifier.db)


def test_the_brokers_acl_keeps_a_device_to_its_own_topics(tmp_path: Path, verifier: RunningVerifier) -> None:
    _need_mosquitto()
    broker = LocalBroker(tmp_path / "acl-broker", {"bridge": "bridge-secret", "mq-a": "a-secret", "mq-b": "b-secret"})
    broker.start()
    (mine,) = _enrolled(verifier, "mq-a", 1)
    bridge = Bridge(verifier.db, broker, "bridge-1", user="bridge")
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription")
        thief = Device(broker, "mq-b", user="mq-b")
        thief.publish("wattproof/mq-a/packet", mine)  # the broker takes it and drops it: not mq-b's topic
        owner = Device(broker, "mq-a", user="mq-a")
        owner.publish("wattproof/mq-a/packet", mine)
        _wait_for(lambda: len(owner.receipts) == 1, 20, "the owner's receipt")
        time.sleep(0.5)
        assert [r["status"] for r in owner.receipts] == [201] and thief.receipts == []
        assert not [line for line in bridge.lines if "wattproof/mq-b" in line]  # nothing reached the bridge from mq-b
        assert _packets(verifier.db, "mq-a") == 1
        thief.close()
        owner.close()
    finally:
        bridge.stop()
        broker.stop()
    _audit(verifier.db)


def _mqtt_board(tmp_path: Path, verifier: RunningVerifier, broker: LocalBroker, name: str, **settings: Any) -> Any:
    """A virtual board with an S0 meter that sends over the test's broker, in an ESP32's
    heap without PSRAM (96 KB: the board's MQTT client fits beside the gateway)."""
    from hardware import micropython
    from tests.test_gateway import _board

    board = _board(tmp_path, verifier, name, meter={"model": "s0", "pulses_per_kwh": 1000},
                   transport="mqtt", broker=broker.url, **settings)  # fmt: skip
    assert board.heap == micropython.ESP32_HEAP == "96K"
    return board


def test_a_charger_cut_off_before_its_stop_record_boots_in_the_esp32_heap(
    tmp_path: Path, verifier: RunningVerifier, broker: LocalBroker
) -> None:
    """The demo's charger (an SDM120 on Modbus, over MQTT) lost power after it ended a session
    and before the session's stop record reached its journal. Its next boot makes that record,
    which loads the OCMF code and signs: in an ESP32's heap without PSRAM this ran out of
    memory and the board restarted forever (in the loop, it measured on and closed no packet).
    Now the record borrows the packet buffer's block: the board boots, journals the stop with
    its OCMF signature and delivers everything."""
    import cbor2

    from hardware import micropython, sim
    from tests.test_gateway import PAST, SECRET, _drain, _packets, _readings
    from tests.test_ocpi import CHARGE_POINT

    name = "heap-charger"
    from verifier.charging import tokens

    profile = sim.load_profile("devkitc-charger") | {"transport": "mqtt", "broker": broker.url, "backoff_max_s": 20}
    profile["charger"] = profile["charger"] | {"token_key": tokens.charger_key(SECRET, name).hex()}  # as provisioned
    site = sim.Site(profile, tmp_path / name, name, verifier.url, speed=60, virtual_epoch=PAST)
    board = site.board
    assert board.heap == micropython.ESP32_HEAP == "96K"
    bridge = Bridge(verifier.db, broker, "bridge-1")
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription")
        site.start()
        _wait_for(lambda: (board.flash / "device.pub").exists(), 20, "the device key")
        where = [48_856_600, 2_352_200]
        verifier.register(name, board.flash, role="charger", charge_point=CHARGE_POINT, location=where)
        _wait_for(lambda: _packets(verifier, name) >= 1, 60, "the boot's packet")
        board.cut_power()
        # What the charger had saved when the power went: the session ended by the vehicle,
        # its stop not yet journaled (its start does not matter to the board).
        session = {"id": bytes(range(16)), "phase": "stop", "token": bytes(32), "logged": False, "reason": 1,
                   "stop_wh": 1_000_000, "start_ts": PAST, "start_wh": 990_000, "start_quality": 2}  # fmt: skip
        (board.flash / "session.cbor").write_bytes(cbor2.dumps(session))
        board.start()
        _wait_for(lambda: not (board.flash / "session.cbor").exists(), 30, "the stop record")
        _drain(board, verifier)
    finally:
        site.close()
        bridge.stop()
    assert "MemoryError" not in board.console(), board.console()[-3000:]
    (stop,) = [r for r in _readings(verifier, name) if r.kind == 2 and r.values["event"] == 3]
    assert stop.values["register_wh"] == 1_000_000 and stop.values["ocmf_sig"]
    _audit(verifier.db)


def test_a_broker_restart_loses_nothing(tmp_path: Path, verifier: RunningVerifier, broker: LocalBroker) -> None:
    from tests.test_gateway import _drain, _readings

    bridge = Bridge(verifier.db, broker, "bridge-1")
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription")
        board = _mqtt_board(tmp_path, verifier, broker, "mq-restart", speed=120, packet_readings=4, backoff_max_s=4)
        for _ in range(4):
            board.pulse(30)
            time.sleep(0.5)
        _wait_for(lambda: _packets(verifier.db, "mq-restart") >= 1, 60, "a packet over MQTT")
        broker.stop()
        for _ in range(6):  # packets pile up in the journal while the broker is away
            board.pulse(30)
            time.sleep(0.5)
        broker.start()
        _wait_for(lambda: sum("connected to" in line for line in bridge.lines) >= 2, 30, "the bridge to reconnect")
        _drain(board, verifier, "mq-restart")
        board.stop()
    finally:
        bridge.stop()
    assert _readings(verifier, "mq-restart")
    _audit(verifier.db)


def test_power_cuts_mid_publish_lose_and_repeat_nothing(
    tmp_path: Path, verifier: RunningVerifier, broker: LocalBroker
) -> None:
    """The board loses power at arbitrary moments while it publishes and waits for receipts:
    what it had not seen answered it publishes again after the restart, and the verifier
    answers it as a duplicate."""
    import random

    from tests.test_gateway import _drain, _readings

    bridge = Bridge(verifier.db, broker, "bridge-1")
    rng = random.Random(7)
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription")
        board = _mqtt_board(tmp_path, verifier, broker, "mq-cut", speed=240, packet_readings=2, backoff_max_s=2)
        for _ in range(8):
            board.pulse(25)
            time.sleep(rng.uniform(0.2, 0.9))
            board.cut_power()
            board.start()
        _drain(board, verifier, "mq-cut")
        board.stop()
    finally:
        bridge.stop()
    duplicates = sum("duplicate mq-cut" in line for line in bridge.lines)
    assert _readings(verifier, "mq-cut") and _packets(verifier.db, "mq-cut") > 3, duplicates
    _audit(verifier.db)


def test_provisioning_gives_each_board_its_own_password_the_broker_takes(tmp_path: Path) -> None:
    """`wattproof provision --broker-passwords FILE`: a line per device in mosquitto's format,
    a new password replacing the device's old line; mosquitto takes the one and refuses the
    other."""
    _need_mosquitto()
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = LocalBroker(tmp_path / "broker", {})
    passwords = broker.passwords
    old = set_broker_password(passwords, "pv-1")
    new = set_broker_password(passwords, "pv-1")
    other = set_broker_password(passwords, "pv-2")
    assert [line.split(":")[0] for line in passwords.read_text().splitlines()] == ["pv-1", "pv-2"]
    assert passwords.stat().st_mode & 0o777 == 0o600 and len({old, new, other}) == 3
    broker.start()
    try:
        answers: dict[str, bool] = {}

        def answered(name: str) -> Callable[..., None]:
            def on_connect(client: object, userdata: object, flags: object, reason: Any, props: object) -> None:
                answers[name] = reason.is_failure

            return on_connect

        seen: list[str] = []
        for name, password in (("new", new), ("old", old)):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pv-1-{name}", protocol=mqtt.MQTTv311)
            client.username_pw_set("pv-1", password)
            client.on_connect = answered(name)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            _wait_for(lambda: len(answers) == len(seen) + 1, 10, f"the {name} password's answer")
            client.loop_stop()
            client.disconnect()
            seen.append(name)
        assert answers == {"new": False, "old": True}
    finally:
        broker.stop()


def test_packets_travel_over_mqtts_to_a_broker_the_board_verifies(tmp_path: Path, verifier: RunningVerifier) -> None:
    """mqtts: the board checks the broker's certificate against the CA on its flash (ca.der)
    and publishes; a broker whose certificate another CA signed gets nothing, and the board
    keeps its packets."""
    _need_mosquitto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from hardware.virtual_board import VirtualBoard
    from tests.test_gateway import PAST, _drain, _readings
    from tests.test_tls_uplink import _certificate

    ca_key, server_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("wattproof test CA", ca_key, None, ca=True)
    server = _certificate("localhost", server_key, ("wattproof test CA", ca_key), ca=False)
    other = _certificate("someone else", other_key, None, ca=True)
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    broker = LocalBroker(tmp_path / "tls-broker", tls=(tmp_path / "server.pem", tmp_path / "server.key"))
    broker.start()
    bridge = Bridge(verifier.db, broker, "bridge-tls", ca=tmp_path / "ca.pem")
    boards = []
    try:
        _wait_for(bridge.subscribed, 20, "the bridge's subscription over TLS")
        for name, trusted in (("mq-tls", ca), ("mq-tls-other", other)):
            config = {"device_id": name, "verifier": verifier.url, "meter": {"model": "s0", "pulses_per_kwh": 1000},
                      "packet_readings": 3, "backoff_s": 1, "backoff_max_s": 4, "transport": "mqtt",
                      "broker": broker.url}  # fmt: skip
            # mbedTLS takes its buffers from the ESP-IDF heap on an ESP32, from the Python heap
            # on the unix port: the virtual board needs room for them on top (tests/test_tls_uplink.py).
            board = VirtualBoard(tmp_path / name, config, speed=240, virtual_epoch=PAST, heap="160K")
            (board.flash / "ca.der").write_bytes(trusted.public_bytes(serialization.Encoding.DER))
            board.start()
            key_file = board.flash / "device.pub"
            _wait_for(key_file.exists, 20, "the device key")
            verifier.register(name, board.flash)
            boards.append(board)
        for board in boards:
            board.pulse(40)
        time.sleep(3)
        for board in boards:
            board.pulse(40)
        _wait_for(lambda: _packets(verifier.db, "mq-tls") >= 1, 60, "a packet over mqtts")
        _drain(boards[0], verifier, "mq-tls")
        assert _readings(verifier, "mq-tls")
        refused = boards[1]
        _wait_for(lambda: len(list((refused.flash / "out").glob("*.pkt"))) >= 1, 30, "the other board's packets")
        time.sleep(1)
        assert _packets(verifier.db, "mq-tls-other") == 0, "a broker the board cannot verify gets nothing"
        assert list((refused.flash / "out").glob("*.pkt")), "the packets are kept for later"

    finally:
        for board in boards:
            board.stop()
        bridge.stop()
        broker.stop()
    told = boards[1].console()
    assert "not correctly signed by the trusted CA" in told and "Traceback" not in told, told[-1500:]
    _audit(verifier.db)


def test_the_demo_runs_over_mqtt(tmp_path: Path) -> None:
    """`wattproof demo --transport mqtt`: the five boards provisioned with their broker
    passwords publish to a local mosquitto (password file and ACL), a bridge ingests every
    packet, the rest of the demo runs on what the ledger holds; a rerun in the same folder goes
    on with the same broker users."""
    _need_mosquitto()
    from tests.test_cli import _summary

    runs = []
    for hours in ("2", "2"):
        done = subprocess.run([*WATTPROOF, "demo", "--transport", "mqtt", "--hours", hours, "--speed", "300",
                               "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0 and "demo OK" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
        runs.append(done.stdout)
    for out in runs:
        tail = out[-3000:]
        assert "the boards publish to mosquitto on mqtt://127.0.0.1:" in out, tail
        assert "[bridge      ] mqtt: connected to 127.0.0.1:" in out, tail
        # The boards' packets came through the bridge (progress every 25), none over HTTP.
        assert re.search(r"\[bridge +\] \d+ packets accepted so far", out), tail
        assert not re.search(r"\[verifier +\] \d+ packets accepted so far", out), tail
        assert "audit: " in out and ": OK" in out, tail
    first, second = _summary(runs[0]), _summary(runs[1])
    grew = {d: (first[d][0], second[d][0], second[d][5]) for d in first}
    assert all(int(b) > int(a) > 0 and chain.startswith("unbroken") for a, b, chain in grew.values()), grew
    users = [line.split(":")[0] for line in (tmp_path / "broker" / "passwords").read_text().splitlines()]
    assert sorted(users) == sorted(["bridge", *first]), users
