"""Benchmark: hourly matching of a year for many consumers.

    .venv/bin/python bench/matching.py [--consumers 1000] [--hours 8760] [--engine sqlite|postgresql]

Each consumer is enrolled the real way and its first packet goes through ingest; the rest
of its year is written straight into the tables ingest would have filled for a reading
every quarter hour: the register edges (records.edge_rows' rows, one per quarter hour) and
its chain head, so that a year of 1,000 consumers (35 million quarter hours) is set up in
minutes rather than hours of ingest. Certificates: one bundle per daylight hour (08:00 to
17:59) claimed for each consumer. Then times `matching.hours` + `matching.summary` over the
whole year for every consumer, one after the other, as `GET /v1/matching` computes them.
Target (SQLite): all 1,000 under 30 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests import forge  # noqa: E402
from tests.enroll import enroll, es256_signer, record  # noqa: E402
from verifier import storage
from verifier.certificates import matching, registry
from verifier.certificates import synthetic as certificates_synthetic
from verifier.devices import ingest, records  # noqa: E402
from verifier.devices import synthetic as devices_synthetic
from verifier.wire.packet import GENESIS  # noqa: E402

HOUR = 3600
Q = 900


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--keep", type=Path, help="SQLite: keep the database in this file; reuse it if it exists")
    args = parser.parse_args()
    from tests.pg import database_for

    if args.keep is not None:
        return _run(args, str(args.keep))
    with tempfile.TemporaryDirectory() as tmp, database_for(args.engine, Path(tmp)) as target:
        return _run(args, target)


def _load(q: int, n: int) -> int:
    """Wh used in quarter hour q by consumer n: a daily shape, different per consumer."""
    hour = q // 4 % 24
    return 20 + (n % 7) * 5 + (60 if 7 <= hour <= 9 or 18 <= hour <= 22 else 0) + (q * 7 + n) % 11


def _run(args: argparse.Namespace, target: str) -> int:
    reuse = args.keep is not None and args.keep.exists()
    db = storage.connect(target)
    year = (int(time.time()) - 400 * 86400) // 86400 * 86400
    if reuse:
        span = records.data_span(db)
        assert span is not None, f"{args.keep} holds no readings"
        year = span[0]
    end = year + args.hours * HOUR
    if not reuse:
        _setup(args, db, year, end)
    _measure(args, db, target, year, end)
    db.close()
    return 0


def _setup(args: argparse.Namespace, db: storage.Connection, year: int, end: int) -> None:
    t = time.perf_counter()
    with storage.transaction(db):
        registry.create_account(db, "supplier", "Supplier", "supplier", now=year)
    next_id, claim_index = 1, 10**9
    for n in range(args.consumers):
        key = ec.derive_private_key(n + 1, ec.SECP256R1())
        device_id = f"home-{n:04d}"
        enroll(db, record(device_id, forge.point(key), role="consumer", capacity_w=20_000), es256_signer(key))
        first = forge.meter(0, year, 100_000, 0)
        packet = forge.packet(key, forge.header_map(device_id, 0, [first], [year], GENESIS), [first])
        (result,) = ingest.accept_batch(db, [packet], now=year + 60)
        assert isinstance(result, ingest.Outcome), result
        register, rows = 100_000, []
        for q in range(args.hours * 4):
            t0, register2 = year + q * Q, register + _load(q, n)
            rows.append((device_id, t0 + Q, register2, 0, 0))  # a reading at each quarter hour
            register = register2
        last = forge.meter(1, end, register, 0)
        bundles = []
        for h in range(args.hours):
            if 8 <= h % 24 <= 17:
                quantity = 100 + (h * 13 + n) % 400
                bundles.append((next_id, next_id + quantity - 1, f"pv/{year + h * HOUR}", "pv", year + h * HOUR,
                                "supplier", registry.CLAIMED, end + 86400, claim_index + n, 0))  # fmt: skip
                next_id += quantity
        with storage.transaction(db):
            devices_synthetic.add_edges(db, device_id, rows, last)
            claimed = sum(b[1] - b[0] + 1 for b in bundles)
            claim = (claim_index + n, "supplier", "supplier", device_id, year, end, claimed, end)
            certificates_synthetic.add_claimed(db, bundles, claim)
    print(f"setup     {args.consumers} consumers, {args.hours} hours each ({args.hours * 4 * args.consumers:,} quarter"
          f" hours), in {time.perf_counter() - t:.0f} s")  # fmt: skip


def _measure(args: argparse.Namespace, db: storage.Connection, target: str, year: int, end: int) -> None:
    print(f"engine    {args.engine}")
    times, hourly = [], []
    t = time.perf_counter()
    for n in range(args.consumers):
        t1 = time.perf_counter()
        rows_out = matching.hours(db, year, end, device_id=f"home-{n:04d}")
        total = matching.summary(rows_out)
        times.append(time.perf_counter() - t1)
        hourly.append(total["hourly_match"])
        assert len(rows_out) == args.hours and total["hours_not_measured"] <= 1, total["hours_not_measured"]
    seconds = time.perf_counter() - t
    print(f"matching  {args.consumers} consumers x {args.hours} hours in {seconds:.1f} s: per consumer p50"
          f" {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms;"
          f" hourly match {min(hourly):.1%} to {max(hourly):.1%}")  # fmt: skip
    devices = [f"home-{n:04d}" for n in range(args.consumers)]
    for jobs in (2,):
        t = time.perf_counter()
        report = matching.summaries(target, devices, year, end, jobs)
        seconds = time.perf_counter() - t
        assert [d for d, _ in report] == devices and [r["hourly_match"] for _, r in report] == hourly
        print(f"report    {args.consumers} consumers x {args.hours} hours, {jobs} processes (`wattproof certificates"
              f" match --all --jobs {jobs}`): {seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
