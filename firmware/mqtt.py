# A small MQTT 3.1.1 client for the board, in the spirit of micropython-lib's umqtt.simple:
# CONNECT (with the device's own user name and password), SUBSCRIBE, PUBLISH at QoS 1 and
# its PUBACK, the broker's QoS 1 messages acknowledged, PINGREQ, DISCONNECT. Blocking, one
# socket, no thread: the gateway's loop calls it between two readings. Over TLS when the URL
# says mqtts, with the broker's CA on the board (never unverified).

import select
import socket
import struct
import time


class MQTTError(OSError):
    pass


def split_url(url):
    scheme, _, rest = url.partition("://")
    if scheme not in ("mqtt", "mqtts"):
        raise MQTTError("mqtt: unsupported URL " + url)
    host, _, port = rest.partition("/")[0].partition(":")
    return scheme, host, int(port) if port else (8883 if scheme == "mqtts" else 1883)


def _string(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _length(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


class Client:
    def __init__(self, client_id, url, user=None, password=None, keepalive=120, timeout=10, ca=None):
        self.client_id = client_id
        self.scheme, self.host, self.port = split_url(url)
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.timeout = timeout
        self.ca = ca
        self.sock = None
        self.pid = 0
        self.inbox = []  # (topic, payload) of messages that came while waiting for something else

    def connect(self):
        if self.scheme == "mqtts" and self.ca is None:
            raise MQTTError("mqtt: mqtts needs the broker's CA certificate (ca.der on the board)")
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        s = socket.socket()
        try:
            s.settimeout(self.timeout)
            s.connect(addr)
            if self.scheme == "mqtts":
                import ssl

                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # in 1.29, not in the stubs
                ctx.load_verify_locations(cadata=self.ca)
                s = ctx.wrap_socket(s, server_hostname=self.host)
        except BaseException:
            s.close()
            raise
        self.sock = s
        flags = 0x02  # a clean session: what was not answered is sent again, and answered again
        payload = _string(self.client_id)
        if self.user is not None:
            flags |= 0x80
            payload += _string(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _string(self.password)
        head = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", self.keepalive)
        self._send(0x10, head + payload)
        kind, body, _ = self._read()
        if kind != 0x20 or len(body) != 2 or body[1] != 0:
            self.close()
            raise MQTTError("mqtt: connection refused (code %d)" % (body[1] if len(body) == 2 else -1))

    def close(self):
        if self.sock is not None:
            try:
                self._send(0xE0, b"")
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def _send(self, first, body, payload=b""):
        """A control packet: body, then payload written as it is (a packet of up to 12 KB is
        never copied into a second buffer: the heap has no room for it beside the journal's)."""
        if self.sock is None:
            raise MQTTError("mqtt: not connected")
        self.sock.write(bytes((first,)) + _length(len(body) + len(payload)))
        if body:
            self.sock.write(body)
        if payload:
            self.sock.write(payload)

    def _exactly(self, n):
        if self.sock is None:
            raise MQTTError("mqtt: not connected")
        data = b""
        while len(data) < n:
            part = self.sock.read(n - len(data))
            if not part:
                raise MQTTError("mqtt: connection closed by the broker")
            data += part
        return data

    def _read(self):
        """One control packet: (its first byte's type bits, its body)."""
        first = self._exactly(1)[0]
        n, shift = 0, 0
        while True:
            byte = self._exactly(1)[0]
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first & 0xF0, (self._exactly(n) if n else b""), first

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def _wait_for(self, kind, pid):
        """Reads until the acknowledgement kind of pid comes; a message meanwhile is kept."""
        while True:
            got, body, first = self._read_any()
            if got == kind and len(body) >= 2 and struct.unpack("!H", body[:2])[0] == pid:
                return body

    def _read_any(self):
        got, body, first = self._read()
        if got == 0x30:
            self._take(first, body)
        return got, body, first

    def _take(self, first, body):
        n = struct.unpack("!H", body[:2])[0]
        topic = body[2 : 2 + n]
        rest = body[2 + n :]
        if first & 0x06:  # QoS 1 (we subscribe at 1): acknowledge it, then keep it
            pid = rest[:2]
            rest = rest[2:]
            self._send(0x40, pid)
        self.inbox.append((bytes(topic), bytes(rest)))

    def subscribe(self, topic):
        pid = self._next_pid()
        self._send(0x82, struct.pack("!H", pid) + _string(topic) + b"\x01")
        body = self._wait_for(0x90, pid)
        if body[2:3] == b"\x80":
            raise MQTTError("mqtt: subscription to %s refused" % topic)

    def publish(self, topic, payload):
        """QoS 1: returns once the broker holds the message (PUBACK)."""
        pid = self._next_pid()
        self._send(0x32, _string(topic) + struct.pack("!H", pid), payload)
        self._wait_for(0x40, pid)

    def ping(self):
        self._send(0xC0, b"")
        while self._read_any()[0] != 0xD0:
            pass

    def message(self, timeout):
        """The next message that came in (topic, payload), waiting up to timeout seconds; None
        if none came."""
        if self.inbox:
            return self.inbox.pop(0)
        if self.sock is None:
            raise MQTTError("mqtt: not connected")
        # Waits by polling, not by a socket timeout: MicroPython's TLS socket has no
        # settimeout, and a timeout in the middle of a TLS record would lose its place. The
        # TLS socket answers poll for the bytes its own buffer holds as well.
        waiting = select.poll()
        waiting.register(self.sock, select.POLLIN)
        deadline = time.ticks_add(time.ticks_ms(), int(timeout * 1000))
        while not self.inbox:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or not waiting.poll(left):
                return None
            self._read_any()
        return self.inbox.pop(0)
