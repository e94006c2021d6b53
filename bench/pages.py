"""Benchmark: the web pages' server time on a year of one-minute data for 100 devices.

    .venv/bin/python bench/pages.py [--devices 100] [--days 365] [--samples 5]

One device's year of one-minute meter readings is ingested through the verifier's own checks
(bench/energy.py); what the pages read of a device (its enrollment, its packets and the
registers at every quarter hour that ingest keeps, its chain head, its first and last
readings) is then copied for the other devices,
half of them consumers (bench-1 and its copies import 10 Wh a minute),
all members of one community. The readings themselves are not
copied: no page reads them (energy comes from the register edges). Each page is asked
through the Flask app by a signed-in admin (templates, charts and all); the report gives
p50 and max of the server time per page and the page's size. Target: every page under
300 ms.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.energy import enroll, ingest_year, percentile  # noqa: E402
from verifier import auth, storage  # noqa: E402
from verifier.app import create_app  # noqa: E402
from verifier.communities import operation
from verifier.devices import records, synthetic


def _clone(conn: storage.Connection, source: str, n: int) -> list[str]:
    """Devices bench-2 .. bench-n, each enrolled (half of them consumers), with source's
    packets, register edges, chain head and first and last readings copied as their own."""
    made = []
    for i in range(2, n + 1):
        device_id = f"bench-{i}"
        enroll(conn, device_id, "consumer" if i % 2 == 0 else "producer")
        with storage.transaction(conn):
            synthetic.copy_device(conn, source, device_id)
        made.append(device_id)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE": str(Path(tmp) / "v.sqlite"), "CERTIFICATE_INTERVAL_S": 0})
        conn = storage.connect(app.config["DATABASE"])
        t = time.perf_counter()
        t0 = ingest_year(conn, "bench-1", args.days, role="consumer")
        others = _clone(conn, "bench-1", args.devices)
        edges = records.stored(conn)["register_edges"]
        print(f"data      {args.devices} devices x {args.days} days of one-minute readings ({edges:,} register edges,"
              f" {args.days * 1440:,} readings ingested for bench-1) in {time.perf_counter() - t:.0f} s")  # fmt: skip
        with storage.transaction(conn):
            operation.create(conn, "street", "Street", "bench", "EUR", t0, "0.10", now=t0)
            for d in ["bench-1", *others]:
                operation.add_member(conn, "street", d, t0)
            token = auth.create_key(conn, "bench", "admin")
        client = app.test_client()
        signin = client.get("/signin").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', signin)
        assert csrf is not None
        assert client.post("/signin", data={"csrf_token": csrf.group(1), "api_key": token}).status_code == 302
        last = t0 + args.days * 86400
        day = datetime.fromtimestamp(last - 86400, UTC).strftime("%Y-%m-%d")
        month = datetime.fromtimestamp(last - 86400, UTC).strftime("%Y-%m")
        first = datetime.fromtimestamp(t0, UTC).strftime("%Y-%m-%d")
        month_ago = datetime.fromtimestamp(last - 32 * 86400, UTC).strftime("%Y-%m-%d")
        pages = {
            "overview": "/overview",
            "devices (a page of 50)": "/devices",
            "device, 7 days by hour": "/devices/bench-2?days=7",
            "device, 365 days by day": "/devices/bench-2?days=365",
            "matching, 7 days": "/matching?device_id=bench-2",
            "matching, 31 days": f"/matching?device_id=bench-2&from={month_ago}&to={day}",
            f"community of {args.devices}, a day by step": f"/communities/street?day={day}",
            f"settlement of {args.devices}, a month": f"/communities/street/settlement?month={month}",
            "certificates": "/certificates",
            "ledger": "/ledger",
            "ledger entry": "/ledger/entries/100",
            "consistency": "/ledger/consistency?from=10",
        }
        print(f"pages     server time per page, {args.samples} requests each (first day {first}):")
        for name, path in pages.items():
            times = []
            for _ in range(args.samples):
                t = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (path, r.status_code, r.text[:500])
            bars = r.text.count('class="bar ') + r.text.count('class="cell ')
            print(f"  {name:38} first {times[0] * 1000:7.1f} ms, p50 {percentile(times, 0.5) * 1000:7.1f} ms,"
                  f" max {max(times) * 1000:7.1f} ms, {len(r.data) / 1024:5.0f} KB, {bars:5} chart marks")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
