"""The `wattproof` command as a user runs it: each subcommand that exists, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from verifier.packet import decode_packet, verify_packet

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


def test_sample_packet_writes_a_packet_and_pem_key(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    result = subprocess.run(
        [*WATTPROOF, "sim", "sample-packet", "--readings", "16", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    key = load_pem_public_key((out / "device-key.pub.pem").read_bytes())
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    packet = decode_packet((out / "packet.cbor").read_bytes())
    verify_packet(packet, point)
    assert packet.header.count == 16


def test_sample_packet_refuses_too_many_readings(tmp_path: Path) -> None:
    result = subprocess.run(
        [*WATTPROOF, "sim", "sample-packet", "--readings", "257", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "1..256" in result.stderr and "Traceback" not in result.stderr


def _demo(workdir: Path, packets: int) -> str:
    result = subprocess.run(
        [*WATTPROOF, "demo", "--packets", str(packets), "--readings", "32", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo OK" in result.stdout
    return result.stdout


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = _demo(tmp_path, 3)
    assert "packets accepted : 3 of 3 sent" in out
    assert "stored in SQLite : 3 packets, 96 readings" in out
    assert (tmp_path / "verifier.sqlite").exists() and (tmp_path / "board-flash" / "device.key").exists()
    # A second run on the same board and database continues the chain instead of restarting it.
    assert "stored in SQLite : 5 packets, 160 readings" in _demo(tmp_path, 2)
