# Runs under MicroPython: a charger's session records when the journal fails once while
# one is made (a MemoryError in a fragmented heap): the record is journaled at the next
# poll, before any sample or record that follows it, never only at the next boot.

import binascii
import os

import cbor
import charger
import p256
import reading


class Board:
    def __init__(self):
        self.volts = 12.0
        self.relay_on = False

    def pilot_volts(self):
        return self.volts

    def read_token(self):
        return None

    def relay(self, on):
        self.relay_on = on


class Meter:
    def __init__(self):
        self.wh = 1000

    def read(self):
        return (self.wh, 0, 0)


class Journal:
    def readings(self):
        return []


class Runtime:
    """What the charger asks of the gateway: take() journals, or fails `fail` times."""

    def __init__(self):
        self.records = []
        self.fail = 0
        self.meter = Meter()
        self.last_registers = None
        self.journal = Journal()
        self.config = {"device_id": "charger-test"}
        self.key = p256.SigningKey(0x1234567)
        self.lent = 0

    def signing_key(self):
        return self.key

    def lend_buffer(self):
        self.lent += 1

    def take(self, encode, *args, ts=None):
        if self.fail:
            self.fail -= 1
            raise MemoryError("the test's heap")
        raw = encode(len(self.records), 1000 + len(self.records), 2, *args)
        self.records.append(cbor.decode(raw))
        return raw


def _in_fresh_folder():
    folder = "/tmp/wp-charger-" + binascii.hexlify(os.urandom(6)).decode()
    os.mkdir(folder)
    os.chdir(folder)


def _leave_folder():
    folder = os.getcwd()
    for name in os.listdir():
        os.remove(name)
    os.chdir("/tmp")
    os.rmdir(folder)


def _poll(c, now):
    try:
        c.poll(now)
    except MemoryError:
        pass


def _events(rt):
    return [r[20] for r in rt.records if r[0] == reading.KIND_SESSION]


def test_a_start_record_that_failed_is_journaled_before_any_sample():
    _in_fresh_folder()
    rt, board = Runtime(), Board()
    c = charger.Charger({"free_charging": True, "sample_s": 60}, board, rt)
    board.volts = 6.0  # state C: a vehicle ready to charge
    rt.fail = 1
    _poll(c, 1000)
    assert rt.records == []
    c.poll(1030)
    rt.meter.wh = 1200
    c.poll(1100)
    events = _events(rt)
    assert events[0] == reading.SESSION_START, events
    assert reading.SESSION_SAMPLE in events and events.count(reading.SESSION_START) == 1, events
    _leave_folder()


def test_a_stop_record_that_failed_is_journaled_before_a_new_session():
    _in_fresh_folder()
    rt, board = Runtime(), Board()
    c = charger.Charger({"free_charging": True, "sample_s": 60}, board, rt)
    board.volts = 6.0
    c.poll(1000)
    rt.meter.wh = 1500
    board.volts = 12.0  # unplugged
    rt.fail = 2  # the stop record, and its second try with the packet buffer lent
    _poll(c, 1200)
    assert _events(rt) == [reading.SESSION_START] and rt.lent == 1
    board.volts = 6.0  # plugged in again at once: the stop comes first, then a new session
    c.poll(1210)
    c.poll(1220)
    events = _events(rt)
    assert events[:3] == [reading.SESSION_START, reading.SESSION_STOP, reading.SESSION_START], events
    assert events.count(reading.SESSION_STOP) == 1, events
    _leave_folder()


def test_a_stop_record_short_of_heap_borrows_the_packet_buffer_at_once():
    _in_fresh_folder()
    rt, board = Runtime(), Board()
    c = charger.Charger({"free_charging": True, "sample_s": 60}, board, rt)
    board.volts = 6.0
    c.poll(1000)
    rt.meter.wh = 1500
    board.volts = 12.0  # unplugged: the stop record's OCMF signature finds no block once
    rt.fail = 1
    c.poll(1200)
    assert _events(rt) == [reading.SESSION_START, reading.SESSION_STOP] and rt.lent == 1
    _leave_folder()
