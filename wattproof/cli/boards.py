"""The boards: `wattproof sim` (virtual boards), `wattproof provision` (flash, key, enroll and
commission, docs/technician.md) and `wattproof board` (field commands on a provisioned board)."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from verifier.wire import times
from wattproof.cli.options import FILE, Declared


@click.group()
def sim() -> None:
    """Virtual boards."""


@sim.command("sample-packet")
@click.option("--readings", type=int, default=16, show_default=True, help="readings in the packet (1..256)")
@click.option("--out", type=FILE, required=True, help="folder for packet.cbor and device-key.pub.pem")
def sample_packet(readings: int, out: Path) -> int:
    """Build one real packet under MicroPython."""
    from hardware import sim as virtual

    packet_path, key_path = virtual.sample_packet(readings, out)
    print(f"{packet_path} ({packet_path.stat().st_size} bytes, {readings} readings)")
    print(key_path)
    return 0


@sim.command()
@click.option("--verifier", default="http://127.0.0.1:8080", show_default=True, help="verifier URL")
@click.option("--api-key", help="an admin API key (or WATTPROOF_API_KEY): it registers the fleet's installer")
@click.option("--devices", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
@click.option("--slots", type=click.IntRange(1), default=4, show_default=True,
              help="15-minute rounds: packets per device")  # fmt: skip
@click.option("--rate", type=float, default=0, show_default=True, help="packets/s due (0: as fast as answered)")
@click.option("--senders", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="HTTP: packets in flight; MQTT: connections publishing")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="the fleet's keys (the same seed, the same fleet)")
@click.option("--transport", type=click.Choice(["http", "mqtt"]), default="http", show_default=True,
              help="packets POSTed to the verifier, or published to --broker for `wattproof mqtt` bridges")  # fmt: skip
@click.option("--broker", help="--transport mqtt: mqtt://host:port (a broker that lets this client publish for all)")
def fleet(verifier: str, api_key: str | None, devices: int, slots: int, rate: float, senders: int,
          seed: int, transport: str, broker: str | None) -> int:  # fmt: skip
    """A fleet of meters on a verifier: keys made here, enrolled in bulk, then each device's
    15-reading packet every 15 simulated minutes, time compressed (hardware/fleet.py;
    bench/fleet.py starts its own verifier and measures the database too)."""
    from urllib.parse import urlsplit

    from hardware import fleet as virtual

    token = api_key or os.environ.get("WATTPROOF_API_KEY")
    if not token:
        raise SystemExit("wattproof: an admin API key is needed (--api-key, or WATTPROOF_API_KEY)")
    where = urlsplit(verifier)
    if where.scheme != "http" or not where.hostname:
        raise SystemExit(f"wattproof: --verifier: an http://host:port URL, not {verifier!r}")
    members = virtual.fleet(devices, seed=seed, prefix=f"fleet{seed}")
    took = virtual.enroll(verifier, token, members)
    print(f"{devices:,} devices enrolled in {took:.1f} s ({devices / took:,.0f}/s)")
    start = (int(time.time()) - slots * virtual.SLOT_S - 86400) // virtual.SLOT_S * virtual.SLOT_S
    if transport == "mqtt":
        if not broker or not broker.startswith("mqtt://"):
            raise SystemExit("wattproof: --transport mqtt needs --broker mqtt://host:port")
        stream: virtual.Stream = virtual.MqttStream(broker, members, slots, start, rate, connections=senders)
    else:
        stream = virtual.Stream(where.port or 80, members, slots, start, rate, senders, keep_alive=False,
                                host=where.hostname)  # fmt: skip
    seconds = stream.run()
    lat = sorted(stream.latencies)
    n = len(lat)
    print(f"{n:,} packets of {virtual.READINGS_PER_PACKET} readings in {seconds:.1f} s: {n / seconds:,.0f} packets/s;"
          f" send to receipt p50 {lat[n // 2] * 1000:.1f} ms, p99 {lat[int(n * 0.99)] * 1000:.1f} ms")  # fmt: skip
    print(f"answers {dict(sorted(stream.answers.items()))}")
    for e in stream.errors:
        print(f"  e.g. {e}")
    return 0 if stream.answers.get(201, 0) == n else 1


@sim.command()
@click.option("--profile", required=True, help="a board profile from hardware/profiles")
@click.option("--speed", type=float, default=1.0, show_default=True, help="simulated seconds per real second")
@click.option("--verifier", default="http://127.0.0.1:8080", show_default=True, help="verifier URL")
@click.option("--dir", "folder", type=FILE, help="folder for the board's flash and peripherals (kept)")
@click.option("--device-id", help="device id (default virtual-PROFILE)")
@click.option(
    "--start", type=int, help="Unix time the board's clock starts at (default: now, or 30 days ago when --speed > 1)"
)
@click.option("--blank", is_flag=True, help="a board with MicroPython only, to provision (wattproof provision)")
@click.option("--transport", type=click.Choice(["http", "mqtt"]), help="how packets go (default: the profile's)")
@click.option("--broker", help="--transport mqtt: mqtt://host:port (a `wattproof mqtt` bridge takes them)")
def board(profile: str, speed: float, verifier: str, folder: Path | None, device_id: str | None, start: int | None,
          blank: bool, transport: str | None, broker: str | None) -> int:  # fmt: skip
    """Run the firmware on a virtual board with simulated peripherals."""
    from hardware import sim as virtual
    from hardware.flash import files

    described = virtual.load_profile(profile)
    if transport == "mqtt" and not broker:
        raise SystemExit("wattproof: --transport mqtt needs --broker mqtt://host:port")
    if transport:
        described["transport"] = transport
    if broker:
        described["broker"] = broker
    root = folder or Path(tempfile.mkdtemp(prefix=f"wattproof-{profile}-"))
    if blank:
        return _blank_board(described, root, speed, start)
    device_id = device_id or f"virtual-{profile}"
    held = root / "flash" / files.CONFIG
    if held.exists():
        try:
            existing = json.loads(held.read_text()).get("device_id")
        except (ValueError, AttributeError):
            existing = None
        if existing != device_id:
            raise SystemExit(
                f"wattproof: {root} holds board {existing!r}, provisioned with its own key and config:"
                f" start it as it is with `wattproof sim board --blank --dir {root} --profile {profile}`,"
                " or give another --dir"
            )
    # Faster than real time, the board's clock starts in the past so that its readings stay
    # behind the verifier's clock (which refuses the future) for a long while.
    epoch = start if start is not None else int(time.time()) - (30 * 86400 if speed > 1 else 0)
    site = virtual.Site(described, root, device_id, verifier, speed=speed, console=True, virtual_epoch=epoch)
    site.start()
    assert site.console is not None
    print(f"profile    {profile}: {described['description']}")
    print(f"device id  {device_id}")
    print(f"flash      {site.board.flash}")
    print(f"verifier   {verifier}")
    print(f"speed      {speed:g}x (one reading every {described.get('interval_s', 60) / speed:g} s)")
    print(f"console    {site.console.meter_port}")
    print(f'try        mpremote connect {site.console.meter_port} resume exec "import wattproof; wattproof.status()"')
    print("Ctrl-C stops the board.", flush=True)
    return _until_interrupted(site, site.board.running)


def _until_interrupted(site: Any, alive: Callable[[], bool]) -> int:
    """Keeps a virtual board's site up while alive() holds, until Ctrl-C; then closes it."""

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # `kill`, or the terminal closing, ends it as Ctrl-C does

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        while alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the board is closed whole, not half
        site.close()
    return 0


def _blank_board(profile: dict[str, Any], root: Path, speed: float, start: int | None) -> int:
    """A board as it leaves the bench: MicroPython and nothing else, its console on a
    pseudo-terminal, until `wattproof provision` gives it firmware, a key and a config."""
    from hardware import sim as virtual

    site = virtual.Site(profile, root, "", "", speed=speed, virtual_epoch=start, blank=True)
    site.start()
    assert site.console is not None
    print(f"profile    {profile['name']}: {profile['description']}")
    print(f"serial     {site.serial}")
    print(f"flash      {site.board.flash}")
    print(f"console    {site.console.meter_port}")
    print(f"try        wattproof provision --port {site.console.meter_port} --profile {profile['name']} ...")
    print("Ctrl-C powers the board off.", flush=True)
    return _until_interrupted(site, lambda: True)


API_KEY_HELP = "an installer API key (default: WATTPROOF_API_KEY)"


@click.command()
@click.option("--port", "ports", multiple=True, required=True,
              help="a serial port, `auto`, or id:SERIAL; repeat for several boards")  # fmt: skip
@click.option("--profile", required=True, help="a board profile from hardware/profiles, or a JSON file")
@click.option("--device-id", required=True, help="the device id; {n} or {serial} for several boards")
@click.option("--role", required=True, type=Declared("verifier.devices.identity.ROLES"))
@click.option("--capacity-w", type=int, required=True, help="nameplate, main fuse or charging power (W)")
@click.option("--grid-area", required=True, help="the grid area the device is connected in")
@click.option("--technology", help="producers: solar-pv, wind, hydro, chp, battery ...")
@click.option("--location", help="LAT,LON in degrees")
@click.option("--token-secret", type=FILE, metavar="FILE",
              help="chargers: the operator's token secret (64 hex digits); the board gets its own token key"
              " derived from it, so that sessions can be billed to tokens (docs/charging.md)")  # fmt: skip
@click.option(
    "--charge-point",
    type=FILE,
    metavar="FILE",
    help="chargers: a JSON file of the OCPI charge point (location_id, address, city, country, evse_uid,"
    " evse_id, connector_id, connector_standard, connector_format, power_type: docs/charging.md)",
)
@click.option("--meter-serial", help="default: the serial number the meter reports")
@click.option("--verifier", required=True, help="verifier URL, as the board will reach it")
@click.option("--api-key", help=API_KEY_HELP)
@click.option("--installer", required=True, help="the installer's name, as registered with the verifier")
@click.option("--installer-key", type=FILE, required=True, help="the installer's Ed25519 key (PEM)")
@click.option("--out", type=FILE, default=Path("commissioning"), show_default=True, help="reports and labels go here")
@click.option("--reflash", is_flag=True, help="copy every firmware file, changed or not")
@click.option("--rotate-key", is_flag=True, help="give an enrolled board a new key")
@click.option("--clock-tolerance", type=float, default=120, show_default=True,
              help="seconds the board's clock may differ from this computer's")  # fmt: skip
@click.option("--broker", help="packets over MQTT to this broker: mqtt[s]://host:port (default: HTTP to --verifier)")
@click.option("--broker-passwords", type=FILE, metavar="FILE",
              help="with --broker: the broker's password file, given each board's own password")  # fmt: skip
def provision(ports: tuple[str, ...], profile: str, device_id: str, role: str, capacity_w: int, grid_area: str,
              technology: str | None, location: str | None, token_secret: Path | None, charge_point: Path | None,
              meter_serial: str | None, verifier: str, api_key: str | None, installer: str, installer_key: Path,
              out: Path, reflash: bool, rotate_key: bool, clock_tolerance: float, broker: str | None,
              broker_passwords: Path | None) -> int:  # fmt: skip
    """Flash, key, enroll and commission boards (docs/technician.md)."""
    from hardware import sim as virtual
    from provisioning import provision as pv
    from provisioning.client import ProvisionError, VerifierClient
    from provisioning.link import BoardError, resolve_ports
    from verifier.charging import tokens
    from verifier.devices.charge_point import check_charge_point

    try:
        described = virtual.load_profile(profile)
    except virtual.SimError as e:
        raise SystemExit(f"wattproof: {e}") from None
    if broker_passwords and not broker:
        raise SystemExit("wattproof: --broker-passwords goes with --broker")
    if broker:
        described.update(transport="mqtt", broker=broker)
    api_key = api_key or os.environ.get("WATTPROOF_API_KEY")
    if not api_key:
        raise SystemExit("wattproof: an installer API key is needed (--api-key, or WATTPROOF_API_KEY)")
    try:
        signer = pv.load_installer(installer, installer_key)
        found = resolve_ports(list(ports))
    except (ProvisionError, BoardError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    if len(found) > 1 and "{n}" not in device_id and "{serial}" not in device_id:
        raise SystemExit("wattproof: several boards need a --device-id with {n} or {serial} in it")
    place = None
    if location:
        lat, lon = (float(x) for x in location.split(","))
        place = (round(lat * 1e6), round(lon * 1e6))
    point = None
    if charge_point:
        try:
            point = check_charge_point(json.loads(charge_point.read_text()))
        except (OSError, ValueError) as e:  # a Problem is a ValueError: it names the field
            raise SystemExit(f"wattproof: charge point {charge_point}: {e}") from None
    secret = None
    if token_secret:
        try:
            secret = tokens.load_secret(token_secret)
        except (OSError, ValueError) as e:
            raise SystemExit(f"wattproof: {e}") from None
        if role != "charger":
            raise SystemExit("wattproof: --token-secret is for chargers (--role charger)")
    client = VerifierClient(verifier, api_key)
    planned: list[tuple[str, str, str | None, str]] = [
        (port, serial_number, device_id.format(n=n, serial=serial_number.lower() or n), "")
        for n, (port, serial_number) in enumerate(found, 1)
    ]
    if len(found) > 1 or "auto" in ports:
        # A bulk run: boards set up before keep their ids, boards of other devices are skipped,
        # blank ones get the next free number (provisioning/provision.py plan_ids).
        def current(port: str) -> str | None:
            try:
                return pv.configured_id(port)
            except BoardError:
                return None  # its own run says what is wrong with it

        boards = [(port, serial_number, current(port)) for port, serial_number in found]
        try:
            planned = pv.plan_ids(boards, device_id, lambda d: (client.device(d) or {}).get("status"))
        except ProvisionError as e:
            raise SystemExit(f"wattproof: {e}") from None
    jobs = []
    for port, serial_number, planned_id, said in planned:
        if planned_id is None:
            print(f"[{port}] {said}", flush=True)
            continue
        if said:
            print(f"[{planned_id}] {said}", flush=True)
        identity = pv.Identity(
            device_id=planned_id,
            role=role,
            capacity_w=capacity_w,
            grid_area=grid_area,
            technology=technology,
            location=place,
            meter_serial=meter_serial,
            charge_point=point,
            token_key=None if secret is None else tokens.charger_key(secret, planned_id),
            mqtt_password=None if broker_passwords is None else pv.set_broker_password(broker_passwords, planned_id),
        )
        jobs.append(
            pv.Job(
                port,
                serial_number,
                identity,
                described,
                client,
                signer,
                out,
                reflash=reflash,
                rotate_key=rotate_key,
                clock_tolerance_s=clock_tolerance,
            )  # fmt: skip
        )
    if not jobs:
        print("no board to provision: every attached board is set up as another device", file=sys.stderr)
        return 1
    return pv.main_exit(pv.provision_all(jobs))


@click.group("board")
def field_board() -> None:
    """Field commands on a provisioned board."""


def _port_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--no-reset", is_flag=True, help="leave the board at its REPL afterwards")(command)
    return click.option("--port", default="auto", show_default=True, help="a serial port, `auto` or id:SERIAL")(command)


def _verifier_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--force", is_flag=True, help="go on even if packets cannot be sent first")(command)
    command = click.option("--api-key", help=API_KEY_HELP)(command)
    return click.option("--verifier", required=True, help="verifier URL")(command)


def _on_board(port: str, no_reset: bool, work: Callable[[Any], bool]) -> int:
    """work(link) on the one board the port names; it resets the board after unless no_reset
    (or work says the board stays at its REPL)."""
    from provisioning.client import ProvisionError
    from provisioning.link import BoardError, BoardLink, resolve_ports

    try:
        found = resolve_ports([port])
        if len(found) != 1:
            listed = "; ".join(f"{path} (id:{serial})" if serial else path for path, serial in found)
            raise BoardError(f"{len(found)} boards match {port}: {listed}; name one (--port PATH or id:SERIAL)")
        with BoardLink(found[0][0]) as link:
            reset = work(link)
            if reset and not no_reset:
                link.reset()
    except (BoardError, ProvisionError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    return 0


@field_board.command()
@_port_options
def status(port: str, no_reset: bool) -> int:
    """Identity, journal depth, last upload."""
    from provisioning import field

    return _on_board(port, no_reset, lambda link: print(field.status(link)) or True)


@field_board.command()
@_port_options
def logs(port: str, no_reset: bool) -> int:
    """The device events the board holds."""
    from provisioning import field
    from verifier.wire.packet import DEVICE_EVENTS

    def show(link: Any) -> bool:
        for e in field.logs(link):
            name = DEVICE_EVENTS.get(e["event"], str(e["event"]))
            at = times.strftime(e["ts"], "%Y-%m-%d %H:%M:%SZ")
            value = "" if e["value"] is None else e["value"]
            print(f"#{e['number']:<8} {at}  {name:13s} {e['detail'] or ''} {value}".rstrip())
        return True

    return _on_board(port, no_reset, show)


def _client(verifier: str, api_key: str | None) -> Any:
    from provisioning.client import VerifierClient

    return VerifierClient(verifier, api_key or os.environ.get("WATTPROOF_API_KEY"))


@field_board.command("rotate-key")
@_port_options
@_verifier_options
def rotate_key(port: str, no_reset: bool, verifier: str, api_key: str | None, force: bool) -> int:
    """A new key made on the board, signed by the old one."""
    from provisioning import field

    def rotate(link: Any) -> bool:
        link.restart_clean()  # the gateway stays stopped, and the heap is whole for the last packet
        done = field.rotate_key(link, _client(verifier, api_key), force)
        print(f"{done['device_id']}: new key, fingerprint {done['fingerprint']}")
        return True

    return _on_board(port, no_reset, rotate)


@field_board.command()
@_port_options
@_verifier_options
@click.option("--reason", default="decommissioned", show_default=True, help="recorded in the ledger")
def decommission(port: str, no_reset: bool, verifier: str, api_key: str | None, force: bool, reason: str) -> int:
    """Revoke the device in the verifier and wipe its key from the board."""
    from provisioning import field

    def wipe(link: Any) -> bool:
        link.restart_clean()
        done = field.decommission(link, _client(verifier, api_key), reason, force)
        verdict = {
            "now": "revoked in the verifier",
            "already revoked": "was revoked in the verifier already",
            "never enrolled": "was never enrolled with the verifier (nothing to revoke)",
        }[done["revoked"]]
        print(f"{done['device_id']}: {verdict}; key, journal and config wiped from the board")
        return False  # no reset: the board waits at its REPL

    return _on_board(port, no_reset, wipe)
