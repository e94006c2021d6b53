"""Benchmark: a month of 15-minute allocation for a community of 100 members.

    .venv/bin/python bench/communities.py [--producers 20] [--consumers 80] [--days 31]
                                          [--engine sqlite|postgresql]

Enrolls the members the real way and ingests a meter reading every quarter hour of the month
for each (a day a packet, through every ingest check); makes them one community with the
default dynamic key from the month's first step; then times the allocation of every step
(`operation.steps`, as `GET /v1/communities/{id}/allocation` computes it), the month's
settlement statement, and the per-step CSV. Target (SQLite): the allocation under 2 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests import forge  # noqa: E402
from tests.enroll import enroll, es256_signer, record  # noqa: E402
from verifier import storage
from verifier.communities import operation  # noqa: E402
from verifier.devices import ingest
from verifier.wire.packet import GENESIS, decode_packet  # noqa: E402

Q = 900


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producers", type=int, default=20)
    parser.add_argument("--consumers", type=int, default=80)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    from tests.pg import run_on

    return run_on(args.engine, lambda target: _run(args, target))


def _run(args: argparse.Namespace, target: str) -> int:
    db = storage.connect(target)
    month = datetime(2026, 10, 1, tzinfo=UTC)
    start = int(month.timestamp())
    steps = args.days * 96
    members = [(f"pv-{n:03d}", "producer") for n in range(args.producers)]
    members += [(f"home-{n:03d}", "consumer") for n in range(args.consumers)]
    t = time.perf_counter()
    readings_in = 0
    for n, (device_id, role) in enumerate(members):
        key = ec.derive_private_key(n + 1, ec.SECP256R1())
        enroll(db, record(device_id, forge.point(key), role=role, capacity_w=30_000), es256_signer(key))
        register, prev, packets = 100_000, GENESIS, []
        for day in range(args.days + 1):
            ts, readings = [], []
            for q in range(96):
                number = day * 96 + q
                at = start + number * Q
                hour = q // 4
                if role == "producer":
                    step_wh = max(0, 900 - 25 * (hour - 13) ** 2) * (3 + n % 4) // 10  # a sunny day
                    readings.append(forge.meter(number, at, 0, register))
                else:
                    step_wh = 60 + (n % 9) * 10 + (120 if 18 <= hour <= 21 else 0)
                    readings.append(forge.meter(number, at, register, 0))
                ts.append(at)
                register += step_wh
            data = forge.packet(key, forge.header_map(device_id, day, readings, ts, prev), readings)
            prev = decode_packet(data).header_hash
            packets.append(data)
            readings_in += len(readings)
        results = ingest.accept_batch(db, packets, now=start + (args.days + 1) * 86400)
        assert all(isinstance(r, ingest.Outcome) for r in results), results[:1]
    with storage.transaction(db):
        operation.create(db, "bench", "Bench community", "bench-grid", "EUR", start, "0.15", now=start)
        for device_id, _ in members:
            operation.add_member(db, "bench", device_id, start)
    print(f"setup     {len(members)} members ({args.producers} producers), {readings_in:,} readings ingested in"
          f" {time.perf_counter() - t:.0f} s")  # fmt: skip
    print(f"engine    {args.engine}")
    t = time.perf_counter()
    rows = operation.steps(db, "bench", start, start + steps * Q)
    allocation = time.perf_counter() - t
    assert len(rows) == steps
    for s in rows:
        allocated = sum(s.allocated.values())
        assert allocated == min(sum(s.production.values()), sum(s.consumption.values()))
        assert all(s.allocated[d] <= c for d, c in s.consumption.items())
    shared = sum(sum(s.allocated.values()) for s in rows)
    print(f"allocate  {steps} steps x {len(members)} members in {allocation:.2f} s ({shared:,} Wh shared)")
    t = time.perf_counter()
    statement = operation.settlement(db, "bench", month.strftime("%Y-%m"))
    print(f"settle    the month's statement, {len(statement['flows'])} consumer-producer flows, total"
          f" {statement['total_amount']} EUR, in {time.perf_counter() - t:.2f} s")  # fmt: skip
    t = time.perf_counter()
    text = operation.to_csv(rows, "allocated")
    print(f"export    the per-step CSV ({len(text):,} bytes) in {time.perf_counter() - t:.2f} s")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
