"""Benchmark: provenance certificates, their size and the time `wattproof verify` takes.

    .venv/bin/python bench/provenance.py [--repeat 50] [--bundles 100000]

The test setting of tests/test_green.py (two producers, a charger, certificates issued,
transferred and claimed; 33 ledger entries), both witnesses' cosignatures, then one file
per kind: its size, and the median time of checks.verify over it (CPython, in
process: the time of the check, not of starting the interpreter). Targets: under 4 KB for
a reading, under 32 KB for an hour's certificate, under 20 ms to verify each.

Then the registry map a certificate file's status rests on (verifier/certificates/registry_map.py): the
time to hash a registry of --bundles ranges into its root, which committing a new
registry state costs (once per registry change, not per file), and the leaf paths of one
certificate. Target: under 1 s at 100,000 bundles.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import Database  # noqa: E402
from tests.test_green import S1, _setting  # noqa: E402
from tests.test_provenance import WKEYS, _cosign  # noqa: E402
from verifier import storage
from verifier.app import create_app  # noqa: E402
from verifier.certificates import issuance as issuing
from verifier.certificates import registry, registry_map
from verifier.provenance import build as pf  # noqa: E402
from verifier.provenance import checks
from verifier.wire import merkle  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--bundles", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = Database("sqlite", str(folder / "v.sqlite"), folder / "v.logkey")
        log = create_app(db.config()).extensions["wattproof.log_signer"]
        conn = storage.connect(db.target)
        _setting(conn)
        registry.state_checkpoint(conn, log)
        _cosign(conn, log, folder)
        issuance = issuing.issued_for(conn, "pv-1")[0]
        files = {
            "reading": pf.for_reading(conn, log, "pv-1", 30),
            "packet": pf.for_packet(conn, log, "pv-1", 1),
            "granular certificate (an hour)": pf.for_certificate(conn, log, issuance),
            "charging session (with its OCMF record)": pf.for_session(conn, log, "charger-g", S1.hex()),
        }
        for name, data in files.items():
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                checks.verify(data, log.verifier(), WKEYS)
                times.append(time.perf_counter() - t)
            held = len(json.loads(data)["readings"])
            ms = statistics.median(times) * 1000
            print(f"{name:40} {held:3} readings {len(data):>7,} bytes   verify {ms:6.2f} ms (median of {args.repeat})")
        conn.close()
    leaves = [registry_map.Leaf(1 + 3000 * n, 3000 * (n + 1), f"acct-{n % 97}", "Active", 1_900_000_000, n, None)
              for n in range(args.bundles)]  # fmt: skip
    t = time.perf_counter()
    hashes = registry_map.hashes(leaves)
    root = merkle.root(hashes)
    hashed = time.perf_counter() - t
    t = time.perf_counter()
    path = merkle.inclusion_proof(args.bundles // 2, hashes)
    proved = time.perf_counter() - t
    merkle.verify_inclusion(args.bundles // 2, args.bundles, hashes[args.bundles // 2], path, root)
    print(f"registry map of {args.bundles:,} bundles: leaves and root {hashed * 1000:7.1f} ms,"
          f" one leaf's path {proved * 1000:6.1f} ms ({len(path)} hashes)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
