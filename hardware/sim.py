"""Virtual-board jobs run from the host: the firmware itself runs under MicroPython."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hardware import micropython
from verifier import cose
from verifier.packet import MAX_READINGS

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
) -> list[Path]:
    """Builds packets with the firmware under MicroPython into out; returns their paths in order.

    Also writes out/device-key.sec1. Without key_hex the key is born on the virtual board.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = micropython.run(MAKE_PACKETS, str(out), str(readings), str(packets), key_hex, str(start_ts), heap=heap)
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
