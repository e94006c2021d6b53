# An EV charging point: the IEC 61851-1 control-pilot state machine, the contactor
# relay, and charging-session records (start, samples, stop) with the meter register,
# the session id, the connector and a keyed hash of the ID token. The stop record
# carries the session's OCMF signature (ocmf.py), made with the device key.
#
# A session survives a reboot: session.cbor is written before each start or stop
# record and marked "logged" after it. At boot, a record not marked logged is looked
# up among the pending readings (no packet can close between the two writes), so each
# start and stop is journaled exactly once.

import binascii
import os

import cbor
import journal
import reading
from files import SESSION
from files import TOKEN_SALT as SALT
from micropython import const

# Control-pilot states from the high level of the pilot voltage.
A = const(1)  # +12 V: no vehicle
B = const(2)  # +9 V: vehicle connected, not ready
C = const(3)  # +6 V: vehicle ready to charge
D = const(4)  # +3 V: ready, ventilation required
E = const(5)  # 0 V: pilot shorted or no power
F = const(6)  # -12 V: charging point not available
STATE_NAMES = {A: "A", B: "B", C: "C", D: "D", E: "E", F: "F"}

# Stop reasons (docs/protocol.md).
STOP_VEHICLE = const(1)  # the vehicle stopped charging (C or D to B)
STOP_UNPLUGGED = const(2)  # the cable was pulled (to A)
STOP_FAULT = const(3)  # pilot fault (E or F)


def pilot_state(volts):
    if volts > 10.5:
        return A
    if volts > 7.5:
        return B
    if volts > 4.5:
        return C
    if volts > 1.5:
        return D
    if volts > -1.5:
        return E
    return F


class Charger:
    def __init__(self, cfg, board, runtime):
        self.board = board
        self.runtime = runtime
        self.connector = cfg.get("connector", 1)
        self.sample_s = cfg.get("sample_s", 300)
        self.free_charging = cfg.get("free_charging", False)
        # The operator's token key for this charger (docs/charging.md): without it, the
        # token hash is salted with a secret of the board's own and cannot be billed.
        key = cfg.get("token_key")
        self.token_key = binascii.unhexlify(key) if key else None
        self.state = None
        self.token_hash = None  # authorisation waiting for a vehicle
        self.next_sample = 0
        try:
            self.salt = journal.read_file(SALT)
        except OSError:
            self.salt = os.urandom(16)  # per device, never leaves the board
            journal.write_atomic(SALT, self.salt)
        try:
            self.session = cbor.decode(journal.read_file(SESSION))
        except OSError:
            self.session = None
        if self.session is not None:
            self._finish_interrupted_record()

    # -- records -------------------------------------------------------------------------

    def _save(self):
        journal.write_atomic(SESSION, cbor.encode(self.session))

    def _log(self):
        """Journals the start or stop record of self.session, then marks it logged."""
        s = self.session
        assert s is not None
        if s["phase"] == "start":
            raw = self.runtime.take(
                reading.session_event, reading.SESSION_START, s["id"], self.connector, s["start_wh"], s.get("token")
            )
        else:
            try:
                raw = self.runtime.take(self._stop_reading)
            except MemoryError:
                # The OCMF code and its signature need a few KB at once: lend them the packet
                # buffer (a boot that finishes an interrupted stop record has the least heap).
                self.runtime.lend_buffer()
                raw = self.runtime.take(self._stop_reading)
        self._mark_logged(cbor.decode(raw))

    def _stop_reading(self, number, ts, quality):
        # The OCMF record's end is this reading: its number (the pagination), time and quality.
        # ocmf is loaded for the stop only and let go after it: its code is heap the loop
        # and the uplink need between two sessions.
        import sys

        import ocmf

        s = self.session
        text = ocmf.payload(
            self.runtime.config["device_id"],
            number,
            s.get("token"),
            (s["start_ts"], s["start_quality"], s["start_wh"]),
            (ts, quality, s["stop_wh"]),
        )
        signature = ocmf.sign(self.runtime.signing_key(), text)
        sys.modules.pop("ocmf", None)
        return reading.session_event(
            number,
            ts,
            quality,
            reading.SESSION_STOP,
            s["id"],
            self.connector,
            s["stop_wh"],
            None,
            s["reason"],
            signature,
        )

    def _mark_logged(self, record):
        assert self.session is not None
        if self.session["phase"] == "stop":
            os.remove(SESSION)
            self.session = None
        else:
            self.session["logged"] = True
            self.session["start_ts"] = record[2]  # what the OCMF record's begin says
            self.session["start_quality"] = record[3]
            self._save()

    def _finish_interrupted_record(self):
        s = self.session
        assert s is not None
        if s["logged"]:
            return
        event = reading.SESSION_START if s["phase"] == "start" else reading.SESSION_STOP
        for raw in self.runtime.journal.readings():
            r = cbor.decode(raw)
            if r[0] == reading.KIND_SESSION and r[20] == event and r[21] == s["id"]:
                self._mark_logged(r)  # it was journaled just before the power went
                return
        self._log()

    def _register(self):
        try:
            return self.runtime.meter.read()[0]
        except OSError:
            last = self.runtime.last_registers
            return last[0] if last else 0

    # -- the state machine -----------------------------------------------------------------

    def poll(self, now):
        state = pilot_state(self.board.pilot_volts())
        token = self.board.read_token()
        if token is not None:
            if self.token_key is not None:
                self.token_hash = reading.keyed_token_hash(self.token_key, token)
            else:
                self.token_hash = reading.token_hash(self.salt, token)
        if state == A:
            self.token_hash = None  # an authorisation ends when the vehicle leaves
        if self.session is not None and not self.session["logged"]:
            # A start or stop record that did not reach the journal (a MemoryError while it
            # was made): journaled now, before any sample or record that follows it.
            self._log()
        active = self.session is not None and self.session["phase"] == "start"
        if active and state not in (C, D):
            self._stop(STOP_UNPLUGGED if state == A else STOP_VEHICLE if state == B else STOP_FAULT)
        elif not active and state in (C, D) and (self.token_hash is not None or self.free_charging):
            self._start(now)
        elif active and now >= self.next_sample:
            self.runtime.take(
                reading.session_event, reading.SESSION_SAMPLE, self.session["id"], self.connector, self._register()
            )
            self.next_sample = self._aligned(now)
        self.board.relay(self.session is not None and state in (C, D))
        self.state = state

    def _start(self, now):
        self.session = {
            "phase": "start",
            "id": os.urandom(16),
            "start_wh": self._register(),
            "token": self.token_hash,
            "logged": False,
        }
        self._save()
        self._log()
        self.token_hash = None
        self.next_sample = self._aligned(now)

    def _aligned(self, now):
        # Samples fall on the clock's sample_s grid (as clock-aligned meter values do in
        # OCPP), not sample_s after the start: every session's samples line up with the
        # readings and with other chargers'.
        return (now // self.sample_s + 1) * self.sample_s

    def _stop(self, reason):
        assert self.session is not None
        self.session.update({"phase": "stop", "stop_wh": self._register(), "reason": reason, "logged": False})
        self._save()
        self.board.relay(False)
        self._log()

    def status(self):
        s = self.session
        return {
            "pilot": STATE_NAMES[self.state] if self.state is not None else "?",
            "session": None if s is None else s["id"],
            "relay": s is not None and self.state in (C, D),
        }
