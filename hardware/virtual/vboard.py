# Runs under MicroPython (unix port): the board layer of the virtual board (see
# firmware/board.py for the interface). The simulated peripherals are files in the
# folder SIM that the host-side simulators (hardware/simulators.py) write:
#
#   clock.json    {"real": host epoch, "virtual": board epoch, "speed": x}: board time runs
#                 x times faster than the host's, and keeps running across power cuts
#   ntp           present: time sync succeeds; absent: the network has no time server
#   clock_offset  seconds the board's own clock is off until it syncs (e.g. -300: 5 min slow)
#   s0.pulses     one byte appended per S0 pulse; pulses the board has not counted when
#                 its power is cut are still there when it restarts
#   pilot         the control-pilot voltage, e.g. "9.0"
#   relay         written by the board: "1" contactor closed, "0" open
#   token         an ID token presented at the reader (the board consumes the file)
#   flash_bytes   size of the simulated flash, for the full-flash policy
#   uart          path of the pseudo-terminal wired to the RS485 bus
#   stop          written by the host for a clean stop: the board stops as on Ctrl-C, between steps
#   console       present when stdin is the board's console (a pseudo-terminal that mpremote
#                 reaches): Ctrl-C (0x03) read there stops the loop between steps, as the
#                 ESP32's scheduled keyboard interrupt does. The terminal does not turn it
#                 into SIGINT: the unix port raises from the signal handler, wherever the
#                 interpreter is, and a stop inside the garbage collector crashed it later.
#   failpoint     a failpoint name (firmware/journal.py): when the firmware reaches it, the
#                 board writes failpoint.hit and freezes, for the host to cut its power there

import json
import os
import select
import termios
import time

SIM = "sim"  # set by the virtual board's entry point


RESET_EXIT = 99  # the exit code that asks the host to start the board again


def _write(name, text):
    with open(SIM + "/" + name, "w") as f:
        f.write(text)


def flash_free():
    """Free bytes of the simulated flash (its size is the sim folder's flash_bytes)."""
    return int(_read("flash_bytes", "4194304")) - _tree_size(".")


def _read(name, default=None):
    try:
        with open(SIM + "/" + name) as f:
            return f.read().strip()
    except OSError:
        return default


class _Pty:
    """The RS485 bus as a pseudo-terminal in raw mode."""

    def __init__(self, path):
        self.f = open(path, "r+b")
        termios.setraw(self.f.fileno())
        self.poll = select.poll()
        self.poll.register(self.f, select.POLLIN)

    def write(self, data):
        self.f.write(data)

    def read(self, n, timeout_ms):
        out = b""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while len(out) < n:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or not self.poll.poll(left):
                break
            out += self.f.read(1)
        return out


class Board:
    def __init__(self, profile):
        self.profile = profile
        clock = json.loads(_read("clock.json", '{"real": 0, "virtual": 0, "speed": 1}'))
        self._real0 = clock["real"]
        self._clock = clock  # without "real": the clock starts at its first reading (time())
        self._virtual0 = clock["virtual"]  # 0: the host's time at the start
        self.speed = clock["speed"]
        self._halt = clock.get("halt")  # simulated time slows to real time there (a run of fixed length)
        self._offset = int(_read("clock_offset", "0"))
        self._s0_seen = 0
        self._console = None
        if _read("console") is not None:
            import sys

            self._stdin = sys.stdin.buffer
            self._console = select.poll()
            self._console.register(0, select.POLLIN)

    def time(self):
        real = time.time()
        if not self._real0:  # the first reading: the clock starts now and runs on across resets
            self._real0 = self._clock["real"] = real
            self._virtual0 = self._clock["virtual"] = self._virtual0 or real
            _write("clock.json.tmp", json.dumps(self._clock))
            os.rename(SIM + "/clock.json.tmp", SIM + "/clock.json")
        now = self._virtual0 + (real - self._real0) * self.speed
        if self._halt is not None and now > self._halt:
            # Past the end of a fixed-length run the clock runs at real speed: no more
            # readings are due for a minute, while retries and the last delivery go on.
            now = self._halt + real - (self._real0 + (self._halt - self._virtual0) / self.speed)
        return int(now) + self._offset

    def sync_time(self):
        """The host's clock is the time server: syncing removes the offset."""
        if _read("ntp") is None:
            return None
        step, self._offset = -self._offset, 0
        return step

    def set_time(self, epoch):
        """Sets the board's clock (its RTC, which keeps time across resets)."""
        self._offset += int(epoch) - self.time()
        _write("clock_offset", str(self._offset))

    def reset(self):
        """A hard reset: the interpreter exits and the host starts it again (vboot.py)."""
        raise SystemExit(RESET_EXIT)

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):
        wait = max(1, int(ms / self.speed))
        if self._console is None:
            time.sleep_ms(wait)
        elif self._console.poll(wait):
            # One byte at a time up to the Ctrl-C: what follows it (mpremote's Ctrl-A for the
            # raw REPL) stays for the REPL.
            while self._console.poll(0):
                if self._stdin.read(1) == b"\x03":
                    raise KeyboardInterrupt
        try:
            os.remove(SIM + "/stop")  # the host asks for a clean stop, at this safe point
        except OSError:
            return
        raise KeyboardInterrupt

    def feed(self):
        pass  # the host notices a hung board by its output; there is no hardware watchdog

    def uart(self, cfg):
        return _Pty(_read("uart") or cfg["device"])

    def s0_start(self, counted):
        self._s0_seen = counted

    def s0_take(self):
        try:
            size = os.stat(SIM + "/s0.pulses")[6]
        except OSError:
            return 0
        n = size - self._s0_seen
        self._s0_seen = size
        return max(0, n)

    def pilot_volts(self):
        return float(_read("pilot", "12.0"))

    def relay(self, on):
        _write("relay", "1" if on else "0")

    def read_token(self):
        token = _read("token")
        if token is None:
            return None
        os.remove(SIM + "/token")
        return token.encode()

    def reset_cause(self):
        return _read("reset_cause", "power-on")

    def failpoint(self, name):
        if _read("failpoint") != name:
            return
        os.remove(SIM + "/failpoint")  # one shot: the next boot runs through
        with open(SIM + "/failpoint.hit", "w") as f:
            f.write(name)
        while True:
            time.sleep(1)

    def flash_free(self):
        return flash_free()


def _tree_size(path):
    total = 0
    for name, kind, *_ in os.ilistdir(path):
        sub = path + "/" + name
        if kind == 0x4000:
            total += _tree_size(sub)
            continue
        try:
            total += os.stat(sub)[6]
        except OSError:
            pass  # gone since the listing (the host shares this folder): it takes no room
    return total
