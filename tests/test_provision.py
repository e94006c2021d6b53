"""`wattproof provision` and the field commands, run as a technician runs them: the real
command, the real mpremote transport, blank virtual boards on pseudo-terminals, a real
verifier process."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
import zxingcpp
from PIL import Image

from hardware import sim
from provisioning import provision as pv
from provisioning.enrollment import Installer
from provisioning.provision import STEPS, write_installer_key
from tests.conftest import RunningVerifier
from tests.enroll import api_key
from verifier.devices import identity

pytestmark = pytest.mark.board  # a slow tier: `make check` leaves it out, `make test` runs it

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


class Bench:
    """A technician's bench: a verifier with an installer registered, and blank boards."""

    def __init__(self, tmp: Path, verifier: RunningVerifier) -> None:
        self.tmp = tmp
        self.verifier = verifier
        self.env = {**os.environ, "WATTPROOF_VIRTUAL_BOARDS": str(tmp / "boards")}
        installer = Installer.generate("anna")
        self.installer_key = tmp / "anna.pem"
        write_installer_key(self.installer_key, installer)
        admin = api_key(verifier.db, "admin")
        body = json.dumps({"name": "anna", "public_key": base64.b64encode(installer.public_key).decode()})
        request = urllib.request.Request(
            verifier.url + "/v1/installers",
            data=body.encode(),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
        self.key = api_key(verifier.db, "installer", "anna")
        # A profile with a reading a second and a packet every 4, so that tests see packets land.
        profile = sim.load_profile("devkitc-sdm120")
        profile.update(name="bench-sdm120", interval_s=1, packet_readings=4, packet_seconds=10)
        self.profile = tmp / "bench-sdm120.json"
        self.profile.write_text(json.dumps(profile))
        self.sites: list[sim.Site] = []
        os.environ["WATTPROOF_VIRTUAL_BOARDS"] = self.env["WATTPROOF_VIRTUAL_BOARDS"]

    def board(self, profile: str = "devkitc-sdm120") -> sim.Site:
        site = sim.Site(sim.load_profile(profile), self.tmp / f"board{len(self.sites)}", "", "", blank=True)
        site.start()
        self.sites.append(site)
        return site

    def args(self, port: str, device_id: str, *extra: str, profile: str | None = None) -> list[str]:
        return [
            *WATTPROOF,
            "provision",
            "--port",
            port,
            "--profile",
            profile or str(self.profile),
            "--device-id",
            device_id,
            "--role",
            "producer",
            "--technology",
            "solar-pv",
            "--capacity-w",
            "5000",
            "--grid-area",
            "DE-TEST",
            "--location",
            "52.52,13.405",
            "--verifier",
            self.verifier.url,
            "--api-key",
            self.key,
            "--installer",
            "anna",
            "--installer-key",
            str(self.installer_key),
            "--out",
            str(self.tmp / "out"),
            *extra,
        ]

    def provision(self, port: str, device_id: str, *extra: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(port, device_id, *extra, **kw), capture_output=True, text=True, env=self.env, timeout=240
        )

    def start_provision(self, port: str, device_id: str) -> subprocess.Popen[str]:
        """A provisioning run in the background, its progress lines on stdout."""
        return subprocess.Popen(
            self.args(port, device_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env
        )

    def wattproof(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*WATTPROOF, *args], capture_output=True, text=True, env=self.env, timeout=240)

    def device(self, device_id: str) -> dict[str, Any] | None:
        conn = sqlite3.connect(self.verifier.db)
        try:
            row = conn.execute("SELECT public_key, status FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if row is None:
                return None
            packets = conn.execute("SELECT COUNT(*) FROM packets WHERE device_id = ?", (device_id,)).fetchone()[0]
            enrollments = conn.execute(
                "SELECT COUNT(*) FROM ledger WHERE kind = 'enroll' AND device_id = ?", (device_id,)
            ).fetchone()[0]
        finally:
            conn.close()
        return {
            "fingerprint": identity.fingerprint(bytes(row[0])),
            "status": row[1],
            "packets": packets,
            "enrollments": enrollments,
        }

    def known(self, device_id: str) -> dict[str, Any]:
        device = self.device(device_id)
        assert device is not None, f"{device_id} is not enrolled"
        return device

    def close(self) -> None:
        for site in self.sites:
            site.close()


@pytest.fixture
def bench(tmp_path: Path, verifier: RunningVerifier) -> Iterator[Bench]:
    b = Bench(tmp_path, verifier)
    old = os.environ.get("WATTPROOF_VIRTUAL_BOARDS")
    yield b
    b.close()
    if old is None:
        os.environ.pop("WATTPROOF_VIRTUAL_BOARDS", None)
    else:
        os.environ["WATTPROOF_VIRTUAL_BOARDS"] = old


def _board_fingerprint(site: sim.Site) -> str:
    return identity.fingerprint((site.board.flash / "device.pub").read_bytes())


def _wait_packets(bench: Bench, device_id: str, n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = (bench.device(device_id) or {}).get("packets", 0)
        if got >= n or time.monotonic() > deadline:
            return int(got)
        time.sleep(0.2)


def test_a_blank_board_end_to_end_then_a_rerun_changes_nothing(bench: Bench) -> None:
    site = bench.board()
    assert site.console is not None
    result = bench.provision(site.console.meter_port, "solar-roof-1")
    assert result.returncode == 0, result.stdout + result.stderr
    for n, step in enumerate(STEPS, 1):
        assert f"step {n}/{len(STEPS)} {step}:" in result.stdout
    device = bench.device("solar-roof-1")
    assert device is not None and device["status"] == "active" and device["enrollments"] == 1
    assert device["fingerprint"] == _board_fingerprint(site)
    conn = sqlite3.connect(bench.verifier.db)
    (attributes,) = conn.execute("SELECT attributes FROM devices WHERE device_id = 'solar-roof-1'").fetchone()
    conn.close()
    assert json.loads(attributes)["generation_register"] == "export_wh"  # a two-way meter: generation leaves
    # The gateway now runs on the board from its own flash: more packets land.
    assert _wait_packets(bench, "solar-roof-1", 2) >= 2
    out = bench.tmp / "out" / "solar-roof-1"
    report = json.loads((out / "report.json").read_text())
    assert report["key"]["fingerprint"] == device["fingerprint"]
    assert report["meter"]["identity"].startswith("sdm120-")
    assert "solar-roof-1" in (out / "report.txt").read_text()
    assert "solar-roof-1" in (out / "label.svg").read_text()
    codes = zxingcpp.read_barcodes(Image.open(out / "label.png"))
    assert [c.text for c in codes] == [f"wattproof:solar-roof-1?fp=sha256:{device['fingerprint']}"]
    receipt = json.loads((site.board.flash / "receipt.json").read_text())
    assert receipt["fingerprint"] == device["fingerprint"] and receipt["inclusion_proof"] is not None
    # Again on the commissioned board: nothing changes, no second enrollment, same key.
    files = {p.name: p.stat().st_mtime_ns for p in site.board.flash.glob("*.mpy")}
    again = bench.provision(site.console.meter_port, "solar-roof-1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all current" in again.stdout and "config: unchanged" in again.stdout
    assert json.loads((out / "report.json").read_text())["changed"] == []
    assert {p.name: p.stat().st_mtime_ns for p in site.board.flash.glob("*.mpy")} == files
    assert bench.known("solar-roof-1")["enrollments"] == 1
    assert _board_fingerprint(site) == device["fingerprint"]
    reflashed = bench.provision(site.console.meter_port, "solar-roof-1", "--reflash")
    assert reflashed.returncode == 0 and re.search(r"firmware: (\d+) of \1 files copied", reflashed.stdout)
    assert bench.known("solar-roof-1")["enrollments"] == 1 and _board_fingerprint(site) == device["fingerprint"]
    before = bench.known("solar-roof-1")["packets"]
    assert _wait_packets(bench, "solar-roof-1", before + 1) > before  # and the gateway runs again


def test_three_boards_in_one_bulk_run(bench: Bench) -> None:
    sites = [bench.board() for _ in range(3)]
    result = bench.provision("auto", "home-{n}")
    assert result.returncode == 0, result.stdout + result.stderr
    fingerprints = set()
    for n in (1, 2, 3):
        device = bench.device(f"home-{n}")
        assert device is not None and device["packets"] >= 1, result.stdout
        fingerprints.add(device["fingerprint"])
    assert fingerprints == {_board_fingerprint(s) for s in sites}
    assert result.stdout.count("commissioned") == 3


def _fast(bench: Bench, name: str) -> str:
    """A profile of name with a reading a second, as the bench's own."""
    profile = sim.load_profile(name)
    profile.update(name=f"bench-{name}", interval_s=1, packet_readings=4, packet_seconds=10)
    path = bench.tmp / f"bench-{name}.json"
    path.write_text(json.dumps(profile))
    return str(path)


def test_meters_without_a_serial_provision_side_by_side(bench: Bench) -> None:
    """Every PZEM-004T reported pzem004t-248 as its serial, so the second one on a verifier was
    refused meter-in-use: a bulk run of three households failed for two."""
    profile = _fast(bench, "devkitc-pzem004t")
    for _ in range(3):
        bench.board("devkitc-pzem004t")
    result = bench.provision("auto", "flat-{n}", profile=profile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("commissioned") == 3 and "gives no serial number" in result.stdout
    conn = sqlite3.connect(bench.verifier.db)
    try:
        serials = [json.loads(r[0])["meter_serial"] for r in conn.execute(
            "SELECT attributes FROM devices WHERE device_id LIKE 'flat-%'")]  # fmt: skip
    finally:
        conn.close()
    assert serials == ["unknown"] * 3  # not a made-up serial: not checked for double use
    # with the nameplate's serial, the meter is checked: the same serial twice is refused
    first, second = bench.board("devkitc-pzem004t"), bench.board("devkitc-pzem004t")
    assert first.console is not None and second.console is not None
    ok = bench.provision(first.console.meter_port, "flat-8", "--meter-serial", "PZ-0042", profile=profile)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    twice = bench.provision(second.console.meter_port, "flat-9", "--meter-serial", "PZ-0042", profile=profile)
    said = twice.stdout + twice.stderr
    assert twice.returncode != 0 and "is enrolled on active device flat-8" in said and "--meter-serial" in said


def test_plan_ids_keeps_skips_and_numbers() -> None:
    status = {"home-1": "active", "home-2": "active", "home-5": "revoked", "charger-9": "active"}.get
    boards = [("p1", "", "home-2"), ("p2", "", None), ("p3", "", "charger-9"), ("p4", "", "home-5"),
              ("p5", "", "old-3"), ("p6", "", None), ("p7", "", "home-8")]  # fmt: skip
    planned = pv.plan_ids(boards, "home-{n}", status)
    assert [(p, d) for p, _, d, _ in planned] == [("p1", "home-2"), ("p2", "home-3"), ("p3", None), ("p4", "home-4"),
                                                  ("p5", None), ("p6", "home-6"), ("p7", "home-8")]  # fmt: skip
    assert "never enrolled: skipped" in planned[4][3]
    assert "already commissioned as device charger-9" in planned[2][3]
    assert [d for _, _, d, _ in pv.plan_ids([("p", "AB12", None)], "m-{serial}", status)] == ["m-ab12"]


def test_auto_skips_commissioned_boards_and_takes_failed_ones_under_new_ids(bench: Bench) -> None:
    sites = [bench.board() for _ in range(2)]
    first = bench.provision("auto", "home-{n}")
    assert first.returncode == 0, first.stdout + first.stderr
    other = bench.board()  # commissioned as another kind of device, on its own port
    assert other.console is not None
    charger = bench.provision(other.console.meter_port, "shed-1")
    assert charger.returncode == 0, charger.stdout + charger.stderr
    blank = bench.board()
    again = bench.provision("auto", "home-{n}")  # the same command, one more board attached
    said = again.stdout + again.stderr
    assert again.returncode == 0, said
    assert "already commissioned as device shed-1: skipped" in said
    assert bench.device("home-3") is not None and bench.device("shed-1") is not None
    assert (bench.device("home-3") or {})["fingerprint"] == _board_fingerprint(blank)
    assert "set up as home-1 before: resumed under that id" in said  # a rerun: home-1 and home-2 keep their ids
    # home-2 is revoked (its board failed in the field): the board is provisioned anew under
    # a new id without a decommission first
    admin = api_key(bench.verifier.db, "admin")
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    body = json.dumps({"reason": "failed in the field"}).encode()
    request = urllib.request.Request(f"{bench.verifier.url}/v1/devices/home-2/revoke", body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status in (200, 201)
    board_of_2 = next(s for s in sites if _board_fingerprint(s) == (bench.device("home-2") or {})["fingerprint"])
    assert board_of_2.console is not None
    fresh = bench.provision(board_of_2.console.meter_port, "home-9")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "set up as 'home-2' (revoked)" in fresh.stdout
    assert (bench.device("home-9") or {})["fingerprint"] == _board_fingerprint(board_of_2)
    assert (bench.device("home-2") or {})["status"] == "revoked"


def test_the_private_key_never_crosses_the_serial_line(bench: Bench) -> None:
    site = bench.board()
    assert site.console is not None
    site.console.capture = []
    result = bench.provision(site.console.meter_port, "meter-capture-1")
    assert result.returncode == 0, result.stdout + result.stderr
    traffic = b"".join(data for _, data in site.console.capture)
    site.console.capture = None
    secret = (site.board.flash / "device.key").read_bytes()
    public = (site.board.flash / "device.pub").read_bytes()
    assert public.hex().encode() in traffic, "the capture holds the provisioning session"
    assert len(traffic) > 30000  # the firmware went over this line too
    for form in (secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret)):
        assert form not in traffic
    for i in range(0, len(secret) - 8 + 1, 4):  # nor any 8-byte piece of it, in any of these forms
        piece = secret[i : i + 8]
        assert piece not in traffic and piece.hex().encode() not in traffic


@pytest.mark.parametrize("step", STEPS[:-1])
def test_a_run_interrupted_at_each_step_resumes(bench: Bench, step: str) -> None:
    site = bench.board()
    assert site.console is not None
    n = STEPS.index(step) + 1
    proc = bench.start_provision(site.console.meter_port, "resume-1")
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if f"step {n}/{len(STEPS)} {step} ..." in line:
            proc.send_signal(signal.SIGKILL)  # the laptop dies, or the technician pulls the cable
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    result = bench.provision(site.console.meter_port, "resume-1")
    assert result.returncode == 0, result.stdout + result.stderr
    device = bench.device("resume-1")
    assert device is not None and device["enrollments"] == 1 and device["packets"] >= 1
    assert device["fingerprint"] == _board_fingerprint(site)


def test_errors_are_clear(bench: Bench) -> None:
    site = bench.board()
    assert site.console is not None
    port = site.console.meter_port

    def fails(result: subprocess.CompletedProcess[str], text: str) -> None:
        assert result.returncode != 0 and text in result.stdout + result.stderr, result.stdout + result.stderr
        assert "Traceback" not in result.stderr

    fails(bench.provision("/dev/no-such-board", "e-1"), "no board at /dev/no-such-board")
    fails(bench.provision("id:NOPE123", "e-1"), "no board with serial number NOPE123")
    with serial.Serial(port, exclusive=True):
        fails(bench.provision(port, "e-1"), "is busy")
    fails(bench.provision(port, "e-1", profile="no-such-profile"), "unknown profile 'no-such-profile'")
    needs_new = json.loads(bench.profile.read_text())
    needs_new["micropython"] = ">=1.99"
    (bench.tmp / "new.json").write_text(json.dumps(needs_new))
    fails(bench.provision(port, "e-1", profile=str(bench.tmp / "new.json")), "wrong MicroPython version")
    args = bench.args(port, "e-1")
    args[args.index("--verifier") + 1] = "http://127.0.0.1:9"
    fails(subprocess.run(args, capture_output=True, text=True, env=bench.env), "is unreachable")
    args = bench.args(port, "e-1")
    args[args.index("--api-key") + 1] = api_key(bench.verifier.db, "utility")
    fails(subprocess.run(args, capture_output=True, text=True, env=bench.env), "needs role installer")
    stranger = bench.tmp / "stranger.pem"
    write_installer_key(stranger, Installer.generate("stranger"))
    args = bench.args(port, "e-1")
    args[args.index("--installer-key") + 1] = str(stranger)
    args[args.index("--installer") + 1] = "stranger"
    fails(subprocess.run(args, capture_output=True, text=True, env=bench.env), "acts for installer anna")
    args[args.index("--api-key") + 1] = api_key(bench.verifier.db, "admin")  # an admin may enroll too
    fails(subprocess.run(args, capture_output=True, text=True, env=bench.env), "not registered with the verifier")
    args = bench.args(port, "e-1")
    args[args.index("--installer-key") + 1] = str(stranger)  # anna's name, someone else's key
    fails(subprocess.run(args, capture_output=True, text=True, env=bench.env), "does not match the key registered")
    # That board has its key and config as e-1 by now: it is not silently renamed.
    fails(bench.provision(port, "dup-1"), "this board is device 'e-1', with its own key: decommission it")
    # The same id on a second board, with its own key.
    first, second = bench.board(), bench.board()
    assert first.console is not None and second.console is not None
    assert bench.provision(first.console.meter_port, "dup-1").returncode == 0
    fails(bench.provision(second.console.meter_port, "dup-1"), "already enrolled with another key")
    # A board that stops answering in the middle of a step, then comes back: the run resumes.
    third = bench.board()
    assert third.console is not None
    proc = bench.start_provision(third.console.meter_port, "flaky-1")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "step 2/9 firmware: " in line and "%" in line:
            third.board.cut_power()
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=60) != 0
    assert "stopped answering during step 2/9 firmware" in out, out
    third.board.power_on(third.console)
    result = bench.provision(third.console.meter_port, "flaky-1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_field_commands(bench: Bench) -> None:
    site = bench.board()
    assert site.console is not None
    port = site.console.meter_port
    assert bench.provision(port, "field-1").returncode == 0
    _wait_packets(bench, "field-1", 2)
    status = bench.wattproof("board", "status", "--port", f"id:{site.serial}")
    assert status.returncode == 0 and "device_id        field-1" in status.stdout, status.stdout + status.stderr
    for _ in range(10):  # `status` restarted the board: its boot event comes once it is up again
        logs = bench.wattproof("board", "logs", "--port", port)
        assert logs.returncode == 0, logs.stdout + logs.stderr
        if "boot" in logs.stdout:
            break
        time.sleep(0.5)
    assert "boot" in logs.stdout, logs.stdout
    old = _board_fingerprint(site)
    rotated = bench.wattproof(
        "board", "rotate-key", "--port", port, "--verifier", bench.verifier.url, "--api-key", bench.key
    )
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    new = _board_fingerprint(site)
    assert new != old and bench.known("field-1")["fingerprint"] == new
    before = bench.known("field-1")["packets"]
    assert _wait_packets(bench, "field-1", before + 1) > before  # signed with the new key, accepted
    again = bench.provision(port, "field-1", "--rotate-key")  # the same, from provisioning
    assert again.returncode == 0 and "key rotated" in again.stdout, again.stdout + again.stderr
    assert _board_fingerprint(site) not in (old, new) and bench.known("field-1")["fingerprint"] == _board_fingerprint(
        site
    )
    before = bench.known("field-1")["packets"]
    assert _wait_packets(bench, "field-1", before + 1) > before
    gone = bench.wattproof(
        "board", "decommission", "--port", port, "--verifier", bench.verifier.url, "--api-key", bench.key
    )
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "field-1: revoked in the verifier" in gone.stdout, gone.stdout
    assert bench.known("field-1")["status"] == "revoked"
    assert not (site.board.flash / "device.key").exists() and not (site.board.flash / "main.py").exists()
    status = bench.wattproof("board", "status", "--port", port)
    assert status.returncode != 0 and "holds no device: it was decommissioned" in status.stderr, status.stderr
    assert "Traceback" not in status.stderr and "ENOENT" not in status.stdout + status.stderr
    reuse = bench.provision(port, "field-1")
    assert reuse.returncode != 0 and "never used again" in reuse.stdout + reuse.stderr, reuse.stdout + reuse.stderr
    # A board whose provisioning stopped before it was enrolled: nothing is said to be revoked.
    ghost = bench.board()
    assert ghost.console is not None
    proc = bench.start_provision(ghost.console.meter_port, "ghost-1")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "step 7/9 enroll ..." in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert bench.device("ghost-1") is None
    gone = bench.wattproof(
        "board",
        "decommission",
        "--port",
        ghost.console.meter_port,
        "--verifier",
        bench.verifier.url,
        "--api-key",
        bench.key,
    )
    assert gone.returncode == 0 and "ghost-1: was never enrolled" in gone.stdout, gone.stdout + gone.stderr
    several = bench.wattproof("board", "status")  # --port auto, with two boards attached
    assert several.returncode != 0 and "boards match auto" in several.stderr, several.stderr
    assert port in several.stderr and ghost.console.meter_port in several.stderr, several.stderr


def test_a_port_held_by_another_program_is_named_busy() -> None:
    from provisioning.link import port_holders

    master, slave = os.openpty()
    path = os.ttyname(slave)
    other = subprocess.Popen(["sleep", "30"], stdin=slave)
    try:
        deadline = time.monotonic() + 10  # Popen returns before the child has run exec
        while not Path(f"/proc/{other.pid}/cmdline").read_bytes().startswith(b"sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert f"pid {other.pid} (sleep)" in port_holders(path)
    finally:
        other.kill()
        other.wait()
        os.close(master)
        os.close(slave)
    assert port_holders(path) == ""
