# The gateway's main loop: sample the meter, journal each reading, close packets every
# N readings or T seconds, deliver them, and keep the charger's sessions.
#
# Device events: boot (with the reset cause), power loss (the running marker was still
# there at boot), clock set (a sync that stepped the clock), meter fault (no answer,
# registers that went back, a different meter), and journal full when coalesced
# intervals end (see docs/journal.md).

import gc
import os

import journal
import p256
import packet
import reading
import uplink
from files import CA_CERT, COMMISSION, COMMISSIONED, KEY, METER_ID, PUBLIC_KEY, RUNNING
from meters import MeterError, make

FIRMWARE_VERSION = "0.2.0"


class Runtime:
    """The gateway. Constructing it boots the board: journal repair, events, clock, meter."""

    def __init__(self, config, board):
        self.config = config
        self.board = board
        # The packet buffer is the one large block: take it before anything fragments the heap.
        self.builder = None
        self._take_buffer()
        self.journal = journal.Journal(".", config["max_packets"], board.failpoint)
        self.journal.open()
        try:
            ca = journal.read_file(config.get("ca_cert", CA_CERT))
        except OSError:
            ca = None
        self.delivery: uplink.Delivery
        if config["transport"] == "mqtt":  # the profile's choice: packets over MQTT, receipts back
            self.delivery = uplink.MqttDelivery(
                config["broker"], config["device_id"], self.journal, config["backoff_s"], config["backoff_max_s"],
                ca=ca, password=config.get("mqtt_password"),
            )  # fmt: skip
        else:
            self.delivery = uplink.Delivery(
                config["verifier"], self.journal, config["backoff_s"], config["backoff_max_s"], ca=ca
            )
        self._take_buffer()  # lends the buffer to the uplink: idle between two closes, sends read into it
        self.last_reading = None  # (number, ts, import_wh, export_wh, power_w)
        self.sample_ts = None  # the time of the sample being taken
        self.heap_peak = 0  # most heap in use after a collection, over all steps
        self.memory_errors = 0
        self.closed = 0  # packets closed since boot, and the milliseconds they took
        self.close_ms_total = 0
        self.close_ms_max = 0
        self.last_registers = None
        self.meter_fault = None
        self.coalesced = 0
        self.last_sync = None  # board time of the last successful sync
        self.next_sync = 0
        lost_power = journal.exists(RUNNING)
        journal.write_atomic(RUNNING, b"")
        self.sync_clock()  # first, so the boot's events carry the best time there is
        self.booted_at = board.time()
        if lost_power:
            self.event(reading.EVENT_POWER_LOSS, "power lost while running")
        self.event(reading.EVENT_BOOT, "fw %s reset %s" % (FIRMWARE_VERSION, board.reset_cause()))
        for note in self.journal.repaired:
            self.event(reading.EVENT_POWER_LOSS, note[:64])
        self.meter = make(config["meter"], board)
        self._check_meter_identity()
        self.charger = None
        if config.get("charger"):
            import charger

            self.charger = charger.Charger(config["charger"], board, self)
        self.next_sample = board.time()  # a reading at boot, then on the interval grid
        self.commissioning = journal.exists(COMMISSION)
        gc.collect()

    def lend_buffer(self):
        """Lets the packet buffer go for one operation that needs the heap more (a fragmented
        heap: no free block as large as the request although the total free is); the next
        packet to close takes it back (close_packet)."""
        self.builder = None
        self.delivery.buffer = None
        gc.collect()

    def _take_buffer(self):
        if self.builder is None:
            buffer = bytearray(self.config["packet_bytes"])
            self.builder = packet.PacketBuilder(self.config["device_id"], self._key(), buffer=buffer)
        delivery = getattr(self, "delivery", None)
        if delivery is not None:  # the uplink reads the packets it sends into it
            delivery.buffer = self.builder.buffer

    def signing_key(self):
        """The device key packets are signed with now (the charger signs OCMF records with it).
        While the packet buffer is lent (step), the key is read from flash: a signature must
        not wait for 12 KB of contiguous heap."""
        if self.builder is not None:
            return self.builder.key
        return self._key()

    def _key(self):
        try:
            return p256.SigningKey.from_bytes(journal.read_file(KEY))
        except OSError:
            key = p256.SigningKey.generate()  # born here, never leaves the board
            journal.write_atomic(KEY, key.to_bytes())
            journal.write_atomic(PUBLIC_KEY, key.public_key())
            return key

    def sync_clock(self):
        """Sets the clock from the network; a step of 2 s or more is a clock-set event."""
        pending_before = self.journal.pending
        step = self.board.sync_time()
        now = self.board.time()
        self.next_sync = now + (self.config["sync_s"] if step is not None else 600)
        if step is None:
            return
        self.last_sync = now
        if step >= 2 or step <= -2:
            if step < 0 and pending_before:
                self.close_packet()  # readings before a backward step go in their own packet
            self.event(reading.EVENT_CLOCK_SET, "clock stepped", step)

    def time_quality(self):
        """Synchronised within the last day; informative if it was once; unknown if never."""
        if self.last_sync is None:
            return reading.TIME_UNKNOWN
        if self.board.time() - self.last_sync > 86400:
            return reading.TIME_INFORMATIVE
        return reading.TIME_SYNCHRONISED

    def _check_meter_identity(self):
        try:
            identity = self.meter.identity()
        except MeterError as e:
            self._meter_failed(e)
            return
        try:
            known = journal.read_file(METER_ID).decode()
        except OSError:
            known = None
        if known != identity:
            if known is not None:
                self.event(reading.EVENT_METER_FAULT, ("meter replaced: %s" % identity)[:64])
            journal.write_atomic(METER_ID, identity.encode())

    # -- readings ------------------------------------------------------------------------

    def take(self, encode, *args, ts=None):
        """Journals one reading built by encode(number, ts, quality, *args).

        ts defaults to the time of the sample being taken, if any, else now: every record of
        one sample carries the same time, so time never goes back between them.
        """
        if ts is None:
            ts = self.sample_ts if self.sample_ts is not None else self.board.time()
        raw = encode(self.journal.next_number(), ts, self.time_quality(), *args)
        self.journal.append(raw)
        return raw

    def event(self, code, detail=None, value=None):
        self.take(reading.device_event, code, detail, value)

    def _meter_failed(self, error):
        if self.meter_fault is None:
            self.event(reading.EVENT_METER_FAULT, str(error)[:64])
        self.meter_fault = str(error)

    def sample(self):
        self.sample_ts = self.board.time()  # when the meter is asked: its registers are of that instant
        try:
            self._sample(self.sample_ts)
        finally:
            self.sample_ts = None

    def _sample(self, ts):
        try:
            imp, exp, power = self.meter.read()
        except MeterError as e:
            self._meter_failed(e)
            return
        if self.meter_fault is not None:
            self.meter_fault = None
            self._check_meter_identity()
        last = self.last_registers
        if last is not None and (imp < last[0] or exp < last[1]):
            self.event(reading.EVENT_METER_FAULT, "registers went back", imp - last[0])
        if self._journal_full():
            self.coalesced += 1  # the meter keeps the total; this interval merges into the next
            return
        if self.coalesced:
            self.event(reading.EVENT_JOURNAL_FULL, "intervals coalesced", self.coalesced)
            self.coalesced = 0
        self.take(reading.meter_interval, imp, exp, power, ts=ts)
        self.last_registers = (imp, exp)
        self.last_reading = (self.journal.last_number, ts, imp, exp, power)

    def _journal_full(self):
        j = self.journal
        room = self.config["packet_bytes"] - packet.HEADROOM
        backlog_full = j.full() or self.board.flash_free() < self.config["flash_reserve"]
        # While the backlog is full, keep a margin of pending space for session and device events.
        return backlog_full and j.pending_bytes > room // 2

    # -- packets and delivery --------------------------------------------------------------

    def close_packet(self):
        try:
            self._take_buffer()  # lent after a MemoryError (step, the charger's stop record)
        except MemoryError:
            # Small blocks that live between steps (the uplink's connection) sit where the
            # buffer was: let the connection go (the uplink opens a new one) and try again.
            self.delivery.release()
            gc.collect()
            self._take_buffer()
        t0 = self.board.ticks_ms()
        seq = self.journal.close_packet(self.builder)
        ms = self.board.ticks_ms() - t0
        self.closed += 1
        self.close_ms_total += ms
        self.close_ms_max = max(self.close_ms_max, ms)
        gc.collect()
        return seq

    def packet_due(self, now):
        j = self.journal
        if not j.pending or j.full():
            return False
        room = self.config["packet_bytes"] - packet.HEADROOM - packet.MAX_READING_BYTES
        return (
            j.pending >= self.config["packet_readings"]
            or j.pending_bytes >= room
            or now - j.first_ts >= self.config["packet_seconds"]
        )

    def step(self):
        """One pass of the loop; returns milliseconds until something is due."""
        self.board.feed()
        self.journal.settle()  # a step cut short by an exception left its counts unknown
        now = self.board.time()
        interval = self.config["interval_s"]
        if now >= self.next_sync:
            self.sync_clock()
            now = self.board.time()
            if self.next_sample > now + self.config["interval_s"]:
                self.next_sample = now  # the clock stepped back: sample on the new time
        if now >= self.next_sample:
            self.sample()
            # The next on the clock's interval grid (12:01:00, 12:02:00 ...): intervals line up
            # with the hour and with other meters; one missed while busy or off is skipped.
            self.next_sample = (now // interval + 1) * interval
        # A MemoryError in the charger or while a packet closes must not stop the packets and
        # the delivery of this step: the board would measure forever and send nothing.
        if self.charger is not None:
            try:
                self.charger.poll(now)
            except MemoryError:
                self.memory_errors += 1
                gc.collect()
        try:
            while self.packet_due(now):
                self.close_packet()
        except MemoryError:
            self.memory_errors += 1  # the readings wait in the journal; the next boot packs them
            gc.collect()
        if self.commissioning and self.journal.pending and self.last_reading is not None:
            self.close_packet()  # the first reading goes out at once
            self.delivery.next_try = 0
        try:
            try:
                self.delivery.service(now)
            except MemoryError:
                # A fragmented heap: no free block is as large as the request although the
                # total free is. The packet buffer is the largest block: lend it to the
                # uplink for one more try; the next packet to close takes it back.
                self.lend_buffer()
                self.delivery.service(now)
        except Exception as e:  # noqa: BLE001 - a fault in delivery must never stop the measuring
            self.delivery.last = "uplink fault: %s" % e
            self.delivery.next_try = now + 60
        if self.commissioning and self.journal.seq and not self.journal.pending and not len(self.journal.outbox()):
            os.rename(COMMISSION, COMMISSIONED)
            self.commissioning = False
        gc.collect()
        self.heap_peak = max(self.heap_peak, gc.mem_alloc())
        wait_s = self.next_sample - self.board.time()
        if self.charger is not None:
            wait_s = min(wait_s, 1)
        return max(0, min(wait_s, 5)) * 1000

    def run(self, steps=None):
        """The main loop. steps bounds it for tests; None runs until interrupted."""
        import wattproof

        wattproof.RUNTIME = self
        self._take_buffer()
        n = 0
        try:
            while steps is None or n < steps:
                try:
                    wait = self.step()
                except MemoryError:
                    # The journal has every reading taken: collect and go on rather than stop.
                    gc.collect()
                    self.memory_errors += 1
                    wait = 1000
                self.board.sleep_ms(wait)
                n += 1
        finally:
            self.stop()

    def stop(self):
        """A clean stop (Ctrl-C from a technician, the end of a test) is not a power loss."""
        try:
            os.remove(RUNNING)
        except OSError:
            pass
        # The REPL that follows a stop gets the packet buffer's block (the open packet's
        # readings are in the journal; run() takes a new buffer).
        self.lend_buffer()

    def flush(self):
        """Closes the pending readings into a packet and sends what waits, now."""
        self._take_buffer()
        if self.journal.pending:
            self.close_packet()
        self.delivery.next_try = 0
        self.delivery.service(self.board.time())
