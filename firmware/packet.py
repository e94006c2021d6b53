# The packet: [COSE_Sign1 header, [reading bytes, ...]] (docs/protocol.md).
# The header payload commits to the readings through their RFC 9162 Merkle root
# and to the previous header through its SHA-256, forming a per-device chain.

import hashlib

import cbor
import cose
import merkle
from micropython import const

VERSION = const(1)
MAX_READINGS = const(256)
MAX_READING_BYTES = const(240)
MAX_PACKET_BYTES = const(65536)
GENESIS = b"\x00" * 32  # "previous header hash" of a device's first packet

H_VERSION = const(1)
H_DEVICE = const(2)
H_SEQ = const(3)
H_PREV = const(4)
H_ROOT = const(5)
H_COUNT = const(6)
H_FIRST_TS = const(7)
H_LAST_TS = const(8)


def header_hash(header):
    """Chain link: SHA-256 over the complete tagged COSE_Sign1 bytes."""
    return hashlib.sha256(header).digest()


# Room in front of the readings for 0x82, the COSE_Sign1 header and the array head.
# The largest header (64-character device id, 64-bit numbers) takes 301 bytes.
HEADROOM = const(320)


class PacketBuilder:
    """Collects readings and closes them into signed packets, one chain per device.

    seq and prev are the next packet's sequence number and previous header hash;
    the caller persists them after close() to keep the chain across reboots.
    All readings live in one buffer allocated up front (a fragmented 96 KB heap
    rarely has a large free block later); capacity bounds the packet's bytes.
    """

    def __init__(self, device_id, key, seq=0, prev=GENESIS, capacity=12288, buffer=None):
        # First: the key's first use scatters small objects. A caller that must do other
        # work before (a runtime loading its key) allocates the buffer itself, early.
        self._buf = buffer if buffer is not None else bytearray(capacity)
        self.buffer = self._buf  # the caller may use it between two packets (uplink.Delivery)
        self.device_id = device_id
        self.key = key
        self.kid = cose.key_id(key.spki_der())
        self.seq = seq
        self.prev = prev
        self._reset()

    def begin(self, seq, prev):
        """Starts packet seq after prev afresh: readings of an interrupted close are dropped."""
        self.seq, self.prev = seq, prev
        self._reset()

    def _reset(self):
        self._end = HEADROOM  # readings are written from here, framed as CBOR byte strings
        self.count = 0
        self._root = merkle.RootBuilder()
        self.first_ts = None
        self.last_ts = None

    def __len__(self):
        return self.count

    def full(self):
        """True when the next reading might not fit: close() before adding more."""
        return self.count >= MAX_READINGS or len(self._buf) - self._end < MAX_READING_BYTES + 2

    def add(self, reading, ts):
        """Adds one encoded reading taken at ts. Requires not full() and ts >= the last reading's ts."""
        n = len(reading)
        if n > MAX_READING_BYTES:
            raise ValueError("packet: reading of %d bytes exceeds %d" % (n, MAX_READING_BYTES))
        if self.full():
            raise ValueError("packet: full, close it first")
        if self.last_ts is not None and ts < self.last_ts:
            raise ValueError("packet: reading time goes backwards")
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        h = cbor.head(cbor.BYTES, n)
        end = self._end
        self._buf[end : end + len(h)] = h
        end += len(h)
        self._buf[end : end + n] = reading
        self._end = end + n
        self.count += 1
        self._root.add(reading)

    def header_payload(self):
        return cbor.encode(
            {
                H_VERSION: VERSION,
                H_DEVICE: self.device_id,
                H_SEQ: self.seq,
                H_PREV: self.prev,
                H_ROOT: self._root.root(),
                H_COUNT: self.count,
                H_FIRST_TS: self.first_ts,
                H_LAST_TS: self.last_ts,
            }
        )

    def close(self):
        """Signs the collected readings and starts the next packet.

        Returns the packet as a memoryview into the builder's buffer: persist or
        send it before the next add(), which overwrites it.
        """
        if not self.count:
            raise ValueError("packet: no readings to close")
        header = cose.sign1(self.key, self.kid, self.header_payload())
        prefix = b"\x82" + header + cbor.head(cbor.ARRAY, self.count)
        start = HEADROOM - len(prefix)
        if start < 0:
            raise ValueError("packet: header larger than its headroom")
        self._buf[start:HEADROOM] = prefix
        end = self._end
        self.seq += 1
        self.prev = header_hash(header)
        self._reset()
        return memoryview(self._buf)[start:end]
