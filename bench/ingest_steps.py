"""Benchmark: where a batch's time goes, in one process without HTTP.

    .venv/bin/python bench/ingest_steps.py [--engine sqlite|postgresql] [--devices 2]
                                           [--packets 500] [--batch 16] [--readings 64]

Packets are built and signed beforehand by the firmware under MicroPython, as for
bench/ingest.py; then `ingest.accept_batch` takes them batch by batch, devices in turn,
with the log key publishing each batch's checkpoint, as the server does. Per batch it
reports the time before the transaction (decoding, signatures, Merkle roots, the chain
and register checks, the ledger entries' encoding), the rows written before the write
lock (PostgreSQL; on SQLite the lock comes with BEGIN), the time the write lock is held
and, within it, the COMMIT. The time the lock is held bounds what several workers can
ingest together, whatever the cores: at most batch / held packets a second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from hardware import sim  # noqa: E402
from tests.enroll import enroll, es256_signer, record  # noqa: E402
from verifier import settings, storage
from verifier.devices import ingest  # noqa: E402


class Clock:
    """Per-batch timings, filled by the wrappers below."""

    def __init__(self) -> None:
        self.batch: dict[str, float] = {}
        self.rows: list[dict[str, float]] = []

    def add(self, step: str, seconds: float) -> None:
        self.batch[step] = self.batch.get(step, 0.0) + seconds


def _instrument(conn: Any, clock: Clock) -> None:
    """Wraps this connection's transaction so that its steps are timed (this process only)."""
    real_transaction = conn.transaction

    @contextmanager
    def transaction() -> Iterator[Any]:
        entered = time.perf_counter()
        with real_transaction() as c:
            # SQLite takes the lock with BEGIN.
            locked = entered if c.engine == "sqlite" else c.scratch["bench.locked"]
            clock.add("before the lock", locked - entered)
            yield c
            c.flush()
            committing = time.perf_counter()
        done = time.perf_counter()
        clock.add("commit", done - committing)
        clock.add("lock held", done - locked)

    conn.transaction = transaction
    if conn.engine == "postgresql":  # the lock is taken by a statement: note when it returns
        real_execute = conn.execute

        def execute(sql: str, params: Any = ()) -> Any:
            result = real_execute(sql, params)
            if "pg_advisory_xact_lock" in sql and "bench.locked" not in conn.scratch:
                conn.scratch["bench.locked"] = time.perf_counter()
            return result

        conn.execute = execute


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--packets", type=int, default=500, help="per device")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--readings", type=int, default=64)
    args = parser.parse_args()
    from tests.pg import cluster_for

    with cluster_for(args.engine) as cluster, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = cluster.new_database() if cluster is not None else str(work / "verifier.sqlite")
        signer = settings.log_signer({**settings.DEFAULTS, "DATABASE": db, "LOG_KEY_FILE": work / "log.key"})
        conn = storage.connect(db)
        start = int(time.time()) - 60 * args.packets * args.readings - 86400
        print(f"signing {args.devices} x {args.packets} packets of {args.readings} readings under MicroPython ...")
        streams = []
        for d in range(args.devices):
            key_hex = f"{d + 1:064x}"
            paths = sim.make_packets(
                work / f"dev{d}", args.readings, args.packets, key_hex=key_hex, start_ts=start, device_id=f"bench-{d}"
            )
            pub = (work / f"dev{d}" / "device-key.sec1").read_bytes()
            key = ec.derive_private_key(int(key_hex, 16), ec.SECP256R1())
            enroll(conn, record(f"bench-{d}", pub, capacity_w=10**9), es256_signer(key))
            streams.append([p.read_bytes() for p in paths])
        clock = Clock()
        _instrument(conn, clock)
        for i in range(0, args.packets, args.batch):
            for stream in streams:
                clock.batch = {}
                t = time.perf_counter()
                results = ingest.accept_batch(conn, stream[i : i + args.batch], publish=signer)
                total = time.perf_counter() - t
                assert all(isinstance(r, ingest.Outcome) and not r.duplicate for r in results), results
                clock.batch["whole batch"] = total
                inside = clock.batch["before the lock"] + clock.batch["lock held"]
                clock.batch["checks, before the transaction"] = total - inside
                clock.rows.append(clock.batch)
        conn.close()
    steps = ["whole batch", "checks, before the transaction", "before the lock", "lock held", "commit"]
    print(f"{args.engine}; {len(clock.rows)} batches of {args.batch} packets of {args.readings} readings; one process")
    for step in steps:
        values = sorted(row[step] * 1000 for row in clock.rows)
        print(f"  {step:32} p50 {statistics.median(values):6.2f} ms   mean {statistics.fmean(values):6.2f} ms")
    held = statistics.fmean(row["lock held"] for row in clock.rows)
    print(f"  the lock bounds workers together at {args.batch / held:,.0f} packets/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
