"""A serial link to a board's MicroPython raw REPL, through mpremote's own transport.

Every failure becomes a BoardError whose message tells the technician what to do. The
board runs short snippets and the firmware's `commission` functions, which answer with
one line of JSON.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

# USB-to-serial bridges found on ESP32 boards: Espressif's own, Silicon Labs CP210x, WCH CH34x, FTDI.
USB_VIDS = {0x303A: "Espressif", 0x10C4: "Silicon Labs", 0x1A86: "WCH", 0x0403: "FTDI"}


# A read that waits longer than this means the board is gone (mpremote's raw-paste writes
# otherwise wait for the board's flow control forever).
READ_TIMEOUT_S = 10

# Restarts a board (ESP32: machine.reset; the virtual board: its interpreter exits with the
# code its host restarts it on), skipping the gateway once. Needs no firmware on the board.
RESET_SAFELY = """
import os, sys
try:
    os.stat('main.py')
    open('safe.boot', 'w').close()
except OSError:
    pass
if sys.platform == 'linux':
    raise SystemExit(99)
import machine
machine.reset()
"""


class BoardError(Exception):
    """Something about the board or its port that the technician must act on."""


def resolve_ports(specs: list[str]) -> list[tuple[str, str]]:
    """(port path, serial number or "") for each --port: a path, `auto` (every board
    attached: USB bridges of ESP32 boards and running virtual boards), or `id:SERIAL`."""
    from serial.tools import list_ports

    from hardware.sim import virtual_boards

    attached = [(p.device, p.serial_number or "") for p in list_ports.comports() if p.vid in USB_VIDS]
    attached += [(v["port"], v["serial"]) for v in virtual_boards()]
    out: list[tuple[str, str]] = []
    for spec in specs:
        if spec == "auto":
            if not attached:
                raise BoardError("no board found: plug one in (USB), or start a virtual board")
            out += [a for a in attached if a not in out]
        elif spec.startswith("id:"):
            wanted = spec[3:]
            found = [a for a in attached if a[1] == wanted]
            if not found:
                known = ", ".join(a[1] for a in attached if a[1]) or "none"
                raise BoardError(f"no board with serial number {wanted} is attached (attached: {known})")
            out += [f for f in found if f not in out]
        else:
            serial_number = next((a[1] for a in attached if a[0] == spec), "")
            if (spec, serial_number) not in out:
                out.append((spec, serial_number))
    return out


def port_holders(port: str) -> str:
    """Other processes that have the serial port open ("pid 123 (mpremote)"), from /proc; ""
    where nothing else holds it or /proc cannot tell."""
    from hardware.sim import virtual_boards

    boards = {str(v["pid"]) for v in virtual_boards()}  # a virtual board keeps its own line open
    try:
        target = os.path.realpath(port)
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid() or pid in boards:
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                if any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        name = os.path.basename(f.read().split(b"\0")[0].decode(errors="replace"))
                    if not name:  # a kernel thread, or a process between fork and exec
                        with open(f"/proc/{pid}/comm", "rb") as f:
                            name = f.read().decode(errors="replace").strip()
                    found.append(f"pid {pid} ({name})")
            except OSError:
                continue
        return ", ".join(found)
    except OSError:
        return ""


class BoardLink:
    """An open raw-REPL session with one board. Use as a context manager."""

    def __init__(self, port: str, enter_timeout: float = 10) -> None:
        self.port = port
        self.step = "connecting"
        try:
            mode = os.stat(port).st_mode
        except OSError:
            raise BoardError(
                f"no board at {port}: check the USB cable (`--port auto` lists what is attached)"
            ) from None
        if not stat.S_ISCHR(mode):
            raise BoardError(f"{port} is not a serial port")
        try:
            self.transport = SerialTransport(port, baudrate=115200, timeout=READ_TIMEOUT_S)
        except TransportError:
            raise BoardError(
                f"{port} is busy: another program has it open (mpremote, a serial monitor, another provisioning run)"
            ) from None
        try:
            self._enter(enter_timeout)
        except (TransportError, serial.SerialException, OSError) as e:
            self.close()
            holders = port_holders(port)
            if holders:
                raise BoardError(
                    f"{port} is busy: {holders} has it open too (another wattproof, mpremote or a serial"
                    " monitor): let it finish or stop it, then try again"
                ) from None
            raise BoardError(
                f"the board on {port} does not answer at its REPL ({e}): is MicroPython flashed? "
                "Press its reset button and try again"
            ) from None

    def _enter(self, timeout: float) -> None:
        """The raw REPL, and a first command answered as expected. A board that is still
        booting, or output left over from an earlier session, can put stray prompts in the
        input; entering again (which drains it) and retrying gets past them."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.transport.serial.reset_input_buffer()  # what an earlier session left unread
                # Short attempts, again and again: Ctrl-C sent while a board restarts is lost
                # (its UART starts empty), and one long attempt would wait on it to the end.
                self._raw_repl(min(2.0, max(1.0, deadline - time.monotonic())))
                out, err = self.transport.exec_raw("print('wattproof' + '-sync')", timeout=5)
                if out.strip() == b"wattproof-sync" and not err:
                    return
            except TransportError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TransportError("the board's answers are garbled")
            time.sleep(0.2)
            self.transport.in_raw_repl = False

    def _raw_repl(self, seconds: float) -> None:
        """Ctrl-C, then Ctrl-A, and the raw REPL's banner within seconds (mpremote's
        enter_raw_repl without its soft reset, its print, and its one long wait)."""
        port = self.transport.serial
        port.write(b"\r\x03")
        while port.in_waiting:
            port.read(port.in_waiting)
        port.write(b"\r\x01")
        banner = b"raw REPL; CTRL-B to exit\r\n"
        port.timeout = min(seconds, 0.5)  # a pty's reads block this long each
        try:
            data = self.transport.read_until(1, banner, timeout=seconds, timeout_overall=seconds)
        finally:
            port.timeout = READ_TIMEOUT_S
        if not data.endswith(banner):
            raise TransportError("could not enter raw repl")
        self.transport.in_raw_repl = True

    def __enter__(self) -> BoardLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is None:
            return
        try:
            if transport.in_raw_repl:
                transport.exit_raw_repl()
        except (OSError, serial.SerialException):
            pass
        try:
            transport.close()
        except (OSError, serial.SerialException):
            pass
        self.transport = None

    def _lost(self, e: BaseException) -> BoardError:
        return BoardError(f"the board on {self.port} stopped answering during {self.step} ({e})")

    def run(self, code: str, timeout: float = 60) -> str:
        """Runs code at the raw REPL; its printed output. An exception on the board is a BoardError."""
        try:
            out, err = self.transport.exec_raw(code, timeout=timeout)
        except (TransportError, serial.SerialException, OSError) as e:
            raise self._lost(e) from None
        if err:
            text = err.decode(errors="replace").strip()
            raise BoardError(f"the board failed during {self.step}: {text.splitlines()[-1] if text else ''}")
        return bytes(out).decode(errors="replace")

    def call(self, function: str, *args: Any, timeout: float = 60, **kwargs: Any) -> dict[str, Any]:
        """commission.function(*args, **kwargs) on the board; its JSON answer."""
        params = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        out = self.run(f"import commission\ncommission.{function}({params})", timeout)
        for line in reversed(out.strip().splitlines()):
            if line.startswith("{"):
                answer: dict[str, Any] = json.loads(line)
                return answer
        raise BoardError(f"the board gave no answer to {function} during {self.step}: {out.strip()[-200:]}")

    def write_file(self, path: str, data: bytes, progress: Callable[[int, int], None] | None = None) -> None:
        """Writes path on the board atomically: to path.tmp, then renamed."""
        try:
            self.transport.fs_writefile(path + ".tmp", data, progress_callback=progress)
        except (TransportError, TransportExecError, serial.SerialException, OSError) as e:
            raise self._lost(e) from None
        self.run(f"import os\nos.rename({path + '.tmp'!r}, {path!r})")

    def read_file(self, path: str) -> bytes | None:
        out = self.run(
            f"import binascii\ntry:\n f = open({path!r}, 'rb')\nexcept OSError:\n print('none')\nelse:\n"
            " print(binascii.hexlify(f.read()).decode())\n f.close()"
        ).strip()
        return None if out == "none" else bytes.fromhex(out)

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        """SHA-256 (hex) of each file on the board, None where it is missing: one round trip."""
        code = (
            "import binascii, hashlib, json\n"
            "def h(p):\n"
            " try:\n  f = open(p, 'rb')\n except OSError:\n  return None\n"
            " d = hashlib.sha256()\n"
            " while True:\n  b = f.read(512)\n  if not b:\n   break\n  d.update(b)\n"
            " f.close()\n return binascii.hexlify(d.digest()).decode()\n"
            f"print(json.dumps({{p: h(p) for p in {paths!r}}}))"
        )
        answer: dict[str, str | None] = json.loads(self.run(code).strip().splitlines()[-1])
        return answer

    def mkdirs(self, folders: list[str]) -> None:
        if folders:
            names = sorted(set(folders))
            self.run(f"import os\nfor d in {names!r}:\n try:\n  os.mkdir(d)\n except OSError:\n  pass")

    def remove(self, path: str) -> None:
        self.run(f"import os\ntry:\n os.remove({path!r})\nexcept OSError:\n pass")

    def restart_clean(self, timeout: float = 20) -> None:
        """Restarts the board without starting its gateway (safe.boot), for a clean heap at the
        REPL: a long session, or an interrupted gateway, leaves it fragmented."""
        step, self.step = self.step, "restarting the board"
        try:
            self.transport.exec_raw_no_follow(RESET_SAFELY)
        except (TransportError, serial.SerialException, OSError) as e:
            raise self._lost(e) from None
        self.close()
        deadline = time.monotonic() + timeout
        time.sleep(0.3)
        while True:
            try:
                self.transport = SerialTransport(self.port, baudrate=115200, timeout=READ_TIMEOUT_S)
                self._enter(5)
                break
            except (TransportError, serial.SerialException, OSError) as e:
                self.close()
                if time.monotonic() > deadline:
                    raise BoardError(f"the board on {self.port} did not come back after a restart ({e})") from None
                time.sleep(0.5)
        self.step = step

    def reset(self) -> None:
        """Restarts the board so that main.py runs; the link is closed."""
        try:
            self.transport.exec_raw_no_follow("import commission\ncommission.reset()")
        except (TransportError, serial.SerialException, OSError):
            pass
        self.close()
