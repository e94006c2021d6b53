"""`wattproof verify FILE --log-key VKEY [--witness VKEY ...] [--quorum K] [--json]
[--checkpoint NEWER --consistency PROOF]`: checks a provenance certificate offline and says,
step by step, what it proves (docs/provenance.md).

A file names the checkpoint it was made against. Given a newer checkpoint of the log (GET
/v1/ledger/checkpoint) and the consistency proof from the file's size to it (GET
/v1/ledger/proof/consistency?from=M&to=N), the witnesses' quorum is asked of the newer one.

Needs only cbor2 and cryptography: the package without its server extra (the wheel `make
dist` builds, docs/provenance.md).
Exit code 0: verified; 1: not verified (the layer that failed is named); 2: bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wattproof verify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("file", type=Path, help="the provenance certificate (.json)")
    p.add_argument("--log-key", required=True, metavar="VKEY", help="the log's verifier key (wattproof ledger key)")
    p.add_argument("--witness", action="append", default=[], metavar="VKEY", help="a witness's key (repeat)")
    p.add_argument("--quorum", type=int, help="cosignatures required (default: every --witness)")
    p.add_argument("--json", action="store_true", help="the result as JSON, for machines")
    p.add_argument("--checkpoint", type=Path, metavar="NEWER", help="a newer checkpoint of the log (a signed note)")
    p.add_argument("--consistency", type=Path, metavar="PROOF",
                   help="the consistency proof from the file's checkpoint to NEWER (JSON from the log)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from verifier.log import note
    from verifier.provenance import checks

    args = build_parser().parse_args(argv)
    try:
        log_key = note.Verifier.parse(args.log_key.strip())
        witnesses = [note.Verifier.parse(w.strip()) for w in args.witness]
    except note.NoteError as e:
        print(f"wattproof verify: {e}", file=sys.stderr)
        return 2
    if log_key.cosigner or any(not w.cosigner for w in witnesses):
        print("wattproof verify: --log-key takes the log's key, --witness a witness's cosignature key", file=sys.stderr)
        return 2
    if args.quorum is not None and not 0 <= args.quorum <= len(witnesses):
        print(f"wattproof verify: --quorum {args.quorum} needs that many --witness keys", file=sys.stderr)
        return 2
    if (args.checkpoint is None) != (args.consistency is None):
        print("wattproof verify: --checkpoint and --consistency go together", file=sys.stderr)
        return 2
    try:
        data = args.file.read_bytes()
        newer = args.checkpoint.read_bytes() if args.checkpoint else None
        consistency = args.consistency.read_bytes() if args.consistency else b""
    except OSError as e:
        print(f"wattproof verify: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        report = checks.verify(data, log_key, witnesses, args.quorum, newer, consistency)
    except checks.Refused as e:
        if args.json:
            print(json.dumps({"verified": False, "layer": e.layer, "reason": e.why}))
        else:
            print(f"NOT VERIFIED: {e.layer}: {e.why}")
        return 1
    if args.json:
        print(json.dumps(report.json(), indent=1))
    else:
        for n, step in enumerate(report.steps, 1):
            print(f"{n:2}. {step}")
        print(f"VERIFIED: {report.verdict}")
        print(f"  (this {report.kind} certificate checks out against the log key"
              + (f" and {len(report.witnesses)} witness(es))" if report.witnesses else ")"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
