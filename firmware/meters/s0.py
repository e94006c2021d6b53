# S0 pulse meter (EN 62053-31): the board counts pulses, pulses_per_kwh of them per kWh.
# The pulse total is saved (atomically) before the reading that uses it is taken, so a
# power cut never makes the register go back, and a pulse counted is never counted again.

import cbor
import journal
from files import S0_STATE as STATE


class S0:
    def __init__(self, cfg, board, root="."):
        self.board = board
        self.per_kwh = cfg.get("pulses_per_kwh", 1000)
        self.path = root + "/" + STATE
        try:
            self.pulses = cbor.decode(journal.read_file(self.path))["pulses"]
        except OSError:
            self.pulses = 0
        board.s0_start(self.pulses)
        self._last_time = board.time()
        self._last_pulses = self.pulses

    def read(self):
        new = self.board.s0_take()
        now = self.board.time()
        if new:
            self.pulses += new
            journal.write_atomic(self.path, cbor.encode({"pulses": self.pulses}))
        # Average power since the last reading: pulses per second times Wh per pulse.
        elapsed = max(1, now - self._last_time)
        power = (self.pulses - self._last_pulses) * 3600000 // (self.per_kwh * elapsed)
        self._last_time, self._last_pulses = now, self.pulses
        return self.pulses * 1000 // self.per_kwh, 0, int(power)

    def identity(self):
        # A pulse output says nothing of its meter: this names its kind, not the meter.
        return "s0-%d" % self.per_kwh

    def serial(self):
        return None
