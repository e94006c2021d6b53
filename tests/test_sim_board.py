"""`wattproof sim board` for every profile, inspected with the real mpremote, packets landing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardware import sim
from tests.conftest import RunningVerifier

pytestmark = pytest.mark.board  # a slow tier: `make check` leaves it out, `make test` runs it

MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def _start(tmp_path: Path, profile: str, verifier: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wattproof.cli",
            "sim",
            "board",
            "--profile",
            profile,
            "--speed",
            "600",
            "--dir",
            str(tmp_path / "board"),
            "--verifier",
            verifier,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    info: dict[str, str] = {}
    for line in proc.stdout:
        if line.startswith("Ctrl-C"):
            break
        key, _, value = line.partition(" ")
        info[key] = value.strip()
    return proc, info


@pytest.mark.parametrize("profile", sim.profile_names())
def test_every_profile_runs_and_answers_mpremote(tmp_path: Path, verifier: RunningVerifier, profile: str) -> None:
    proc, info = _start(tmp_path, profile, verifier.url)
    try:
        flash = tmp_path / "board" / "flash"
        deadline = time.monotonic() + 20
        while not (flash / "device.pub").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        verifier.register(f"virtual-{profile}", flash)
        deadline = time.monotonic() + 90
        stored = 0
        while stored < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            with sqlite3.connect(verifier.db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0]
        console = tmp_path / "board" / "console.log"
        assert stored >= 2, (
            f"{profile}: packets did not land; {console.read_text()[-2000:] if console.exists() else ''}"
        )
        status = subprocess.run(
            [MPREMOTE, "connect", info["console"], "resume", "exec", "import wattproof; wattproof.status()"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        model = sim.load_profile(profile)["meter"]["model"]
        assert f"device_id        virtual-{profile}" in status.stdout
        assert f"meter            {model}" in status.stdout
        assert "last_upload      packet" in status.stdout and "meter_fault      None" in status.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_unknown_profile_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattproof.cli", "sim", "board", "--profile", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "unknown profile 'nope'" in result.stderr and "devkitc-sdm120" in result.stderr


def _interpreters_of(pid: int) -> set[int]:
    """MicroPython processes started by pid (they run in sessions of their own)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"micropython" in (entry / "cmdline").read_bytes():
                out.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_stopping_a_restarted_board_stops_its_interpreter(tmp_path: Path, stop: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattproof.cli", "sim", "board", "--profile", "devkitc-sdm120", "--blank"]
        + ["--dir", str(tmp_path / "board")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "WATTPROOF_VIRTUAL_BOARDS": str(tmp_path / "boards")},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Ctrl-C"):
            break
    seen: set[int] = set()
    try:
        first = _interpreters_of(proc.pid)
        assert len(first) == 1, first
        seen |= first
        os.kill(first.pop(), signal.SIGKILL)  # the board crashes; its supervisor starts it again
        deadline = time.monotonic() + 20
        while not (_interpreters_of(proc.pid) - seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        again = _interpreters_of(proc.pid) - seen
        assert len(again) == 1, "the board did not restart"
        seen |= again
    finally:
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0
    assert not [pid for pid in seen if _alive(pid)], "a MicroPython process outlived its board"


def test_a_provisioned_boards_folder_is_not_taken_over(tmp_path: Path) -> None:
    flash = tmp_path / "board" / "flash"
    flash.mkdir(parents=True)
    (flash / "config.json").write_text('{"device_id": "roof-7"}')
    result = subprocess.run(
        [sys.executable, "-m", "wattproof.cli", "sim", "board", "--profile", "devkitc-sdm120"]
        + ["--dir", str(tmp_path / "board"), "--device-id", "other-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "holds board 'roof-7'" in result.stderr, result.stderr
    assert "--blank" in result.stderr and "Traceback" not in result.stderr
    assert '"roof-7"' in (flash / "config.json").read_text()
