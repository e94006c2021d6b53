"""Benchmark: issuing one hour of certificates for many producers.

    .venv/bin/python bench/certificates.py [--producers 10000] [--engine sqlite|postgresql]

Enrolls --producers producer devices the real way (installer signature, proof of
possession), ingests one signed packet of 70 one-minute readings per device through the
verifier's ingest (batches of 64 packets, every check), so that each device has one
complete, measured hour; then times `issuance.issue_pending` issuing that hour for all
of them in one transaction (a ledger entry and a bundle each), and `wattproof ledger
audit`'s replay of the result. Target (SQLite): issuing under 5 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests import forge  # noqa: E402
from tests.enroll import enroll, es256_signer, record  # noqa: E402
from verifier import storage
from verifier.audit import replay  # noqa: E402
from verifier.certificates import issuance
from verifier.devices import ingest
from verifier.log import note
from verifier.wire.packet import GENESIS  # noqa: E402

HOUR = 3600
READINGS = 70  # one-minute readings from the hour's start: the hour and 10 minutes more


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producers", type=int, default=10_000)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    from tests.pg import run_on

    return run_on(args.engine, lambda target: _run(args, target))


def _run(args: argparse.Namespace, target: str) -> int:
    db = storage.connect(target)
    hour = int(time.time()) // HOUR * HOUR - 2 * 86400
    t = time.perf_counter()
    packets: list[bytes] = []
    for i in range(args.producers):
        key = ec.derive_private_key(i + 1, ec.SECP256R1())
        device_id = f"pv-{i:05d}"
        enroll(db, record(device_id, forge.point(key), capacity_w=5000), es256_signer(key))
        ts = [hour + 60 * m for m in range(READINGS)]
        readings = [forge.meter(m, t_, 0, 10_000 + 30 * m) for m, t_ in enumerate(ts)]
        packets.append(forge.packet(key, forge.header_map(device_id, 0, readings, ts, GENESIS), readings))
    enrolled = time.perf_counter() - t
    t = time.perf_counter()
    for b in range(0, len(packets), 64):
        results = ingest.accept_batch(db, packets[b : b + 64])
        assert all(isinstance(r, ingest.Outcome) for r in results), results[:1]
    ingested = time.perf_counter() - t
    print(
        f"setup     {args.producers} producers enrolled in {enrolled:.1f} s, their packets ingested in {ingested:.1f} s"
    )
    log = note.Signer.generate("bench.example/log")
    t = time.perf_counter()
    with storage.transaction(db):
        issued, skipped = issuance.issue_pending(db, int(time.time()), log.name)
    seconds = time.perf_counter() - t
    wh = sum(b["bundle_quantity"] for b in issued)
    print(f"engine    {args.engine}")
    print(
        f"issue     {len(issued)} bundles ({wh:,} Wh) for one hour of {args.producers} producers in {seconds:.2f} s"
        f" ({seconds / max(1, len(issued)) * 1000:.2f} ms a bundle); {len(skipped)} hours skipped"
    )
    t = time.perf_counter()
    report: Any = replay.audit(db, log.verifier())
    print(
        f"audit     {report.entries} entries, {report.certificates} bundles derived again from the readings in"
        f" {time.perf_counter() - t:.1f} s: {'OK' if report.ok else report.problem}"
    )
    db.close()
    return 0 if report.ok and len(issued) == args.producers else 1


if __name__ == "__main__":
    sys.exit(main())
