"""`wattproof verify FILE --log-key VKEY [--witness VKEY ...] [--quorum K] [--json]
[--checkpoint NEWER --consistency PROOF]`: checks a provenance certificate offline and says,
step by step, what it proves (docs/provenance.md).

A file names the checkpoint it was made against. Given a newer checkpoint of the log (GET
/v1/ledger/checkpoint) and the consistency proof from the file's size to it (GET
/v1/ledger/proof/consistency?from=M&to=N), the witnesses' quorum is asked of the newer one.

Needs only cbor2, cryptography and click: the package without its server extra (the wheel `make
dist` builds, docs/provenance.md).
Exit code 0: verified; 1: not verified (the layer that failed is named); 2: bad usage.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


class Unusable(click.ClickException):
    """Bad usage or an unreadable file: exit code 2, as a usage error."""

    exit_code = 2


@click.command(help=__doc__, short_help="check a provenance certificate offline, step by step")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--log-key", required=True, metavar="VKEY", help="the log's verifier key (wattproof ledger key)")
@click.option("--witness", "witness_keys", multiple=True, metavar="VKEY", help="a witness's key (repeat)")
@click.option("--quorum", type=int, help="cosignatures required (default: every --witness)")
@click.option("--json", "as_json", is_flag=True, help="the result as JSON, for machines")
@click.option("--checkpoint", type=click.Path(path_type=Path), metavar="NEWER",
              help="a newer checkpoint of the log (a signed note)")  # fmt: skip
@click.option("--consistency", type=click.Path(path_type=Path), metavar="PROOF",
              help="the consistency proof from the file's checkpoint to NEWER (JSON from the log)")  # fmt: skip
def verify(file: Path, log_key: str, witness_keys: tuple[str, ...], quorum: int | None, as_json: bool,
           checkpoint: Path | None, consistency: Path | None) -> int:  # fmt: skip
    from verifier.log import note
    from verifier.provenance import checks

    try:
        key = note.Verifier.parse(log_key.strip())
        witnesses = [note.Verifier.parse(w.strip()) for w in witness_keys]
    except note.NoteError as e:
        raise Unusable(str(e)) from None
    if key.cosigner or any(not w.cosigner for w in witnesses):
        raise Unusable("--log-key takes the log's key, --witness a witness's cosignature key")
    if quorum is not None and not 0 <= quorum <= len(witnesses):
        raise Unusable(f"--quorum {quorum} needs that many --witness keys")
    if (checkpoint is None) != (consistency is None):
        raise Unusable("--checkpoint and --consistency go together")
    try:
        data = file.read_bytes()
        newer = checkpoint.read_bytes() if checkpoint else None
        proof = consistency.read_bytes() if consistency else b""
    except OSError as e:
        raise Unusable(f"cannot read {e.filename}: {e.strerror}") from None
    try:
        report = checks.verify(data, key, witnesses, quorum, newer, proof)
    except checks.Refused as e:
        if as_json:
            print(json.dumps({"verified": False, "layer": e.layer, "reason": e.why}))
        else:
            print(f"NOT VERIFIED: {e.layer}: {e.why}")
        return 1
    if as_json:
        print(json.dumps(report.json(), indent=1))
    else:
        for n, step in enumerate(report.steps, 1):
            print(f"{n:2}. {step}")
        print(f"VERIFIED: {report.verdict}")
        print(f"  (this {report.kind} certificate checks out against the log key"
              + (f" and {len(report.witnesses)} witness(es))" if report.witnesses else ")"))  # fmt: skip
    return 0
