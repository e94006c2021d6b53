"""Virtual-board jobs run from the host: the firmware itself runs under MicroPython."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardware import micropython
from verifier.wire import cose
from verifier.wire.packet import MAX_READINGS

MAKE_PACKETS = micropython.VIRTUAL / "make_packets.py"


class SimError(RuntimeError):
    pass


def make_packets(
    out: Path,
    readings: int,
    packets: int = 1,
    key_hex: str = "",
    start_ts: int = 1795000000,
    heap: str = micropython.ESP32_HEAP,
    device_id: str = "sample-meter-1",
) -> list[Path]:
    """Builds packets with the firmware under MicroPython into out; returns their paths in order.

    Also writes out/device-key.sec1. Without key_hex the key is born on the virtual board.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = micropython.run(
        MAKE_PACKETS, str(out), str(readings), str(packets), key_hex, str(start_ts), device_id, heap=heap
    )
    if result.returncode != 0:
        raise SimError(f"firmware failed under MicroPython:\n{result.stdout}{result.stderr}")
    return [out / f"packet-{i:04d}.cbor" for i in range(packets)]


def sample_packet(readings: int, out: Path) -> tuple[Path, Path]:
    """Writes out/packet.cbor and out/device-key.pub.pem (PEM SubjectPublicKeyInfo)."""
    if not 1 <= readings <= MAX_READINGS:
        raise SimError(f"--readings must be 1..{MAX_READINGS}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        (built,) = make_packets(Path(tmp), readings)
        packet_path = out / "packet.cbor"
        packet_path.write_bytes(built.read_bytes())
        point = (Path(tmp) / "device-key.sec1").read_bytes()
    key_path = out / "device-key.pub.pem"
    key_path.write_text(pem_public_key(point))
    return packet_path, key_path


def pem_public_key(point: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        cose.public_key_from_point(point)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


PROFILES = Path(__file__).resolve().parent / "profiles"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.json"))


# A board profile's keys, in two kinds. What the firmware reads from config.json (see
# firmware/config.py and hardware/profiles/README.md) is copied into the board's
# configuration; the rest describes the profile to people and to the simulators and
# stays on the host. This is the one list: provisioning and virtual boards both use it.
BOARD_CONFIG_KEYS = (
    "meter",  # the meter driver and its wiring
    "charger",  # an EV charging point's pilot, relay, connector and sample period
    "interval_s",
    "packet_readings",
    "packet_seconds",
    "packet_bytes",
    "max_packets",
    "flash_reserve",
    "backoff_s",
    "backoff_max_s",
    "sync_s",
    "ca_cert",
    "transport",  # "http" (the default) or "mqtt": packets published to the broker
    "broker",  # mqtt://host:port or mqtts://host:port, with transport "mqtt"
)
PROFILE_ONLY_KEYS = ("name", "board", "description", "virtual", "micropython")


def load_profile(name: str) -> dict[str, Any]:
    """A profile of hardware/profiles by name, or a profile file (a site's own) by path."""
    path = Path(name) if name.endswith(".json") else PROFILES / f"{name}.json"
    if not path.exists():
        raise SimError(f"unknown profile {name!r}; profiles: {', '.join(profile_names())}")
    try:
        profile: dict[str, Any] = json.loads(path.read_text())
        profile.setdefault("name", path.stem)
        profile["meter"]["model"]
    except (ValueError, KeyError, TypeError) as e:
        raise SimError(f"profile {name!r} is not a board profile: {e}") from None
    unknown = sorted(set(profile) - set(BOARD_CONFIG_KEYS) - set(PROFILE_ONLY_KEYS))
    if unknown:
        raise SimError(
            f"profile {name!r}: unknown keys {', '.join(unknown)} (a board reads {', '.join(BOARD_CONFIG_KEYS)})"
        )
    return profile


def board_config(profile: dict[str, Any], device_id: str, verifier_url: str) -> dict[str, Any]:
    """The board's config.json for a device of this profile."""
    config = {k: v for k, v in profile.items() if k in BOARD_CONFIG_KEYS}
    config.update(device_id=device_id, verifier=verifier_url, profile=profile["name"])
    return config


def virtual_boards_dir() -> Path:
    """Where running virtual boards announce themselves, as USB boards do to the OS, so that
    `--port auto` and `--port id:SERIAL` find them (WATTPROOF_VIRTUAL_BOARDS to move it)."""
    default = Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".cache") / "wattproof" / "virtual-boards"
    return Path(os.environ.get("WATTPROOF_VIRTUAL_BOARDS") or default)


def register_virtual_board(serial: str, port: str, profile: str) -> Path:
    folder = virtual_boards_dir()
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{serial}.json"
    entry.write_text(json.dumps({"serial": serial, "port": port, "profile": profile, "pid": os.getpid()}))
    return entry


def virtual_boards() -> list[dict[str, Any]]:
    """The virtual boards running now (entries of processes that are gone are skipped)."""
    out = []
    folder = virtual_boards_dir()
    for entry in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            info = json.loads(entry.read_text())
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError):
            continue
        out.append(info)
    return out


class Site:
    """One virtual board and the simulated peripherals its profile calls for.

    Meters on RS485 get a Modbus meter simulator on a pseudo-terminal line; S0 meters get
    pulses from the power profile; chargers get a vehicle that arrives, presents a token,
    charges and leaves, with the meter following the contactor.
    """

    def __init__(
        self,
        profile: dict[str, Any],
        root: Path,
        device_id: str,
        verifier_url: str,
        *,
        speed: float = 1.0,
        virtual_epoch: int | None = None,
        console: bool = False,
        blank: bool = False,
        halt_at: int | None = None,
        clock_from_boot: bool = False,
    ) -> None:
        """halt_at, clock_from_boot: a run of a fixed simulated span (VirtualBoard)."""
        from hardware.simulators import PROFILES as POWER
        from hardware.simulators import ModbusMeter, PtyLink
        from hardware.virtual_board import VirtualBoard

        self.profile = profile
        self.blank = blank
        config: dict[str, Any] | None = None
        if not blank:  # a board that comes configured; a blank one is for `wattproof provision`
            config = board_config(profile, device_id, verifier_url)
        virtual = profile.get("virtual", {})
        self.board = VirtualBoard(
            root, config, speed=speed, virtual_epoch=virtual_epoch, halt_at=halt_at, clock_from_boot=clock_from_boot
        )
        self.console = PtyLink() if console or blank else None
        serial_file = self.board.sim / "serial"
        if not serial_file.exists():
            serial_file.write_text("VB" + os.urandom(5).hex().upper())
        self.serial = serial_file.read_text().strip()  # as a USB bridge's serial number
        self._registered: Path | None = None
        self.bus: PtyLink | None = None
        self.meter: ModbusMeter | None = None
        self._meter_state = self.board.sim / "meter.json"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        power_name = virtual.get("power", "household")
        if power_name == "charging":
            watts = float(virtual.get("charging_w", 7400))
            self.power: Callable[[float], float] = lambda _s: watts if self.board.relay() else 0.0
            self._spawn(self._vehicle)
        else:
            self.power = POWER[power_name]
        model = profile["meter"]["model"]
        if model == "s0":
            self._spawn(self._pulses)
        else:
            self.bus = PtyLink()
            self.board.set_uart(self.bus.board_port)
            saved = json.loads(self._meter_state.read_text()) if self._meter_state.exists() else {}
            self.meter = ModbusMeter(
                model,
                self.bus.meter_port,
                address=profile["meter"].get("address", 1),
                profile=None,
                speed=speed,
                virtual_epoch=self.board.virtual_epoch,
                halt_at=halt_at,
                clock=self.board.virtual_now,
                serial=self.meter_serial(),  # each site its own meter, as in the field
                **saved,  # a meter keeps its registers from one run to the next
            )
            self.meter.profile = self.power

    def meter_serial(self) -> int:
        """The serial number of this site's Modbus meter: fixed by the board's USB serial, so
        the same site keeps its meter from one run to the next and two sites never share one."""
        return 20_000_000 + int(self.serial[2:], 16) % 80_000_000

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        self._threads.append(thread)

    def _pulses(self) -> None:
        per_kwh = self.profile["meter"].get("pulses_per_kwh", 1000)
        owed = 0.0
        last = self.board.virtual_now()
        while not self._stop.wait(0.01):
            now = self.board.virtual_now()
            owed += abs(self.power(now % 86400)) * (now - last) / 3600 * per_kwh / 1000
            last = now
            if owed >= 1:
                self.board.pulse(int(owed))
                owed -= int(owed)

    def _vehicle(self) -> None:
        """Every 4 simulated hours: plug in, present a token, charge 90 min, unplug."""
        cycle, token_sent = -1, False
        while not self._stop.wait(0.05):
            now = self.board.virtual_now()
            phase = now % (4 * 3600)
            if int(now // (4 * 3600)) != cycle:
                cycle, token_sent = int(now // (4 * 3600)), False
            if phase < 1800:
                self.board.set_pilot(12.0)  # A: nobody there
            elif phase < 1800 + 120:
                self.board.set_pilot(9.0)  # B: plugged in
                if not token_sent:
                    self.board.present_token("04A2B3C4D5E6%02X" % (cycle % 256))
                    token_sent = True
            elif phase < 1800 + 120 + 5400:
                self.board.set_pilot(6.0)  # C: charging
            elif phase < 1800 + 120 + 5400 + 600:
                self.board.set_pilot(9.0)  # B: full
            else:
                self.board.set_pilot(12.0)  # A: gone

    def start(self) -> None:
        for thread in self._threads:
            if not thread.is_alive():
                thread.start()
        if self.blank:
            assert self.console is not None
            self.board.power_on(self.console)
            self._registered = register_virtual_board(self.serial, self.console.meter_port, self.profile["name"])
        else:
            self.board.start(console=self.console)

    def close(self) -> None:
        self._stop.set()
        if self._registered is not None:
            self._registered.unlink(missing_ok=True)
        if self.blank:
            self.board.power_off()
        else:
            self.board.cut_power() if self.console else self.board.stop()
        if self.meter is not None:
            self.meter.close()
            registers = {"import_wh": self.meter.import_wh, "export_wh": self.meter.export_wh}
            self._meter_state.write_text(json.dumps(registers))
        for link in (self.bus, self.console):
            if link is not None:
                link.close()
