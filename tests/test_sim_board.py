"""`wattproof sim board` for every profile, inspected with the real mpremote, packets landing."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardware import sim
from tests.conftest import RunningVerifier

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
