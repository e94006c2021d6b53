"""Virtual boards, driven from the host: the real firmware under the MicroPython unix port.

A virtual board is a flash folder (the board's filesystem: config, key, journal) and a
sim folder of simulated peripherals (hardware/virtual/vboard.py describes the files).
The host starts the interpreter in the flash folder, feeds the peripherals, and can cut
the power (SIGKILL) or stop the board cleanly (between two steps, as a technician's Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardware import micropython
from hardware.flash import files
from hardware.simulators import PtyLink

VMAIN = micropython.VIRTUAL / "vmain.py"
VBOOT = micropython.VIRTUAL / "vboot.py"
RESET_EXIT = 99  # vboard.RESET_EXIT: the firmware asked for a reset


def _console(path: str) -> Callable[[], None]:
    """Makes path the child's stdio, in a session of its own, in raw mode: Ctrl-C arrives as a
    byte, which the virtual board acts on between steps (vboard.py). It is not made the
    controlling terminal: no signal should come from it, and a board restarted after a power
    cut could not take it over from the dead one's session."""

    def setup() -> None:
        os.setsid()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~(termios.ISIG | termios.ICANON | termios.ECHO)  # Ctrl-C is a byte (vboard.py)
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        for n in (0, 1, 2):
            os.dup2(fd, n)

    return setup


def clock_at(real: float, real0: float, virtual0: float, speed: float, halt: float | None) -> float:
    """A virtual board's clock at host time real: virtual0 at real0, speed times faster, and at
    real speed past halt (the end of a fixed-length run: vboard.py keeps the same clock)."""
    now = virtual0 + (real - real0) * speed
    if halt is not None and now > halt:
        now = halt + real - (real0 + (halt - virtual0) / speed)
    return now


class VirtualBoard:
    def __init__(
        self,
        root: Path,
        config: dict[str, Any] | None,
        *,
        speed: float = 1.0,
        virtual_epoch: int | None = None,
        firmware: Path | None = None,
        heap: str = micropython.ESP32_HEAP,
        ntp: bool = True,
        halt_at: int | None = None,
        clock_from_boot: bool = False,
    ) -> None:
        """halt_at: the board's clock stops there. clock_from_boot: its clock starts at
        virtual_epoch when the firmware first reads it, not when this object is made (the
        interpreter's start-up, a fraction of a second, is minutes of simulated time at high
        speed): with both, a run covers the same simulated span every time."""
        self.flash = root / "flash"
        self.sim = root / "sim"
        self.flash.mkdir(parents=True, exist_ok=True)
        self.sim.mkdir(parents=True, exist_ok=True)
        self.firmware = firmware or micropython.compiled_firmware()
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        self.console_link: PtyLink | None = None
        self.log = root / "console.log"
        if config is not None:  # None: a blank board, for provisioning to configure
            (self.flash / files.CONFIG).write_text(json.dumps(config))
        self._powered = False
        self._power_lock = threading.Lock()  # a restart and a power cut never cross
        self._supervisor: threading.Thread | None = None
        self.boots = 0
        self.speed = speed
        now = time.time()
        self.real_epoch: float | None = None if clock_from_boot else now
        self.virtual_epoch = virtual_epoch or int(now)
        previous = self.sim / "clock.json"
        if previous.exists():
            # The same board again: its clock kept running while it was off and never goes back.
            old = json.loads(previous.read_text())
            ran_to = (
                clock_at(now, old["real"], old["virtual"], old["speed"], old.get("halt"))
                if old["real"]
                else old["virtual"]
            )
            self.virtual_epoch = max(self.virtual_epoch, int(ran_to) + 1)
        self.halt_at = halt_at
        clock = {"real": self.real_epoch or 0, "virtual": self.virtual_epoch, "speed": speed, "halt": halt_at}
        self._write("clock.json", json.dumps(clock))
        if ntp:
            self._write("ntp", "pool.ntp.org")
        (self.sim / "s0.pulses").touch()

    def _write(self, name: str, text: str) -> None:
        tmp = self.sim / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(self.sim / name)

    def virtual_now(self) -> float:
        """The board's clock, as the host sees it."""
        if self.real_epoch is None:  # it starts when the firmware first reads it (vboard.py)
            try:
                self.real_epoch = json.loads((self.sim / "clock.json").read_text())["real"] or None
            except (OSError, ValueError):
                pass
            if self.real_epoch is None:
                return float(self.virtual_epoch)
        return clock_at(time.time(), self.real_epoch, self.virtual_epoch, self.speed, self.halt_at)

    # -- power -----------------------------------------------------------------------------

    def start(self, steps: int | None = None, console: PtyLink | None = None) -> None:
        """Powers the board on: the firmware boots and runs its loop (steps bounds it).

        With a console link, the board's stdio is its side a, as on a USB serial port, and
        mpremote opens side b; Ctrl-C from there stops the loop and leaves the REPL.
        """
        (self.sim / "stop").unlink(missing_ok=True)
        args = [str(self.sim)] + ([str(steps)] if steps is not None else [])
        (self.sim / "console").unlink(missing_ok=True)
        if console is not None:
            self.console_link = console
            (self.sim / "console").write_text("1")
            self.proc = subprocess.Popen(
                [micropython.interpreter(), "-X", f"heapsize={self.heap}", "-i", str(VMAIN), *args],
                cwd=self.flash,
                env=micropython.environment(self.firmware),
                preexec_fn=_console(console.board_port),
            )
            return
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                micropython.command(VMAIN, *args, heap=self.heap),
                cwd=self.flash,
                env=micropython.environment(self.firmware),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def power_on(self, console: PtyLink) -> None:
        """Powers on a board as it comes from the factory or from provisioning: vboot.py runs
        main.py from the flash if there is one, else the REPL waits on the console. The
        firmware is whatever was copied into the flash (mpremote cp), not the build folder.
        When the interpreter ends (a reset, a crash), it is started again, as a board does."""
        self.console_link = console
        self._powered = True
        self._boot("power-on")
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def _boot(self, cause: str) -> None:
        assert self.console_link is not None
        self._write("reset_cause", cause)
        (self.sim / "console").write_text("1")
        (self.sim / "stop").unlink(missing_ok=True)
        self.console_link.discard_to_board()
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join((".frozen", ".", "lib", str(micropython.VIRTUAL)))
        self.proc = subprocess.Popen(
            [micropython.interpreter(), "-X", f"heapsize={self.heap}", "-i", str(VBOOT), str(self.sim)],
            cwd=self.flash,
            env=env,
            preexec_fn=_console(self.console_link.board_port),
        )
        self.boots += 1

    def _supervise(self) -> None:
        while self._powered:
            proc = self.proc
            if proc is None:
                return
            code = proc.wait()
            if not self._powered or self.proc is not proc:
                return
            time.sleep(0.2)  # a board takes a moment to come back
            with self._power_lock:
                if self._powered and self.proc is proc:
                    self._boot("soft" if code == RESET_EXIT else f"panic (exit {code})")

    def power_off(self) -> None:
        """The power goes: no restart follows."""
        self.cut_power()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)

    def cut_power(self) -> None:
        """SIGKILL: the interpreter stops wherever it is, as a board does when power fails.
        A board started by power_on stays off until power_on again."""
        with self._power_lock:
            self._powered = False
            proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it started: its own session and group
            proc.wait()

    def stop(self, timeout: float = 10) -> int:
        """A clean stop, as Ctrl-C at the REPL, at a point between two steps. Returns the exit code.

        The board is asked through the sim folder rather than by SIGINT: a signal can land
        inside the interpreter's garbage collector, which leaves its heap locked.
        """
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self._write("stop", "now")
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGINT)
                code = self.proc.wait(timeout=timeout)
        else:
            code = self.proc.returncode
        (self.sim / "stop").unlink(missing_ok=True)
        self.proc = None
        return code

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- peripherals -----------------------------------------------------------------------

    def pulse(self, count: int) -> None:
        """count S0 pulses from the meter."""
        with open(self.sim / "s0.pulses", "ab") as f:
            f.write(b"\x01" * count)
            f.flush()
            os.fsync(f.fileno())

    def pulses_sent(self) -> int:
        return (self.sim / "s0.pulses").stat().st_size

    def set_pilot(self, volts: float) -> None:
        self._write("pilot", str(volts))

    def present_token(self, token: str) -> None:
        self._write("token", token)

    def relay(self) -> bool:
        path = self.sim / "relay"
        return path.exists() and path.read_text() == "1"

    def set_uart(self, device: str) -> None:
        self._write("uart", device)

    def set_flash_size(self, size: int) -> None:
        self._write("flash_bytes", str(size))

    def arm_failpoint(self, name: str) -> None:
        """The board freezes when the firmware reaches failpoint name (then cut_power())."""
        (self.sim / "failpoint.hit").unlink(missing_ok=True)
        self._write("failpoint", name)

    def failpoint_hit(self) -> bool:
        return (self.sim / "failpoint.hit").exists()

    def console(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
