"""`wattproof mqtt`: the verifier's side of the MQTT transport.

Boards publish each packet (the signed CBOR bytes, as POSTed over HTTP) at QoS 1 to
`wattproof/<device>/packet` and wait for the verifier's receipt on
`wattproof/<device>/receipt`. A bridge subscribes through an MQTT 5 shared subscription
(`$share/<group>/wattproof/+/packet`), so that any number of bridge processes on any number
of hosts split the messages between them. Each takes the messages it is given in batches,
runs the same ingest as HTTP (`devices.ingest.accept_batch`: every check, one commit), then
publishes one receipt per packet at QoS 1 and only after the broker took the receipt
acknowledges the packet's message (paho-mqtt 2, manual acknowledgements). A bridge that
dies before that leaves the message unacknowledged: the broker gives it to another bridge
(or this one, back), whose ingest answers `duplicate` for what was committed. A board that
never sees its receipt publishes again and is answered again. Nothing is lost, nothing
counts twice.

A receipt is JSON: `{"seq": N, "status": <the HTTP status the same packet would get>,
"answer": <the HTTP answer: the packet answer, or the problem>}`. A packet published on
another device's topic is refused (`forbidden`, field `topic`) whatever it holds: the ACL
should have stopped it at the broker, and the signature would in any case be the named
device's own.

paho-mqtt 2 rather than aiomqtt: ingest is synchronous (a database commit per batch), paho
gives manual acknowledgements and MQTT 5 in a thread of its own, and nothing here needs an
event loop.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from verifier import settings, storage
from verifier.devices import ingest
from verifier.log import checkpoints
from verifier.wire.packet import Header, decode_packet
from verifier.wire.problems import Problem

log = logging.getLogger("wattproof.verifier")

PACKETS = "wattproof/+/packet"
SESSION_S = 3600  # how long the broker keeps a bridge's session (its unacknowledged messages) while it is away


AHEAD_WAIT_S = 5.0  # how long a packet ahead of its device's chain waits for the one before


def _ahead(result: ingest.Outcome | Problem, seq: int | None) -> bool:
    """A refusal because packets before this one (seq) are missing: they may be on their way."""
    if not isinstance(result, Problem) or result.kind != "sequence-conflict" or seq is None:
        return False
    expected = result.extra.get("expected_seq")
    return result.field == "header.payload.seq" and isinstance(expected, int) and expected < seq


def receipt_topic(device_id: str) -> str:
    return f"wattproof/{device_id}/receipt"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int = 1883
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None  # TLS to the broker, verified against this CA

    @classmethod
    def parse(cls, url: str, user: str | None = None, password: str | None = None, ca_file: str | None = None
              ) -> Broker:  # fmt: skip
        scheme, _, rest = url.partition("://")
        if scheme not in ("mqtt", "mqtts") or not rest:
            raise ValueError(f"a broker is mqtt://host[:port] or mqtts://host[:port], not {url!r}")
        host, _, port = rest.rstrip("/").partition(":")
        if scheme == "mqtts" and not ca_file:
            raise ValueError("mqtts needs the broker's CA certificate (--ca FILE)")
        return cls(host, int(port) if port else (8883 if scheme == "mqtts" else 1883), user, password, ca_file)


def _header(data: bytes) -> Header | None:
    """The packet's header (its device and seq: the board matches receipts by seq); None
    for what is no packet (its refusal says why)."""
    try:
        return decode_packet(data).header
    except ValueError:  # a Problem
        return None


def receipt(seq: int | None, result: ingest.Outcome | Problem) -> bytes:
    if isinstance(result, Problem):
        return json.dumps({"seq": seq, "status": result.status, "answer": result.to_json()}).encode()
    status = 200 if result.duplicate else 201
    return json.dumps({"seq": seq, "status": status, "answer": ingest.describe(result)}).encode()


class Bridge:
    """One bridge process: its broker connection, its database connection, its batches."""

    def __init__(
        self,
        config: Mapping[str, Any],
        broker: Broker,
        group: str = "verifiers",
        batch: int = 64,
        linger_s: float = 0.02,
        client_id: str = "",
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.config = config
        self.broker = broker
        self.group = group
        self.batch = batch
        self.linger_s = linger_s
        self.db = storage.connect(str(config["DATABASE"]))
        self.signer = settings.log_signer(config)
        self.pace = checkpoints.Pace(float(config["CHECKPOINT_MIN_GAP_S"]))
        self.limiter = ingest.RateLimiter(float(config["RATE_PACKETS_PER_S"]), int(config["RATE_BURST"]))
        self.messages: queue.Queue[Any] = queue.Queue()
        # Packets that came ahead of their device's chain, first seen when: a shared
        # subscription gives a device's consecutive packets to any bridge, so the one before
        # may still be in another bridge's batch. They wait (unacknowledged, unanswered) and
        # are tried again with the next batches, for up to AHEAD_WAIT_S.
        self.ahead: dict[int, float] = {}
        self.later: list[Any] = []
        self.stopped = threading.Event()
        self.handled = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"wattproof-bridge-{threading.get_native_id()}-{int(time.time() * 1000) % 10**6}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if broker.user is not None:
            self.client.username_pw_set(broker.user, broker.password)
        if broker.ca_file:
            self.client.tls_set(ca_certs=broker.ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 5)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt: the broker refused the bridge: %s", reason)
            return
        client.subscribe(f"$share/{self.group}/{PACKETS}", qos=1)
        log.info("mqtt: connected to %s:%d, sharing %s in group %s", self.broker.host, self.broker.port,
                 PACKETS, self.group)  # fmt: skip

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.messages.put(message)

    def _take(self) -> list[Any]:
        """The next batch: the packets that came ahead of their chain, the first message waited
        for, then what comes within linger_s."""
        taken, self.later = self.later, []
        try:
            taken.append(self.messages.get(timeout=0.05 if taken else 0.5))
        except queue.Empty:
            if taken:
                time.sleep(0.02)
            return taken
        deadline = time.monotonic() + self.linger_s
        while len(taken) < self.batch:
            left = deadline - time.monotonic()
            try:
                taken.append(self.messages.get(timeout=max(left, 0)) if left > 0 else self.messages.get_nowait())
            except queue.Empty:
                break
        return taken

    def handle(self, messages: list[Any]) -> None:
        """Ingest, one commit; then every receipt published and taken by the broker; only then
        each packet's message acknowledged."""
        datas = [bytes(m.payload) for m in messages]
        headers = [_header(data) for data in datas]
        results: list[ingest.Outcome | Problem | None] = [None] * len(messages)
        checked: list[int] = []
        for n, (message, header) in enumerate(zip(messages, headers, strict=True)):
            named = message.topic.split("/")[1] if message.topic.count("/") == 2 else ""
            sent_by = None if header is None else header.device_id
            if sent_by is not None and sent_by != named:
                results[n] = Problem("forbidden", "topic", f"a packet of {sent_by} published on {named}'s topic")
            else:
                checked.append(n)
        publish = self.signer if self.config["CHECKPOINT_AFTER_BATCH"] and self.pace.due() else None
        outcomes = ingest.accept_batch(self.db, [datas[n] for n in checked], self.limiter, publish=publish)
        for n, outcome in zip(checked, outcomes, strict=True):
            results[n] = outcome
        sent, answered = [], []
        now = time.monotonic()
        for message, header, answer in zip(messages, headers, results, strict=True):
            assert answer is not None
            result: ingest.Outcome | Problem = answer
            if _ahead(result, None if header is None else header.seq) and (
                now - self.ahead.setdefault(id(message), now) < AHEAD_WAIT_S
            ):
                self.later.append(message)  # its chain's previous packet may be in another bridge's batch
                continue
            self.ahead.pop(id(message), None)
            answered.append(message)
            device = message.topic.split("/")[1]
            seq = None if header is None else header.seq
            sent.append(self.client.publish(receipt_topic(device), receipt(seq, result), qos=1))
            if isinstance(result, Problem):
                log.info("mqtt: refused on %s: %s %s", message.topic, result.kind, result.detail)
            else:
                h = result.packet.header
                log.info("%s %s #%d: %d readings (mqtt)", "duplicate" if result.duplicate else "accepted",
                         h.device_id, h.seq, h.count)  # fmt: skip
        for info in sent:
            info.wait_for_publish(timeout=30)
        for message in answered:
            self.client.ack(message.mid, message.qos)
        self.handled += len(answered)

    def run(self) -> None:
        """Until stop(): connect (and reconnect), take batches, handle them. The session is
        kept by the broker for SESSION_S after a disconnection: a bridge started again under
        its client id gets the messages it had not acknowledged."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = SESSION_S
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30, clean_start=False,
                                  properties=session)  # fmt: skip
        self.client.loop_start()
        try:
            while not self.stopped.is_set():
                taken = self._take()
                if taken:
                    self.handle(taken)
        finally:
            self.client.loop_stop()
            self.client.disconnect()

    def stop(self) -> None:
        self.stopped.set()
