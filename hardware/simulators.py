"""Simulated peripherals for virtual boards, run on the host.

- `PtyLink` (and `Rs485Bus`): two pseudo-terminals joined by a relay. As the RS485 line,
  the board opens one end and the meter simulator the other; the relay can go silent
  (meter unplugged) or corrupt the meter's answers (CRC errors). As the USB console, the
  board's REPL is on one end and mpremote opens the other.
- `ModbusMeter`: an Eastron SDM120/SDM630 or a PZEM-004T v3 answering Modbus RTU
  requests (functions 0x03 and 0x04) with registers that follow a solar-production or
  household-load profile on the board's virtual clock. Its frames are checked and
  sealed with pymodbus's CRC routine, independent of the firmware's.
"""

from __future__ import annotations

import math
import os
import pty
import select
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable
from typing import Literal

from pymodbus.framer import FramerRTU

Fault = Literal["none", "silent", "corrupt"]


class PtyLink:
    """Two pseudo-terminals joined by a relay: what goes into one comes out of the other.

    Side a is where the board is (its UART, or its console); side b the far end (a meter,
    or a technician's mpremote). fault acts on what travels from b to a.
    """

    def __init__(self) -> None:
        self._board_master, board_slave = pty.openpty()
        self._meter_master, meter_slave = pty.openpty()
        for fd in (board_slave, meter_slave, self._board_master, self._meter_master):
            tty.setraw(fd)
        for fd in (self._board_master, self._meter_master):
            os.set_blocking(fd, False)  # the relay never blocks: it always sees its stop signal
        self.board_port = os.ttyname(board_slave)
        self.meter_port = os.ttyname(meter_slave)
        self._keep = (board_slave, meter_slave)  # open so the ports survive their users
        self.fault: Fault = "none"
        self.frames_to_meter = 0
        # (direction, bytes) of all traffic while a list is set: "a>b" from the board's side
        self.capture: list[tuple[str, bytes]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._board_master, self._meter_master], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 512)
                except OSError:
                    continue
                if self.capture is not None:
                    self.capture.append(("a>b" if fd == self._board_master else "b>a", data))
                if fd == self._board_master:
                    self.frames_to_meter += 1
                    if self.fault != "silent":
                        self._send(self._meter_master, data)
                elif self.fault == "none":
                    self._send(self._board_master, data)
                elif self.fault == "corrupt":
                    self._send(self._board_master, data[:-1] + bytes([data[-1] ^ 0x5A]))

    @staticmethod
    def _send(fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except OSError:
            pass  # nobody reads that end (or its buffer is full): the bytes are lost, as on a line

    def discard_to_board(self) -> None:
        """Drops bytes sent towards side a that nobody read: a board that was off never got them."""
        termios.tcflush(self._keep[0], termios.TCIFLUSH)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()  # before any fd is closed: a closed fd number is soon someone else's file
        for fd in (self._board_master, self._meter_master, *self._keep):
            os.close(fd)


Rs485Bus = PtyLink  # the RS485 line: the board's UART on side a, the meter on side b


def solar_w(day_seconds: float, peak_w: float = 3000) -> float:
    """Clear-sky production: a sine from 06:00 to 20:00."""
    hour = day_seconds / 3600
    return peak_w * math.sin(math.pi * (hour - 6) / 14) if 6 <= hour <= 20 else 0.0


def household_w(day_seconds: float, base_w: float = 300) -> float:
    """Base load with morning and evening peaks."""
    hour = day_seconds / 3600
    return base_w + 1200 * math.exp(-((hour - 7.5) ** 2)) + 1800 * math.exp(-(((hour - 19) / 1.5) ** 2))


PROFILES = {
    "solar": lambda s: -solar_w(s),  # exporting
    "household": household_w,
    "prosumer": lambda s: household_w(s) - solar_w(s),
}


class ModbusMeter:
    """A Modbus RTU meter on a pseudo-terminal, its registers driven by a power profile."""

    def __init__(
        self,
        model: str,
        port: str,
        *,
        address: int = 1,
        profile: str | None = "prosumer",
        speed: float = 1.0,
        virtual_epoch: float | None = None,
        halt_at: float | None = None,
        clock: Callable[[], float] | None = None,
        import_wh: float = 1_204_350.0,
        export_wh: float = 880_120.0,
        serial: int = 20240001,
    ) -> None:
        self.model = model
        self.address = address
        self.power_w = 0.0  # without a profile, the power stays what the test sets
        self.profile: Callable[[float], float] = PROFILES[profile] if profile else (lambda _s: self.power_w)
        self.speed = speed
        self._real0 = time.time()
        self._virtual0 = virtual_epoch if virtual_epoch is not None else self._real0
        self.halt_at = halt_at  # simulated time stops there (a run of fixed length)
        self._clock = clock  # the board's clock, when the meter follows a board
        self._last_virtual = self._virtual0
        self.import_wh = import_wh
        self.export_wh = export_wh
        self.serial = serial
        self.requests = 0
        self._fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._fd)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- time ------------------------------------------------------------------------------

    def virtual_now(self) -> float:
        if self._clock is not None:
            return self._clock()
        now = self._virtual0 + (time.time() - self._real0) * self.speed
        return now if self.halt_at is None else min(now, self.halt_at)

    def advance(self) -> None:
        """Integrates the profile's power up to the current virtual time."""
        now = self.virtual_now()
        step = 60.0
        t = self._last_virtual
        while t < now:
            dt = min(step, now - t)
            self.power_w = self.profile(t % 86400)
            if self.power_w >= 0:
                self.import_wh += self.power_w * dt / 3600
            else:
                self.export_wh -= self.power_w * dt / 3600
            t += dt
        self._last_virtual = now

    # -- registers -------------------------------------------------------------------------

    @staticmethod
    def _float_words(value: float) -> list[int]:
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        return [hi, lo]

    def registers(self) -> dict[tuple[int, int], list[int]]:
        """(function, first register) -> words, as the meter shows them now."""
        f = self._float_words
        if self.model in ("sdm120", "sdm630"):
            regs = {
                (4, 0x0048): f(self.import_wh / 1000) + f(self.export_wh / 1000),
                (4, 0x0034 if self.model == "sdm630" else 0x000C): f(self.power_w),
                (3, 0xFC00): [self.serial >> 16, self.serial & 0xFFFF],
            }
            if self.model == "sdm630":
                regs[(4, 0x000C)] = f(self.power_w / 3) * 3
                regs[(4, 0x015A)] = f(self.import_wh / 3000) * 3
            return regs
        if self.model == "pzem004t":
            power_dw = max(0, round(self.power_w * 10))
            energy = int(self.import_wh)
            return {
                (4, 0): [2301, 4350, 0, power_dw & 0xFFFF, power_dw >> 16, energy & 0xFFFF, energy >> 16, 500, 95, 0]
            }
        raise ValueError(f"unknown meter model {self.model}")

    def replace(self, serial: int, import_wh: float = 0.0, export_wh: float = 0.0) -> None:
        """A technician swaps the meter: another serial number, registers from scratch."""
        self.serial, self.import_wh, self.export_wh = serial, import_wh, export_wh

    # -- server ----------------------------------------------------------------------------

    def _answer(self, request: bytes) -> bytes | None:
        address, function = request[0], request[1]
        if address != self.address:
            return None  # another device on the bus
        first, count = struct.unpack(">HH", request[2:6])
        self.advance()
        words: dict[int, int] = {}
        for (fn, start), values in self.registers().items():
            if fn == function:
                words.update(zip(range(start, start + len(values)), values, strict=True))
        if function not in (3, 4):
            body = bytes([address, function | 0x80, 1])  # illegal function
        elif any(r not in words for r in range(first, first + count)):
            body = bytes([address, function | 0x80, 2])  # illegal data address
        else:
            data = b"".join(struct.pack(">H", words[r]) for r in range(first, first + count))
            body = bytes([address, function, len(data)]) + data
        return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                buffer = b""  # silence ends a frame
                continue
            try:
                buffer += os.read(self._fd, 256)
            except OSError:
                continue
            while len(buffer) >= 8:  # read requests are 8 bytes: address, function, 2+2, CRC
                frame, rest = buffer[:8], buffer[8:]
                if not FramerRTU.check_CRC(frame[:6], int.from_bytes(frame[6:], "big")):
                    buffer = buffer[1:]  # not a frame boundary: resynchronise
                    continue
                buffer = rest
                self.requests += 1
                answer = self._answer(frame)
                if answer is not None:
                    time.sleep(0.002)
                    PtyLink._send(self._fd, answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()  # before the fd is closed, for the same reason as PtyLink.close
        os.close(self._fd)
