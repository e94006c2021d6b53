# Board layer for an ESP32 (see board.py for the interface). Pins, UART and timing
# come from the board profile in config.json.

import os
import time

import machine

_WDT_MS = 120000  # a stuck sampling loop restarts the board within two minutes


class _Rs485:
    """Half-duplex UART with a driver-enable pin high while transmitting."""

    def __init__(self, cfg):
        self.uart = machine.UART(
            cfg.get("uart", 2), baudrate=cfg.get("baud", 9600), tx=cfg["tx"], rx=cfg["rx"], timeout=0
        )
        de = cfg.get("de")
        self.de = machine.Pin(de, machine.Pin.OUT, value=0) if de is not None else None

    def write(self, data):
        if self.de:
            self.de.value(1)
        self.uart.write(data)
        self.uart.flush()  # wait until the last stop bit is out before releasing the bus
        if self.de:
            self.de.value(0)

    def read(self, n, timeout_ms):
        out = b""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while len(out) < n and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            chunk = self.uart.read(n - len(out))
            if chunk:
                out += chunk
            else:
                time.sleep_ms(2)
        return out


class Board:
    def __init__(self, profile):
        self.profile = profile
        self._wdt = None  # armed by the first feed(): the loop's, not a technician's session
        self._pulses = 0
        self._debounce_ms = 20
        self._last_edge = time.ticks_ms()
        self._s0 = None
        self._relay = None
        self._adc = None

    def time(self):
        # MicroPython on the ESP32 counts from 2000-01-01 unless built with the Unix epoch.
        t = time.time()
        return t + 946684800 if t < 946684800 else t

    def sync_time(self):
        import ntptime

        before = self.time()
        try:
            ntptime.settime()
        except OSError:
            return None
        return self.time() - before

    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def feed(self):
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=_WDT_MS)  # cannot be stopped once started
        self._wdt.feed()

    def set_time(self, epoch):
        """Sets the RTC (UTC) to Unix seconds epoch."""
        t = time.gmtime(epoch - 946684800 if time.gmtime(0)[0] == 2000 else epoch)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    def reset(self):
        machine.reset()

    def uart(self, cfg):
        return _Rs485(cfg)

    def _pulse(self, _pin):
        # Interrupt handler: no allocation. An edge within debounce_ms of the last counted
        # one is contact bounce (S0 pulses are at least 30 ms wide, EN 62053-31).
        now = time.ticks_ms()
        if time.ticks_diff(now, self._last_edge) >= self._debounce_ms:
            self._pulses += 1
            self._last_edge = now

    def s0_start(self, counted):
        meter = self.profile["meter"]
        self._debounce_ms = meter.get("debounce_ms", 20)
        self._last_edge = time.ticks_add(time.ticks_ms(), -self._debounce_ms)
        pin = meter["pin"]
        self._s0 = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._s0.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._pulse)

    def s0_take(self):
        state = machine.disable_irq()
        n, self._pulses = self._pulses, 0
        machine.enable_irq(state)
        return n

    def pilot_volts(self):
        if self._adc is None:
            self._adc = machine.ADC(machine.Pin(self.profile["charger"]["pilot_adc"]))
            self._adc.atten(machine.ADC.ATTN_11DB)
        # The pilot front end divides +12 V..-12 V onto 0..3.3 V around 1.65 V.
        mv = self._adc.read_uv() / 1000
        return (mv - 1650) * 12 / 1650

    def relay(self, on):
        if self._relay is None:
            self._relay = machine.Pin(self.profile["charger"]["relay"], machine.Pin.OUT, value=0)
        self._relay.value(1 if on else 0)

    def read_token(self):
        return None  # the RFID reader driver is board-specific; none is fitted on the profiles yet

    def reset_cause(self):
        return {
            machine.PWRON_RESET: "power-on",
            machine.HARD_RESET: "hard",
            machine.WDT_RESET: "watchdog",
            machine.DEEPSLEEP_RESET: "deep-sleep",
            machine.SOFT_RESET: "soft",
        }.get(machine.reset_cause(), "unknown")

    def flash_free(self):
        st = os.statvfs("/")
        return st[0] * st[3]

    def failpoint(self, name):
        pass
