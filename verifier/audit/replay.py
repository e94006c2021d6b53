"""`wattproof ledger audit`: re-derive everything from the ledger and compare it with what is stored.

Replays the entries in order: each leaf hash, each complete-subtree node, each entry's
signatures and rules (installers, enrollments with both signatures, packets against the
device key valid at that time and the device's chain, revocations, rotations,
equivocation evidence), each packet's readings against its signed Merkle root, and each
stored checkpoint's root and signature. Then the tables derived from the ledger (devices,
installers, packets, readings) must equal the replay, every stored witness cosignature
must be of a stored checkpoint and, by a witness whose key is given, verify over it, and
every stored OCMF check of a charger's stop must be the one its readings and keys give.
The first problem is reported with the ledger index it belongs to.

Each ledger entry kind has its handler in its area's module (audit/devices.py,
certificates.py, communities.py, charging.py), which calls the pure rules the live path
calls; a new kind is a new handler there. Each area's module also compares its tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from verifier.audit import certificates, charging, communities, devices
from verifier.audit.state import Bad, Handler, Replay, Report
from verifier.log import note
from verifier.storage import Connection
from verifier.wire import merkle, strict_cbor

__all__ = ["Report", "audit"]

HANDLERS: dict[str, Handler] = {
    **devices.HANDLERS,
    **certificates.HANDLERS,
    **communities.HANDLERS,
    **charging.HANDLERS,
}
# The tables compared once the ledger is replayed, in this order (the first difference is the verdict).
COMPARISONS: tuple[Callable[[Replay], None], ...] = (
    devices.compare_devices,
    certificates.compare_certificates,
    certificates.compare_registry,
    devices.compare_edges,
    communities.compare,
    devices.compare_chains,
    charging.compare,
)


def audit(db: Connection, log_key: note.Verifier, witnesses: Sequence[note.Verifier] = ()) -> Report:
    """Re-derives everything from the ledger; witnesses: the cosigner keys whose stored
    cosignatures are checked (a cosignature by any other witness is counted, unchecked)."""
    report = Report()
    started = time.monotonic()
    try:
        _run(db, log_key, report)
        _check_cosignatures(db, log_key, witnesses, report)
        charging.check_verdicts(db, report)
    except Bad as e:
        report.problem, report.index = e.problem, e.index
    report.seconds = time.monotonic() - started
    return report


def _run(db: Connection, log_key: note.Verifier, report: Report) -> None:
    checkpoints = {
        int(r[0]): (bytes(r[1]), bytes(r[2])) for r in db.execute("SELECT size, root, note FROM checkpoints")
    }
    # Stored nodes, in the order the replay completes them: (level, i) closes with leaf (i + 1) * 2^level - 1.
    nodes = db.execute(
        "SELECT level, idx, hash FROM ledger_nodes ORDER BY ((idx + 1) << CAST(level AS INTEGER)), level"
    )
    replay = Replay(db, report)
    stack: list[tuple[bytes, int]] = []  # the compact range of the tree so far
    _check_checkpoint(0, stack, checkpoints, log_key, report)
    for row in db.execute("SELECT idx, kind, device_id, entry, leaf FROM ledger ORDER BY idx"):
        index, kind, device_id, raw, leaf = int(row[0]), row[1], row[2], bytes(row[3]), bytes(row[4])
        if index != report.entries:
            raise Bad(report.entries, f"ledger entry {report.entries} is missing")
        if merkle.leaf_hash(raw) != leaf:
            raise Bad(index, "stored leaf hash is not the hash of the entry")
        try:
            body = strict_cbor.loads(raw)
        except strict_cbor.CBORProfileError as e:
            raise Bad(index, f"entry is not deterministic CBOR: {e}") from None
        if body.get("kind") != kind:
            raise Bad(index, "kind column differs from the entry")
        handler = HANDLERS.get(kind)
        if handler is None:
            raise Bad(index, f"unknown entry kind {kind!r}")
        handler(replay, index, device_id, body)
        # Tree: fold the leaf in; every complete subtree of 16 leaves or more must be stored exactly.
        h, size, level, i = leaf, 1, 0, index
        while stack and stack[-1][1] == size:
            h = merkle.node_hash(stack.pop()[0], h)
            size, level, i = size * 2, level + 1, i >> 1
            if level < merkle.STORED_FROM_LEVEL:
                continue
            stored = nodes.fetchone()
            if stored is None or (int(stored[0]), int(stored[1]), bytes(stored[2])) != (level, i, h):
                raise Bad(index, f"stored tree node ({level}, {i}) is wrong or missing")
        stack.append((h, size))
        report.entries += 1
        _check_checkpoint(report.entries, stack, checkpoints, log_key, report)
    if nodes.fetchone() is not None:
        raise Bad(None, "tree nodes are stored beyond the ledger")
    if len(checkpoints) > report.checkpoints:
        raise Bad(None, f"a checkpoint is for a size beyond the ledger's {report.entries}")
    for compare in COMPARISONS:
        compare(replay)
    head = db.execute("SELECT size FROM ledger_head WHERE id = 1").fetchone()
    if head is None or int(head[0]) != report.entries:
        raise Bad(None, f"ledger_head says {head and head[0]} entries; the ledger holds {report.entries}")


def _check_checkpoint(
    size: int,
    stack: list[tuple[bytes, int]],
    checkpoints: dict[int, tuple[bytes, bytes]],
    log_key: note.Verifier,
    report: Report,
) -> None:
    if size not in checkpoints:
        return
    root = merkle.EMPTY_ROOT
    if stack:
        root = stack[-1][0]
        for h, _ in reversed(stack[:-1]):
            root = merkle.node_hash(h, root)
    stored_root, signed = checkpoints[size]
    where = size - 1 if size else None
    try:
        text = note.open_note(signed, [log_key]).text
        cp = note.Checkpoint.parse(text)
    except note.NoteError as e:
        raise Bad(where, f"checkpoint at size {size}: {e}") from None
    if (cp.origin, cp.size, cp.root) != (log_key.name, size, root) or stored_root != root:
        raise Bad(where, f"checkpoint at size {size} does not match the ledger")
    report.checkpoints += 1


def _check_cosignatures(
    db: Connection, log_key: note.Verifier, witnesses: Sequence[note.Verifier], report: Report
) -> None:
    """Every stored cosignature is of a stored checkpoint; those of the given witnesses verify
    over that checkpoint, with the time stored beside them."""
    keys = {w.name: w for w in witnesses}
    notes = {int(r[0]): bytes(r[1]) for r in db.execute("SELECT size, note FROM checkpoints")}
    for size, witness, line, when in db.execute(
        "SELECT size, witness, line, cosigned_at FROM cosignatures ORDER BY size, witness"
    ).fetchall():
        size, where = int(size), f"the cosignature by {witness} of size {size}"
        if size not in notes:
            raise Bad(None, f"{where} is of no stored checkpoint")
        key = keys.get(witness)
        if key is None:
            report.cosignatures_unchecked += 1
            continue
        try:
            opened = note.open_note(notes[size] + str(line).encode(), [log_key, key])
        except note.NoteError as e:
            raise Bad(None, f"{where}: {e}") from None
        if dict(opened.cosigned).get(witness) != int(when):
            raise Bad(None, f"{where} is not a cosignature by that witness at the time stored")
        report.cosignatures += 1
