"""`wattproof provision`: a blank ESP32 (or virtual board) to an enrolled, commissioned device.

Steps, each safe to repeat and decided from what the board and the verifier already hold,
so that an interrupted run resumes where it stopped (docs/technician.md):

  1 check      MicroPython and .mpy version, free heap and flash
  2 firmware   .mpy files compiled by mpy-cross; only files whose hash differs are copied
  3 config     config.json from the board profile, the device's identity and the verifier
  4 meter      the meter answers (its serial number completes the device record)
  5 clock      synced from the network, else set from this computer; checked against it
  6 key        the device key is made on the board; only the public key comes back
  7 enroll     the board signs the verifier's challenge, the installer key signs the record;
               the receipt (ledger index, inclusion proof, checkpoint) is kept on the board
  8 packet     a first signed packet, accepted by the verifier
  9 report     commissioning report (text, JSON) and label (QR code, SVG and PNG)

and the board is reset, so that its gateway loop runs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardware import micropython, sim
from hardware.flash import files as flash
from provisioning import field as field_commands
from provisioning.client import ProvisionError, VerifierClient
from provisioning.enrollment import Installer, enrollment_request
from provisioning.link import BoardError, BoardLink
from verifier.devices import identity

STEPS = ["check", "firmware", "config", "meter", "clock", "key", "enroll", "packet", "report"]
MIN_HEAP = 60 * 1024
FLASH_MARGIN = 256 * 1024  # journal and config room beyond the firmware


@dataclass
class Identity:
    device_id: str
    role: str
    capacity_w: int
    grid_area: str
    technology: str | None = None
    location: tuple[int, int] | None = None  # microdegrees
    meter_serial: str | None = None  # read from the meter when not given
    charge_point: dict[str, str] | None = None  # chargers: OCPI location, EVSE, connector
    token_key: bytes | None = None  # chargers: the operator's token key for this charger (secret)
    mqtt_password: str | None = None  # boards over MQTT: the device's own password at the broker (secret)


def load_installer(name: str, key_file: Path) -> Installer:
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise ProvisionError(f"installer key {key_file}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ProvisionError(f"installer key {key_file}: not an Ed25519 private key")
    return Installer(name, key)


def write_installer_key(path: Path, installer: Installer) -> None:
    """Writes the private key to a new file that is 0600 from its first byte (never world-readable),
    making the folder (0700) if it is missing; an existing file is never overwritten."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = installer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


# -- firmware ---------------------------------------------------------------------------


@functools.cache  # one build per run: every board and every step sees the same files
def firmware_files() -> dict[str, bytes]:
    """The board's files: every module as .mpy (mpy-cross), and main.py as source."""
    built = micropython.compiled_firmware()
    files = {str(p.relative_to(built)): p.read_bytes() for p in sorted(built.rglob("*.mpy")) if p.name != "main.mpy"}
    files[flash.MAIN] = (micropython.FIRMWARE / flash.MAIN).read_bytes()
    return files


@functools.cache
def mpy_cross_version() -> tuple[int, int]:
    out = subprocess.run([micropython.mpy_cross(), "--version"], capture_output=True, text=True).stdout
    version = out.rsplit("mpy v", 1)[-1].strip()
    major, minor = version.split(".")
    return int(major), int(minor)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(".") if x.isdigit())


# -- one board ---------------------------------------------------------------------------


@dataclass
class Job:
    port: str
    serial: str
    identity: Identity
    profile: dict[str, Any]
    verifier: VerifierClient
    installer: Installer
    out: Path
    reflash: bool = False
    rotate_key: bool = False
    clock_tolerance_s: float = 120
    packet_timeout_s: float = 90
    say: Callable[[str], None] = print
    report: dict[str, Any] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)


def provision(job: Job) -> dict[str, Any]:
    """Runs every step on one board; returns the report. Raises ProvisionError or BoardError."""
    ident = job.identity
    job.report = {
        "device_id": ident.device_id,
        "port": job.port,
        "serial_number": job.serial,
        "profile": job.profile["name"],
        "verifier": job.verifier.url,
        "installer": job.installer.name,
        "started": _utc(time.time()),
    }
    job.report["log_key"] = job.verifier.ping()
    with BoardLink(job.port) as link:
        link.restart_clean()
        for n, step in enumerate(STEPS, 1):
            link.step = f"step {n}/{len(STEPS)} {step}"
            job.say(f"{link.step} ...")
            detail = STEP_FUNCTIONS[step](job, link)
            job.say(f"{link.step}: {detail}")
        if link.transport is not None:
            link.reset()
    job.say("the board runs its gateway")
    return job.report


def _check(job: Job, link: BoardLink) -> str:
    info = link.run(PROBE).strip().splitlines()[-1]
    board = json.loads(info)
    job.report["board"] = board
    mpy = (board["mpy"], board["mpy_sub"])
    emitted = mpy_cross_version()  # a board loads .mpy of its major version, up to its sub-version
    if board["mpy"] != emitted[0] or board["mpy_sub"] < emitted[1]:
        raise ProvisionError(
            f"wrong MicroPython version: the board runs MicroPython {board['micropython']}, which loads .mpy "
            f"v{mpy[0]}.{mpy[1]}; this mpy-cross emits .mpy v{emitted[0]}.{emitted[1]}: flash a current "
            "MicroPython (docs/technician.md)"
        )
    wanted = job.profile.get("micropython")
    if wanted and _version(board["micropython"]) < _version(wanted.lstrip(">=")):
        raise ProvisionError(
            f"wrong MicroPython version: the board runs {board['micropython']}; profile {job.profile['name']} "
            f"needs {wanted}: flash a newer MicroPython (docs/technician.md)"
        )
    size = sum(len(b) for b in firmware_files().values())
    if not board["gateway_loaded"]:  # else an old firmware ignored safe.boot: judged after the update
        _check_heap(board["heap_free"])
    if board["flash_free"] < size + FLASH_MARGIN - _deployed_size(link):
        raise ProvisionError(
            f"the board has {board['flash_free'] // 1024} KB of flash free; the firmware and its journal need "
            f"{(size + FLASH_MARGIN) // 1024} KB"
        )
    return (
        f"MicroPython {board['micropython']} ({board['platform']}), .mpy v{mpy[0]}.{mpy[1]}, "
        f"heap {board['heap_free'] // 1024} KB free, flash {board['flash_free'] // 1024} KB free"
    )


def _check_heap(free: int) -> None:
    if free < MIN_HEAP:
        raise ProvisionError(
            f"the board has {free // 1024} KB of heap free at its REPL; the gateway needs {MIN_HEAP // 1024} KB: "
            "use a board with more RAM, or a MicroPython build with the firmware frozen in (docs/firmware.md)"
        )


def _deployed_size(link: BoardLink) -> int:
    out = link.run(
        f"import os\nt = 0\nfor p in {list(firmware_files())!r}:\n try:\n  t += os.stat(p)[6]\n"
        " except OSError:\n  pass\nprint(t)"
    )
    return int(out.strip().splitlines()[-1])


PROBE = """
import gc, os, sys, json
gc.collect()
try:
    import vboard
    ff = vboard.flash_free()
except ImportError:
    st = os.statvfs('/')
    ff = st[0] * st[3]
m = getattr(sys.implementation, '_mpy', 0)
print(json.dumps({'micropython': '.'.join(str(v) for v in sys.implementation.version[:3]), 'mpy': m & 0xff,
    'mpy_sub': (m >> 8) & 3, 'platform': sys.platform, 'heap_free': gc.mem_free(), 'flash_free': ff,
    'gateway_loaded': 'runtime' in sys.modules}))
"""


def _firmware(job: Job, link: BoardLink) -> str:
    files = firmware_files()
    on_board = link.hashes(list(files))
    todo = [p for p, data in files.items() if job.reflash or on_board.get(p) != hashlib.sha256(data).hexdigest()]
    job.report["firmware"] = {
        "files": len(files),
        "copied": len(todo),
        "bytes": sum(len(files[p]) for p in todo),
        "digest": hashlib.sha256(b"".join(hashlib.sha256(files[p]).digest() for p in sorted(files))).hexdigest(),
    }
    if not todo:
        return f"{len(files)} files, all current"
    link.mkdirs([str(Path(p).parent) for p in todo if "/" in p])
    total, done = sum(len(files[p]) for p in todo), 0
    for p in todo:
        link.write_file(p, files[p])
        done += len(files[p])
        job.say(f"{link.step}: {p} ({100 * done // total} %)")
    job.changed.append("firmware")
    link.restart_clean()  # the new main.py honours safe.boot: the heap is measured clean
    _check_heap(json.loads(link.run(PROBE).strip().splitlines()[-1])["heap_free"])
    return f"{len(todo)} of {len(files)} files copied ({total} bytes)"


def _forget_another_device(job: Job, link: BoardLink, old_id: str) -> None:
    """The board was set up as another device. If that device was revoked (the board failed in
    the field, or its enrollment was refused and the id given up), or the id is enrolled with
    another key, the board forgets that device's key, journal and config and is provisioned
    anew under the new id: no decommission needed. Otherwise (active with this board's key,
    or never enrolled: a run to resume) it is not silently renamed."""
    public = link.read_file(flash.PUBLIC_KEY)
    known = job.verifier.device(old_id)
    mine = known is not None and public is not None and known["fingerprint"] == identity.fingerprint(public)
    if known is None or (known["status"] == "active" and mine):
        state = (
            "enrolled and active" if known is not None else "never enrolled: `--device-id " + old_id + "` resumes it"
        )
        raise ProvisionError(
            f"this board is device {old_id!r}, with its own key: decommission it before provisioning it as"
            f" {job.identity.device_id!r} ({state})"
        )
    why = "revoked" if known["status"] != "active" else "enrolled with another key"
    link.call("wipe")
    job.changed.append("wiped")
    job.say(f"{link.step}: the board was set up as {old_id!r} ({why}): its key, journal and config were wiped")


def _config(job: Job, link: BoardLink) -> str:
    ident = job.identity
    config = sim.board_config(job.profile, ident.device_id, job.verifier.url)
    shown = json.loads(json.dumps(config))
    if ident.token_key is not None and isinstance(config.get("charger"), dict):
        config["charger"]["token_key"] = ident.token_key.hex()
        shown["charger"]["token_key"] = "set (secret: not in the report)"
    if ident.mqtt_password is not None:
        config["mqtt_password"] = ident.mqtt_password
        shown["mqtt_password"] = "set (secret: not in the report)"
    data = json.dumps(config, sort_keys=True).encode()
    current = link.read_file(flash.CONFIG)
    job.report["config"] = shown
    if current is not None:
        try:
            old = json.loads(current)
        except ValueError:
            old = None
        if old == config:
            return "unchanged"
        if old and old.get("device_id") not in (None, ident.device_id) and link.read_file(flash.PUBLIC_KEY):
            _forget_another_device(job, link, str(old["device_id"]))
    link.write_file(flash.CONFIG, data)
    job.changed.append("config")
    return "written"


def _meter(job: Job, link: BoardLink) -> str:
    answer = link.call("meter", timeout=60)
    if not answer.get("ok"):
        raise ProvisionError(
            f"the meter does not answer ({answer.get('error')}): check its wiring against the profile "
            f"{job.profile['name']} (hardware/profiles/README.md), its address and baud rate"
        )
    job.report["meter"] = answer
    said = f"{answer['identity']}: import {answer['import_wh']} Wh, export {answer['export_wh']} Wh"
    said += f", {answer['power_w']} W"
    if job.identity.meter_serial is None:
        if answer.get("serial"):
            job.identity.meter_serial = str(answer["serial"])
        else:  # a PZEM-004T or an S0 pulse output: nothing on the bus names the meter itself
            said += (
                "; the meter gives no serial number: it is enrolled as 'unknown' and not checked for double use"
                " (enter the nameplate serial with --meter-serial to have it checked)"
            )
    return said


def _clock(job: Job, link: BoardLink) -> str:
    answer = link.call("clock", set_to=int(time.time()))
    offset = answer["time"] - time.time()
    job.report["clock"] = {**answer, "offset_s": round(offset, 1)}
    if abs(offset) > job.clock_tolerance_s:
        raise ProvisionError(
            f"the board's clock is {offset:+.0f} s off this computer's after "
            f"{'a network sync' if answer['synced'] else 'being set'}: check this computer's clock and the "
            "site network's time server (--clock-tolerance to accept it)"
        )
    how = "synced from the network" if answer["synced"] else "set from this computer"
    board_time = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(answer["time"]))
    if abs(offset) < 120:
        return f"{how}, {board_time}, {offset:+.1f} s from this computer"
    # Accepted only because --clock-tolerance allows it (a virtual board living in the past).
    side = "behind" if offset < 0 else "ahead of"
    return f"{how}, {board_time}: {_span(abs(offset))} {side} this computer, within --clock-tolerance"


def _span(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d {hours} h {rest // 60} min" if days else f"{hours} h {rest // 60} min" if hours else f"{rest} s"


def _key(job: Job, link: BoardLink) -> str:
    answer = link.call("keygen")
    point = bytes.fromhex(answer["public_key"])
    job.report["key"] = {"kid": answer["kid"], "fingerprint": identity.fingerprint(point)}
    if answer["made"]:
        job.changed.append("key")
    return f"{'made on the board' if answer['made'] else 'kept'}; fingerprint {identity.fingerprint(point)[:16]}..."


def _record(job: Job, point: bytes) -> dict[str, Any]:
    ident = job.identity
    record: dict[str, Any] = {
        "device_id": ident.device_id,
        "public_key": point,
        "role": ident.role,
        "capacity_w": ident.capacity_w,
        "grid_area": ident.grid_area,
        "meter_model": job.profile["meter"]["model"],
        "meter_serial": ident.meter_serial or identity.UNKNOWN_SERIAL,
    }
    if ident.technology:
        record["technology"] = ident.technology
    if ident.role == "producer":
        # What the meter measures decides where the generation is: a one-register pulse meter
        # counts the generator's output (it is wired there); a two-way meter at the
        # connection point sees the generation leave as export.
        record["generation_register"] = identity.generation_register_of(job.profile["meter"]["model"])
    if ident.location:
        record["location"] = list(ident.location)
    if ident.charge_point:
        record["charge_point"] = dict(ident.charge_point)
    return record


def _enroll(job: Job, link: BoardLink) -> str:
    point = bytes.fromhex(link.call("public")["public_key"])
    fp = identity.fingerprint(point)
    known = job.verifier.device(job.identity.device_id)
    if known is not None and known["status"] == "revoked":
        raise ProvisionError(
            f"device id {job.identity.device_id!r} was revoked and is never used again (its history stays in"
            " the ledger): provision this board under a new device id"
        )
    if known is not None and known["fingerprint"] != fp:
        raise ProvisionError(
            f"device id {job.identity.device_id!r} is already enrolled with another key (fingerprint "
            f"{known['fingerprint'][:16]}...): pick another id, or decommission the old device first"
        )
    if known is not None and known["status"] != "active":
        raise ProvisionError(f"device {job.identity.device_id!r} was revoked: enroll the board under a new id")
    stored = link.read_file(flash.RECEIPT)
    if known is not None and stored is not None and json.loads(stored).get("fingerprint") == fp:
        receipt = json.loads(stored)
        job.report["enrollment"] = receipt
        if not job.rotate_key:
            return f"already enrolled (ledger entry {known['enrolled_ledger_index']})"

        link.restart_clean()  # a whole heap for the packets sent before the key changes
        rotated = field_commands.rotate_key(link, job.verifier)
        job.report["enrollment"] = json.loads(link.read_file(flash.RECEIPT) or b"{}")
        job.report["key"] = {"kid": rotated["kid"], "fingerprint": rotated["fingerprint"]}
        job.changed.append("key rotated")
        return f"enrolled; key rotated, fingerprint {rotated['fingerprint'][:16]}..."
    answer = job.verifier.challenge()
    record = _record(job, point)
    challenge = bytes.fromhex(answer["challenge"])

    def sign_on_board(message: bytes) -> bytes:
        return bytes.fromhex(link.call("sign", message.hex())["signature"])

    body = enrollment_request(record, challenge, sign_on_board, job.installer)
    receipt = job.verifier.enroll(body)
    receipt["fingerprint"] = fp
    link.write_file(flash.RECEIPT, json.dumps(receipt).encode())
    job.report["enrollment"] = receipt
    job.changed.append("enrollment")
    return f"ledger entry {receipt['ledger_index']} in a tree of {receipt['tree_size']}; receipt kept on the board"


def _packet(job: Job, link: BoardLink) -> str:
    """The gateway boots as it will in service; its first reading goes out at once."""
    done = link.read_file(flash.COMMISSIONED)
    known = job.verifier.device(job.identity.device_id) or {}
    if done is not None and known.get("packets", 0) > 0:
        job.report["first_packet"] = {"packets": known["packets"], "last_seq": known["last_seq"]}
        return f"done before ({known['packets']} packets in the ledger)"
    link.call("commission_next_boot")
    link.reset()  # the loop now runs; nothing below talks to the board
    deadline = time.monotonic() + job.packet_timeout_s
    while time.monotonic() < deadline:
        known = job.verifier.device(job.identity.device_id) or {}
        if known.get("packets", 0) > 0:
            break
        time.sleep(0.5)
    else:
        raise ProvisionError(
            f"no packet from the board reached the verifier within {job.packet_timeout_s:.0f} s: check the "
            f"board's network and that it can reach {job.verifier.url} (`wattproof board status` shows its last "
            "upload); run the same command again to resume"
        )
    job.report["first_packet"] = {"packets": known["packets"], "last_seq": known["last_seq"], "at": _utc(time.time())}
    job.changed.append("first packet")
    return f"packet {known['last_seq']} accepted by the verifier"


def _report(job: Job, link: BoardLink) -> str:
    from provisioning import label

    job.report["finished"] = _utc(time.time())
    job.report["changed"] = job.changed
    folder = job.out / job.identity.device_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(job.report, indent=2, sort_keys=True, default=_json) + "\n")
    (folder / "report.txt").write_text(report_text(job.report))
    fingerprint = job.report["key"]["fingerprint"]
    label.write(folder, job.identity.device_id, fingerprint)
    return f"{folder}/report.txt, report.json, label.svg, label.png"


def _json(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)


def report_text(r: dict[str, Any]) -> str:
    fp = r["key"]["fingerprint"]
    meter = r.get("meter", {})
    lines = [
        f"wattproof commissioning report: {r['device_id']}",
        "",
        f"device id       {r['device_id']}",
        f"key fingerprint {' '.join(fp[i : i + 4] for i in range(0, 64, 4))}",
        f"board           {r['profile']} on {r['port']} (serial {r['serial_number'] or 'unknown'})",
        f"micropython     {r['board']['micropython']} ({r['board']['platform']})",
        f"firmware        {r['firmware']['files']} files, digest {r['firmware']['digest'][:16]}...",
        f"meter           {meter.get('identity')}: import {meter.get('import_wh')} Wh, "
        f"export {meter.get('export_wh')} Wh",
        f"clock           {r['clock']['offset_s']:+} s from the commissioning computer",
        f"verifier        {r['verifier']} (log key {r['log_key']})",
        f"enrollment      ledger entry {r['enrollment']['ledger_index']}, installer {r['installer']}",
        f"first packet    {r['first_packet']['packets']} packets in the ledger, last {r['first_packet']['last_seq']}",
        f"changed         {', '.join(r['changed']) or 'nothing (already commissioned)'}",
        f"started         {r['started']}",
        f"finished        {r['finished']}",
        "",
    ]
    return "\n".join(lines)


STEP_FUNCTIONS: dict[str, Callable[[Job, BoardLink], str]] = {
    "check": _check,
    "firmware": _firmware,
    "config": _config,
    "meter": _meter,
    "clock": _clock,
    "key": _key,
    "enroll": _enroll,
    "packet": _packet,
    "report": _report,
}


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- several boards at once --------------------------------------------------------------


def template_pattern(template: str) -> re.Pattern[str]:
    """The device ids a --device-id template makes ({n}: a number, {serial}: a serial number)."""
    parts = re.split(r"(\{n\}|\{serial\})", template)
    body = "".join("[0-9]+" if p == "{n}" else "[a-z0-9]+" if p == "{serial}" else re.escape(p) for p in parts)
    return re.compile(body)


def plan_ids(
    boards: list[tuple[str, str, str | None]], template: str, status: Callable[[str], str | None]
) -> list[tuple[str, str, str | None, str]]:
    """Which device id each attached board gets in a bulk run: (port, serial number, id or
    None to skip, what to say). boards: (port, serial number, the device id its config names
    or None); status: a device's status at the verifier (None: unknown). A board set up under
    an id of this template keeps it (a rerun resumes or changes nothing); one that is another
    active device is skipped, never made another device; a blank board, or one set up under
    an id that was revoked or never enrolled, gets the template's next number that no board
    and no enrolled device has (its old key and journal are wiped then)."""
    pattern = template_pattern(template)
    configured = {c for _, _, c in boards if c}
    out: list[tuple[str, str, str | None, str]] = []
    n = 0
    for port, serial_number, current in boards:
        known = None if current is None else status(current)
        if current is not None and pattern.fullmatch(current) and known in (None, "active"):
            out.append((port, serial_number, current, f"set up as {current} before: resumed under that id"))
            continue
        if current is not None and known == "active":
            out.append((port, serial_number, None, f"already commissioned as device {current}: skipped (name its"
                        f" port to provision it again, or decommission it first)"))  # fmt: skip
            continue
        if current is not None and known is None:
            out.append((port, serial_number, None, f"set up as {current} but never enrolled: skipped (`--port"
                        f" {port} --device-id {current}` resumes it)"))  # fmt: skip
            continue
        if "{n}" not in template:
            out.append((port, serial_number, template.format(n=0, serial=serial_number.lower()), ""))
            continue
        while True:
            n += 1
            candidate = template.format(n=n, serial=serial_number.lower() or n)
            if candidate not in configured and status(candidate) is None:
                break
        out.append((port, serial_number, candidate, ""))
    return out


def configured_id(port: str) -> str | None:
    """The device id a board's config names, if it has a key too (None: a blank board)."""
    with BoardLink(port) as link:
        link.step = "looking at the board"
        config = link.read_file(flash.CONFIG)
        if config is None or link.read_file(flash.PUBLIC_KEY) is None:
            return None
        try:
            found = json.loads(config).get("device_id")
        except ValueError:
            return None
        return str(found) if found else None


def provision_all(jobs: list[Job]) -> list[tuple[Job, dict[str, Any] | Exception]]:
    """Provisions the boards in parallel (one thread each); each result or its error."""
    results: dict[int, dict[str, Any] | Exception] = {}
    lock = threading.Lock()

    def run(i: int, job: Job) -> None:
        name = job.identity.device_id

        def say(text: str) -> None:
            with lock:
                print(f"[{name}] {text}", flush=True)

        job.say = say
        try:
            results[i] = provision(job)
        except (ProvisionError, BoardError) as e:
            say(f"FAILED: {e}")
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [(job, results[i]) for i, job in enumerate(jobs)]


def main_exit(results: list[tuple[Job, dict[str, Any] | Exception]]) -> int:
    failed = [(job, r) for job, r in results if isinstance(r, Exception)]
    for job, r in results:
        state = f"FAILED: {r}" if isinstance(r, Exception) else "commissioned"
        print(f"{job.identity.device_id:24s} {job.port:16s} {state}")
    if failed:
        print(f"{len(failed)} of {len(results)} boards failed; run the same command again to resume", file=sys.stderr)
        return 1
    return 0


# --- a board's credentials at the MQTT broker ---------------------------------------------------

BROKER_HASH_ROUNDS = 101  # mosquitto_passwd's own count for its $7$ (PBKDF2-SHA512) hashes


def broker_password_line(user: str, password: str, salt: bytes | None = None) -> str:
    """A line of mosquitto's password_file for user: the $7$ form mosquitto_passwd writes
    (PBKDF2-HMAC-SHA512, 12 bytes of salt, 64 bytes of hash, base64)."""
    import base64
    import hashlib
    import os

    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, BROKER_HASH_ROUNDS, 64)
    return f"{user}:$7${BROKER_HASH_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def set_broker_password(path: Path, user: str, password: str | None = None) -> str:
    """A new random password for user (or the one given), its hash put in the broker's
    password file at path (any line of user's before replaced; the file written whole, mode
    0600, under a lock: technicians provision several boards at once); the password, for the
    board's config. The broker reads the file again on SIGHUP."""
    import fcntl
    import os
    import secrets

    password = secrets.token_urlsafe(24) if password is None else password
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = path.read_text().splitlines() if path.exists() else []
        kept = [line for line in lines if line.split(":", 1)[0] != user]
        fresh = path.with_name(path.name + ".new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join([*kept, broker_password_line(user, password)]) + "\n")
        os.replace(fresh, path)
    return password
