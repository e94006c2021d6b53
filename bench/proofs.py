"""Benchmark: proof latency on a large ledger.

    .venv/bin/python bench/proofs.py [--entries 1000000] [--samples 2000] [--engine sqlite|postgresql]

Builds a ledger of --entries entries (ledger.append_many, 10,000 entries a transaction, timed),
then asks for inclusion proofs of random entries at the full size and consistency proofs
between random sizes, each verified, and reports p50/p99 of the time to produce them
from the database (the endpoint's work without HTTP): a SQLite file, or with --engine
postgresql a throw-away PostgreSQL cluster on this machine (tests/pg.py).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier import storage  # noqa: E402
from verifier.log import ledger  # noqa: E402
from verifier.wire import merkle


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    from tests.pg import database_for

    with tempfile.TemporaryDirectory() as tmp, database_for(args.engine, Path(tmp), "ledger.sqlite") as target:
        conn = storage.connect(target)
        t = time.perf_counter()
        for start in range(0, args.entries, 10_000):
            raws = [ledger.encode_entry("bench", {"n": i, "pad": b"\0" * 64}) for i in range(start, start + 10_000)]
            with storage.transaction(conn):
                ledger.append_many(conn, "bench", None, raws[: args.entries - start])
        build = time.perf_counter() - t
        n = ledger.size(conn)
        root = ledger.root(conn, n)
        rng = random.Random(1)
        inclusion, consistency = [], []
        for _ in range(args.samples):
            i = rng.randrange(n)
            t = time.perf_counter()
            proof = ledger.inclusion_proof(conn, i, n)
            inclusion.append(time.perf_counter() - t)
            leaf = merkle.leaf_hash(ledger.entry(conn, i).raw)
            merkle.verify_inclusion(i, n, leaf, proof, root)
        for _ in range(args.samples // 4):
            m = rng.randrange(1, n)
            t = time.perf_counter()
            proof = ledger.consistency_proof(conn, m, n)
            consistency.append(time.perf_counter() - t)
            merkle.verify_consistency(m, n, ledger.root(conn, m), root, proof)
        print(f"ledger    {n:,} entries on {args.engine} built in {build:.0f} s ({n / build:,.0f} appends/s)")
        for name, values in (("inclusion", inclusion), ("consistency", consistency)):
            print(
                f"{name:11} p50 {percentile(values, 0.5) * 1000:.2f} ms, p99 {percentile(values, 0.99) * 1000:.2f} ms,"
                f" max {max(values) * 1000:.2f} ms ({len(values)} proofs, each verified)"
            )
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
