"""Benchmark: the gateway firmware running on a virtual board.

    .venv/bin/python bench/gateway.py [--hours 6]

Reports, for a board with an SDM120 on RS485 (the common case) and one with an S0 meter:
- bytes on the wire per reading, amortised over 64-reading packets, next to OCMF records
  of the same readings (one signed OCMF record per reading, and one record of 64);
- milliseconds to close a packet in the running firmware (read the readings back from
  flash, Merkle root, sign, write the packet and the state), and the heap high-water
  mark after collections;
- bytes the firmware writes to flash per reading: the interpreter's own write counter
  (wchar in /proc/PID/io) with the verifier unreachable, so no network bytes count.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from hardware import sim  # noqa: E402
from hardware.simulators import ModbusMeter, PtyLink  # noqa: E402
from hardware.virtual_board import VirtualBoard  # noqa: E402
from verifier.wire.packet import decode_packet  # noqa: E402

SPEED = 600


def ocmf_record(readings: list[tuple[int, int, int]], key: ec.EllipticCurvePrivateKey) -> bytes:
    """An OCMF 1.0 record with import and export registers per reading, signed like a KEBA's."""
    rd = []
    for ts, imp, exp in readings:
        tm = time.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S", time.gmtime(ts))
        for ri, value in (("1-b:1.8.0", imp), ("1-b:2.8.0", exp)):
            rd.append({"TM": tm, "TX": "T", "EF": "", "ST": "G", "RV": value / 1000, "RI": ri, "RU": "kWh"})
    payload = json.dumps(
        {
            "FV": "1.0",
            "GI": "WATTPROOF_ESP32",
            "GS": "0123456789",
            "GV": "0.2.0",
            "PG": "T1",
            "IS": False,
            "IL": "NONE",
            "IT": "NONE",
            "ID": "",
            "RD": rd,
        },
        separators=(",", ":"),
    )
    signature = key.sign(payload.encode(), ec.ECDSA(hashes.SHA256())).hex().upper()
    return f"OCMF|{payload}|{json.dumps({'SD': signature}, separators=(',', ':'))}".encode()


def pending_records(log: bytes) -> int:
    """Whole records in readings.log: [2-byte length][reading][4-byte check]."""
    count = pos = 0
    while pos + 2 <= len(log):
        pos += 2 + int.from_bytes(log[pos : pos + 2], "big") + 4
        count += pos <= len(log)
    return count


def run_board(root: Path, profile: str, hours: float) -> dict[str, float]:
    cfg = {k: v for k, v in sim.load_profile(profile).items() if k not in ("name", "board", "description", "virtual")}
    cfg.update(device_id=f"bench-{profile}", verifier="http://127.0.0.1:9")  # nobody listens on port 9
    board = VirtualBoard(root, cfg, speed=SPEED, virtual_epoch=int(time.time()) - 86400)
    link = meter = None
    if cfg["meter"]["model"] != "s0":
        link = PtyLink()
        board.set_uart(link.board_port)
        meter = ModbusMeter(cfg["meter"]["model"], link.meter_port, speed=SPEED, virtual_epoch=board.virtual_epoch)
    board.start()
    deadline = time.monotonic() + hours * 3600 / SPEED
    while time.monotonic() < deadline:
        if cfg["meter"]["model"] == "s0":
            board.pulse(12)
        time.sleep(0.1)
    assert board.proc is not None
    written = int(re.search(r"wchar: (\d+)", Path(f"/proc/{board.proc.pid}/io").read_text()).group(1))  # type: ignore[union-attr]
    board.stop()
    if meter is not None:
        meter.close()
    if link is not None:
        link.close()
    console = board.console()
    heap = int(re.search(r"HEAP peak (\d+)", console).group(1))  # type: ignore[union-attr]
    closed, total_ms, max_ms = (
        int(x) for x in re.search(r"PACKETS closed (\d+) total_ms (\d+) max_ms (\d+)", console).groups()
    )  # type: ignore[union-attr]
    packets = sorted((board.flash / "out").glob("*.pkt"))
    wire = sum(p.stat().st_size for p in packets)
    packed = sum(len(decode_packet(p.read_bytes()).readings) for p in packets)
    readings = packed + pending_records((board.flash / "readings.log").read_bytes())
    return {
        "readings": readings,
        "packets": closed,
        "close_ms": total_ms / max(1, closed),
        "close_ms_max": max_ms,
        "heap": heap,
        "flash_per_reading": written / max(1, readings),
        "wire_per_reading": wire / max(1, packed),
        "packet_bytes": wire / max(1, len(packets)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6, help="simulated hours per board (at 600x)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for profile in ("devkitc-sdm120", "devkitc-s0"):
            results[profile] = run_board(Path(tmp) / profile, profile, args.hours)
    key = ec.generate_private_key(ec.SECP256R1())
    sample = [(1795000000 + 60 * i, 1204350 + 17 * i, 880120 + 3 * i) for i in range(64)]
    per_reading = sum(len(ocmf_record([r], key)) for r in sample) / 64
    batched = len(ocmf_record(sample, key)) / 64
    print(f"{args.hours:g} simulated hours per board at {SPEED}x, one reading a minute, packets of up to 64 readings")
    print()
    print("| profile | readings | packets | close ms (mean / max) | heap peak KB | flash B/reading | wire B/reading |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for profile, r in results.items():
        print(
            f"| {profile} | {r['readings']:.0f} | {r['packets']:.0f} | {r['close_ms']:.1f} / {r['close_ms_max']:.0f} "
            f"| {r['heap'] / 1024:.1f} | {r['flash_per_reading']:.0f} | {r['wire_per_reading']:.1f} |"
        )
    print()
    print("| the same meter readings (import and export registers) | bytes per reading |")
    print("|---|---:|")
    print(
        f"| wattproof packet of 64 readings (COSE_Sign1 header + CBOR readings) | "
        f"{results['devkitc-sdm120']['wire_per_reading']:.1f} |"
    )
    print(f"| OCMF 1.0, one signed record per reading | {per_reading:.0f} |")
    print(f"| OCMF 1.0, one signed record of 64 readings | {batched:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
