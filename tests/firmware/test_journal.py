# Runs under MicroPython: the journal numbers every reading once even when an exception
# (a MemoryError on a fragmented heap, a technician's Ctrl-C) cuts an append or a packet
# close short and the same process goes on.

import binascii
import os

import cbor
import journal
import p256
import packet
import reading

KEY = p256.SigningKey(0xBEEF)
BUILDER = packet.PacketBuilder("j-1", KEY, capacity=2048)  # one buffer, taken first
_n = [0]


class Cut(Exception):
    pass


def _folder():
    _n[0] += 1
    # MicroPython has no getpid: a random name keeps two runs at once (source, mpy) apart.
    root = "journal-test-%s-%d" % (binascii.hexlify(os.urandom(4)).decode(), _n[0])
    os.mkdir(root)
    return root


def _remove(root):
    for sub in ("out",):
        try:
            for name in os.listdir(root + "/" + sub):
                os.remove(root + "/" + sub + "/" + name)
            os.rmdir(root + "/" + sub)
        except OSError:
            pass
    for name in os.listdir(root):
        os.remove(root + "/" + name)
    os.rmdir(root)


class Points:
    """A failpoint hook that raises once at the named point."""

    def __init__(self):
        self.armed = None
        self.error = Cut  # type: type[BaseException]

    def __call__(self, name):
        if name == self.armed:
            self.armed = None
            raise self.error(name)


def _take(j, ts):
    j.append(reading.meter_interval(j.next_number(), ts, reading.TIME_SYNCHRONISED, 1000 + ts, 0))


def _numbers(j):
    out = []
    for seq in j.outbox():
        out += [cbor.decode(r)[1] for r in cbor.decode(j.packet(seq))[1]]
    return out + [cbor.decode(r)[1] for r in j.readings()]


def _journal(root, points):
    j = journal.Journal(root, 16, points)
    j.open()
    return j


def test_an_append_cut_after_the_write_is_counted_once():
    for error in (Cut, MemoryError, KeyboardInterrupt):
        root, points = _folder(), Points()
        try:
            j = _journal(root, points)
            builder = BUILDER
            _take(j, 0)
            points.armed, points.error = "reading-written", error
            try:
                _take(j, 60)
            except error:
                pass
            _take(j, 120)
            _take(j, 180)
            j.close_packet(builder)
            assert _numbers(j) == [0, 1, 2, 3], _numbers(j)
            assert j.pending == 0
        finally:
            _remove(root)


def test_a_torn_append_is_dropped_and_numbering_goes_on():
    root, points = _folder(), Points()
    try:
        j = _journal(root, points)
        _take(j, 0)
        j.unsettled = True  # as if the write below was cut halfway
        with open(root + "/" + journal.LOG, "ab") as f:
            f.write(b"\x00\x30\xa1")
        _take(j, 60)
        _take(j, 120)
        assert _numbers(j) == [0, 1, 2], _numbers(j)
        assert j.pending == 3
    finally:
        _remove(root)


def test_a_packet_close_cut_short_is_done_again_without_duplicates():
    for point in ("packet-written", "state-saved", "log-rewritten"):
        root, points = _folder(), Points()
        try:
            j = _journal(root, points)
            builder = BUILDER
            for i in range(3):
                _take(j, 60 * i)
            points.armed = point
            try:
                j.close_packet(builder)
            except Cut:
                pass
            _take(j, 180)
            if j.pending:
                j.close_packet(builder)
            numbers = _numbers(j)
            assert numbers == [0, 1, 2, 3], (point, numbers)
            # every closed packet chains to the one before
            prev = packet.GENESIS
            for seq in j.outbox():
                top = cbor.decode(j.packet(seq))
                header = cbor.decode(top[0].value[2])
                assert header[3] == seq and header[4] == prev, (point, seq)
                prev = packet.header_hash(cbor.encode(top[0]))
        finally:
            _remove(root)
