"""Benchmark: building and signing packets with the firmware under MicroPython.

    .venv/bin/python bench/firmware_sign.py [--packets 20]

For 1, 16, 64 and 256 readings per packet, runs the firmware compiled with mpy-cross
(as a board loads it) under the MicroPython unix port with a 96 KB heap, and reports:
milliseconds to encode the readings and fold the Merkle root (build) and to sign the
header (sign), medians over --packets packets; the smallest heap in which one packet
builds and signs (binary search over -X heapsize, 1 KB steps: the peak heap a board
needs, code included); and bytes on the wire per reading.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hardware import micropython  # noqa: E402

BOARD_SCRIPT = Path(__file__).resolve().parent / "firmware_sign_board.py"
SIZES = (1, 16, 64, 256)


def run(firmware: Path, n: int, packets: int, heap: str) -> dict[str, float] | None:
    result = micropython.run(BOARD_SCRIPT, str(n), str(packets), heap=heap, paths=(firmware,))
    match = re.search(r"^RESULT (.*)$", result.stdout, flags=re.M)
    if result.returncode != 0 or match is None:
        return None
    return {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def min_heap_kb(firmware: Path, n: int) -> int:
    lo, hi = 8, 256  # KB; lo fails, hi works
    if run(firmware, n, 1, f"{hi}K") is None:
        raise RuntimeError(f"{n} readings fail even with {hi} KB")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(firmware, n, 1, f"{mid}K") is None:
            lo = mid
        else:
            hi = mid
    return hi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        firmware = Path(tmp)
        micropython.compile_firmware(firmware)
        print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; MicroPython unix port, .mpy firmware")
        print()
        print("| readings | build ms | sign ms | total ms | first packet ms | peak heap KB | bytes | bytes/reading |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        baseline = 0.0
        for n in SIZES:
            r = run(firmware, n, args.packets, micropython.ESP32_HEAP)
            if r is None:
                print(f"| {n} | fails in {micropython.ESP32_HEAP} heap |")
                continue
            baseline = r["after_imports"]
            print(
                f"| {n} | {r['build_ms']:.2f} | {r['sign_ms']:.2f} | {r['total_ms']:.2f} | {r['first_ms']:.1f} "
                f"| {min_heap_kb(firmware, n)} | {int(r['bytes'])} | {r['bytes'] / n:.1f} |"
            )
        print()
        print(f"heap in use after importing the firmware modules: {baseline / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
