# HTTP/1.1 POST of packets to the verifier, over TLS when the URL says https.
# One request per connection keeps the board's state machine trivial.

import socket


class UplinkError(OSError):
    pass


def _split_url(url):
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https"):
        raise UplinkError("uplink: unsupported URL " + url)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), "/" + path


def _connect(scheme, host, port, timeout, ca):
    if scheme == "https" and ca is None:
        # Unverified TLS would let anyone on the path pose as the verifier and make the
        # board delete packets it never delivered.
        raise UplinkError("uplink: https needs the verifier's CA certificate (ca.der on the board)")
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    s = socket.socket()
    try:
        s.settimeout(timeout)
        s.connect(addr)
        if scheme == "https":
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # in 1.29, not in the stubs
            ctx.load_verify_locations(cadata=ca)
            return ctx.wrap_socket(s, server_hostname=host)
    except BaseException:
        s.close()
        raise
    return s


def post(url, body, content_type="application/cbor", timeout=10, ca=None):
    """POSTs body (bytes or memoryview); returns (status, response body bytes).

    ca: DER bytes of the CA certificate that must have signed the server's (https only).
    """
    scheme, host, port, path = _split_url(url)
    s = _connect(scheme, host, port, timeout, ca)
    try:
        s.write(
            (
                "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (path, host, content_type, len(body))
            ).encode()
        )
        s.write(body)
        line = s.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise UplinkError("uplink: bad status line")
        status = int(parts[1])
        length = -1
        while True:
            line = s.readline()
            if not line or line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        answer = s.read(length) if length >= 0 else s.read()
        return status, answer or b""
    finally:
        s.close()


class Delivery:
    """Sends closed packets from the journal in order, oldest first.

    A packet is deleted only when the verifier holds it: 201 accepted, 200 duplicate, or
    a sequence conflict whose expected_seq is past it. Anything else (network down, 5xx,
    device not enrolled yet, a refusal) keeps it and waits, doubling the wait up to
    max_s with jitter so that thousands of boards do not retry in step.
    """

    def __init__(self, url, journal, base_s=5, max_s=600, batch=8, ca=None):
        self.url = url + "/v1/packets"
        self.ca = ca
        self.journal = journal
        self.base_s = base_s
        self.max_s = max_s
        self.batch = batch
        self.failures = 0
        self.next_try = 0
        # The packet buffer while no packet is being built (Runtime: None while it is lent):
        # packets are read into it to be sent, so a send needs no large block of its own.
        self.buffer = None
        self.last = "none yet"  # last result, for status()
        self.last_time = None

    def release(self):
        """Lets go of what the uplink keeps between two services (HTTP keeps nothing)."""

    def _wait(self):
        import os

        span = min(self.max_s, self.base_s * (1 << min(self.failures, 16)))
        return span // 2 + span * os.urandom(1)[0] // 512  # jitter: 50 % to 100 % of span

    def service(self, now):
        """Sends up to batch packets if the backoff allows; returns how many the verifier took."""
        if now < self.next_try:
            return 0
        taken = 0
        outbox = self.journal.outbox()
        for seq in outbox[: self.batch]:
            verdict = self._send(seq)
            self.last_time = now
            if verdict is None:
                taken += 1
                continue
            self.failures += 1
            self.next_try = now + self._wait()
            self.last = verdict
            return taken
        self.failures = 0
        return taken

    def _send(self, seq):
        """None when the verifier holds packet seq (and it was removed); else what went wrong."""
        try:
            status, answer = post(self.url, self.journal.packet(seq, self.buffer), ca=self.ca)
        except OSError as e:
            return "packet %d: network: %s" % (seq, e)
        return settle(self, seq, status, _problem(answer))


def settle(delivery, seq, status, detail):
    """The verifier's answer to packet seq, by HTTP status (over MQTT, the receipt carries the
    same): None when it holds the packet, which is then removed; else what went wrong."""
    if status in (200, 201):
        delivery.journal.acknowledge(seq)
        delivery.last = "packet %d %s" % (seq, "accepted" if status == 201 else "duplicate")
        return None
    if status == 409 and detail.get("expected_seq", -1) > seq:
        delivery.journal.acknowledge(seq)  # the verifier has it: our earlier answer was lost
        delivery.last = "packet %d already held by the verifier" % seq
        return None
    return "packet %d: HTTP %d %s" % (seq, status, detail.get("type", "").rsplit("/", 1)[-1])


class MqttDelivery(Delivery):
    """The same delivery over MQTT: each packet published at QoS 1 to the device's own topic
    (wattproof/<device>/packet), the verifier's receipt awaited on wattproof/<device>/receipt.
    The broker's PUBACK only says the broker has it: a packet leaves the journal when its
    receipt says the verifier holds it, by the rule HTTP answers follow. A receipt lost with a
    broken connection costs a second publication, which the verifier answers as a duplicate."""

    def __init__(self, broker, device_id, journal, base_s=5, max_s=600, batch=8, ca=None, password=None,
                 wait_s=15):  # fmt: skip
        Delivery.__init__(self, broker, journal, base_s, max_s, batch, ca)
        self.url = broker
        self.device_id = device_id
        self.password = password
        self.wait_s = wait_s
        self.client = None
        self.topic = "wattproof/%s/packet" % device_id
        self.receipts = "wattproof/%s/receipt" % device_id

    def _connected(self):
        if self.client is None:
            import mqtt

            client = mqtt.Client(self.device_id, self.url, self.device_id, self.password, ca=self.ca)
            client.connect()
            try:
                client.subscribe(self.receipts)
            except OSError:
                client.close()
                raise
            self.client = client
        return self.client

    def _drop(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    release = _drop  # its connection: the socket, TLS and buffers live between services

    def service(self, now):
        if now < self.next_try:
            return 0
        outbox = self.journal.outbox()[: self.batch]
        if not outbox:
            return 0
        taken = 0
        problem = None
        try:
            client = self._connected()
            for seq in outbox:
                client.publish(self.topic, self.journal.packet(seq, self.buffer))
            waiting = list(outbox)
            while waiting:
                got = client.message(self.wait_s)
                if got is None:
                    problem = problem or "packet %d: no receipt within %d s" % (waiting[0], self.wait_s)
                    break
                receipt = _problem(got[1])
                seq = receipt.get("seq")
                if seq not in waiting:
                    continue  # a receipt of an earlier publication: its packet was settled then
                waiting.remove(seq)
                verdict = settle(self, seq, receipt.get("status", 0), receipt.get("answer") or {})
                if verdict is None:
                    taken += 1
                else:
                    problem = problem or verdict
        except OSError as e:
            self._drop()
            problem = "network: %s" % e
        self.last_time = now
        if problem is None:
            self.failures = 0
            return taken
        self.failures += 1
        self.next_try = now + self._wait()
        self.last = problem
        return taken


def _problem(answer):
    import json

    try:
        detail = json.loads(answer)
        return detail if isinstance(detail, dict) else {}
    except ValueError:
        return {}
