"""Benchmark: the charger signing a session's OCMF record, under MicroPython.

    .venv/bin/python bench/ocmf_sign.py [--sessions 30]

Runs the firmware's ocmf.py (source, as tests/firmware/sign_ocmf.py loads it) under the
MicroPython unix port with a 96 KB heap, the heap of an ESP32 without PSRAM, for
--sessions stops with a token and as many without, and reports the median and worst
milliseconds to build and sign the record, and the heap bytes allocated while doing it
(garbage the next collection frees: what must fit beside the gateway's own state).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hardware import micropython  # noqa: E402

SCRIPT = micropython.ROOT / "tests" / "firmware" / "sign_ocmf.py"
KEY = "5a1e" * 16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases.txt"
        lines = []
        for i in range(args.sessions):
            start = 1_764_000_000 + i * 14_400
            token = f"{i:02x}" * 32 if i % 2 == 0 else "-"
            lines.append(f"charger-1 {100 + i} {token} {start} 2 {i * 11_100} {start + 5400} 2 {(i + 1) * 11_100}\n")
        cases.write_text("".join(lines))
        result = micropython.run(SCRIPT, KEY, str(cases), paths=(micropython.ROOT / "firmware",))
    if result.returncode != 0:
        sys.exit(result.stderr)
    rows = [line.split() for line in result.stdout.splitlines()[1::2]]
    ms = [int(r[1]) for r in rows]
    heap = [int(r[2]) for r in rows]
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(
        f"OCMF sign on the board (MicroPython unix port, 96 KB heap), {len(rows)} sessions: "
        f"median {statistics.median(ms):.0f} ms, worst {max(ms)} ms (the first fills the signing table); "
        f"heap allocated median {statistics.median(heap) / 1024:.1f} KB, worst {max(heap) / 1024:.1f} KB"
    )


if __name__ == "__main__":
    main()
