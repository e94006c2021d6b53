# Store-and-forward on the board's filesystem (littlefs on the ESP32, a folder on the
# virtual board). Power may be cut at any instant; the rules that keep every reading
# exactly once:
#
#   1. A reading is taken once its record in readings.log is complete and flushed
#      ([2-byte length][reading][first 4 bytes of its SHA-256]). A torn tail from a power
#      cut is dropped at boot; the meter's registers are cumulative, so no energy is lost.
#   2. Closing a packet writes out/<seq>.pkt (temporary name, then rename), then
#      state.cbor (seq, prev, last packed reading number; also by rename), then clears the
#      log. A crash between the steps is repaired at boot from the packet file itself.
#   3. A packet file is removed only after the verifier acknowledged it.
#
# See docs/journal.md for the flash budget and the policy when the journal is full.

import hashlib
import os

import cbor
import packet
from files import JOURNAL_LOG as LOG
from files import JOURNAL_OUT as OUT
from files import JOURNAL_STATE as STATE
from files import PACKET_SUFFIX


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def write_atomic(path, data):
    """Replaces path with data so that a power cut leaves either the old or the new file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _check(reading):
    return hashlib.sha256(reading).digest()[:4]


def _records(f):
    """Yields each whole record's reading bytes from file f; stops at a torn or corrupt tail.

    f.tell() after a yield is the end of that record.
    """
    while True:
        head = f.read(2)
        if len(head) < 2:
            return
        size = (head[0] << 8) | head[1]
        body = f.read(size + 4)
        if size == 0 or len(body) < size + 4 or _check(body[:size]) != body[size:]:
            return
        yield body[:size]


def reading_number(reading):
    return cbor.decode(reading)[1]


def packet_tail(data):
    """(header bytes, last reading number) of stored packet bytes."""
    top = cbor.decode(data)
    return cbor.encode(top[0]), reading_number(top[1][-1])


class Journal:
    """The board's durable queue: pending readings, closed packets, chain state."""

    def __init__(self, root=".", max_packets=128, failpoint=None):
        self.root = root
        self.max_packets = max_packets
        # failpoint(name): the board layer's fault-injection hook (a no-op on hardware).
        self.failpoint = failpoint or (lambda name: None)
        self.seq = 0
        self.prev = packet.GENESIS
        self.last_packed = -1  # number of the last reading inside a closed packet
        self.out_first = 0  # the oldest packet not yet acknowledged (== seq when none waits)
        self.pending = 0  # readings taken but not yet in a packet (they stay in readings.log)
        self.first_ts = None  # time of the oldest pending reading
        self.pending_bytes = 0  # their size framed as in a packet
        self.last_number = -1  # number of the newest reading taken
        self.repaired = []  # what recovery had to do at boot, for the device log
        # True from before a change to flash until the counters above match it again: an
        # exception in between (MemoryError, a Ctrl-C) leaves them unknown, so the next use
        # counts them again from flash rather than number a reading twice.
        self.unsettled = False

    def _path(self, *parts):
        return "/".join((self.root,) + parts)

    # -- boot --------------------------------------------------------------------------

    def open(self):
        """Loads state and repairs what a power cut left behind. Call once at boot."""
        if not exists(self._path(OUT)):
            os.mkdir(self._path(OUT))
        try:
            state = cbor.decode(read_file(self._path(STATE)))
            self.seq, self.prev, self.last_packed = state["seq"], state["prev"], state["last"]
        except OSError:
            pass
        # The outbox is a range of sequence numbers: packets close in order and are
        # acknowledged in order. It is read from flash once, here, and kept as two numbers.
        n = len(PACKET_SUFFIX)
        stored = sorted(int(name[:-n]) for name in os.listdir(self._path(OUT)) if name.endswith(PACKET_SUFFIX))
        self.out_first = stored[0] if stored else self.seq
        # Rule 2: a packet at or past the saved seq was closed but state was not yet saved.
        for seq in stored:
            if seq >= self.seq:
                header, last = packet_tail(read_file(self._packet_path(seq)))
                self.seq, self.prev, self.last_packed = seq + 1, packet.header_hash(header), last
                self._save_state()
                self.repaired.append("state advanced to packet %d" % seq)
        self._load_log()

    def _load_log(self):
        """Counts the pending readings; drops a torn tail and readings already packed."""
        self.pending, self.first_ts, self.last_number, self.pending_bytes = 0, None, self.last_packed, 0
        kept = stale = 0
        try:
            size = os.stat(self._path(LOG))[6]
        except OSError:
            return
        with open(self._path(LOG), "rb") as f:
            good_end = 0
            for reading in _records(f):
                good_end = f.tell()
                if reading_number(reading) <= self.last_packed:
                    stale += 1
                    continue
                kept += 1
        if good_end != size or stale:
            if good_end != size:
                self.repaired.append("dropped a torn reading record (%d bytes)" % (size - good_end))
            if stale:
                self.repaired.append("dropped %d readings already in a packet" % stale)
            self._rewrite_log()
        for reading in self.readings():
            self._count(reading)

    def readings(self):
        """The pending readings, oldest first, read back from flash."""
        try:
            f = open(self._path(LOG), "rb")
        except OSError:
            return
        with f:
            for reading in _records(f):
                if reading_number(reading) > self.last_packed:
                    yield reading

    def _rewrite_log(self):
        tmp = self._path(LOG) + ".tmp"
        with open(tmp, "wb") as out:
            for reading in self.readings():
                out.write(self._record(reading))
        self.failpoint("log-rewritten")
        os.rename(tmp, self._path(LOG))

    def _count(self, reading):
        decoded = cbor.decode(reading)
        if self.first_ts is None:
            self.first_ts = decoded[2]
        self.last_number = decoded[1]
        self.pending += 1
        self.pending_bytes += len(reading) + 3

    @staticmethod
    def _record(reading):
        n = len(reading)
        return bytes((n >> 8, n & 0xFF)) + reading + _check(reading)

    def _save_state(self):
        write_atomic(self._path(STATE), cbor.encode({"seq": self.seq, "prev": self.prev, "last": self.last_packed}))

    # -- readings ----------------------------------------------------------------------

    def settle(self):
        """Counts the pending readings again from flash if a change was interrupted."""
        if self.unsettled:
            self._load_log()  # also drops a torn record a broken append left
            self.unsettled = False

    def next_number(self):
        self.settle()
        return self.last_number + 1

    def append(self, reading):
        """Makes reading durable (rule 1). When this returns, the reading is taken."""
        self.settle()
        record = self._record(reading)
        self.unsettled = True
        with open(self._path(LOG), "ab") as f:
            f.write(record)
            f.flush()
        self.failpoint("reading-written")
        self._count(reading)
        self.unsettled = False

    # -- packets -----------------------------------------------------------------------

    def _packet_path(self, seq):
        return self._path(OUT, "%010d" % seq + PACKET_SUFFIX)

    def outbox(self):
        """Sequence numbers of closed packets not yet acknowledged, in order (no allocation)."""
        return range(self.out_first, self.seq)

    def full(self):
        return self.seq - self.out_first >= self.max_packets

    def close_packet(self, builder):
        """Signs the oldest pending readings into packet seq (rule 2): as many as fit, up to a
        backward step of the clock."""
        self.settle()
        self.unsettled = True
        builder.begin(self.seq, self.prev)
        last = self.last_packed
        for reading in self.readings():
            decoded = cbor.decode(reading)  # once: number and time both come from it
            ts = decoded[2]
            if builder.full() or (builder.last_ts is not None and ts < builder.last_ts):
                break  # a packet ends where the clock stepped back (a reboot before time sync)
            builder.add(reading, ts)
            last = decoded[1]
        data = builder.close()
        write_atomic(self._packet_path(self.seq), data)
        self.failpoint("packet-written")
        self.seq, self.prev, self.last_packed = builder.seq, builder.prev, last
        self._save_state()
        self.failpoint("state-saved")
        self._rewrite_log()  # keeps what did not fit
        self.pending = self.pending_bytes = 0
        self.first_ts = None
        for reading in self.readings():
            self._count(reading)
        self.unsettled = False
        return self.seq - 1

    def packet(self, seq, buffer=None):
        """Packet seq's bytes; with buffer (a bytearray as large as any packet), read into it
        and returned as a view of it: sending needs no block of its own."""
        path = self._packet_path(seq)
        if buffer is None or os.stat(path)[6] > len(buffer):  # (closed with a larger packet_bytes)
            return read_file(path)
        with open(path, "rb") as f:
            n = f.readinto(buffer)
        return memoryview(buffer)[:n]

    def acknowledge(self, seq):
        """The verifier holds packet seq (rule 3)."""
        self.failpoint("acknowledging")
        try:
            os.remove(self._packet_path(seq))
        except OSError:
            pass
        if seq == self.out_first:
            self.out_first += 1

    def depth(self):
        """(readings not yet in a packet, packets not yet acknowledged)."""
        return self.pending, self.seq - self.out_first
