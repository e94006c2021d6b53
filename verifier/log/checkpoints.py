"""Checkpoints published on their own: signed, stored, served; receipts built from them.

A publisher signs a checkpoint of the ledger as it is and stores it; it runs after a batch
grows the log (inside that batch's transaction, so a batch still makes one commit) and on
an interval in every server process (settings CHECKPOINT_AFTER_BATCH, CHECKPOINT_INTERVAL_S).
It holds the publishing lock (`Connection.publishing()`: the write transaction on SQLite,
an advisory lock of its own on PostgreSQL) and skips when the latest stored checkpoint has
the ledger's size, so two workers never sign two checkpoints of one size; the table's key
on size would refuse a second one anyway. Readers get stored checkpoints and take no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from verifier.jobs import Periodic
from verifier.log import ledger, note
from verifier.storage import Connection
from verifier.wire import merkle

log = logging.getLogger("wattproof.verifier")


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: bytes
    note: bytes  # the signed note, byte for byte as served
    created_at: int


def _row(row: Any) -> Checkpoint | None:
    if row is None:
        return None
    return Checkpoint(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]))


def latest(db: Connection) -> Checkpoint | None:
    return _row(
        db.execute("SELECT size, root, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    )


def at_size(db: Connection, size: int) -> Checkpoint | None:
    return _row(db.execute("SELECT size, root, note, created_at FROM checkpoints WHERE size = ?", (size,)).fetchone())


def sizes_around(db: Connection, size: int) -> tuple[int | None, int | None]:
    """The stored checkpoint sizes just below and just above size (for a helpful 404)."""
    below = db.execute("SELECT MAX(size) FROM checkpoints WHERE size < ?", (size,)).fetchone()[0]
    above = db.execute("SELECT MIN(size) FROM checkpoints WHERE size > ?", (size,)).fetchone()[0]
    return (None if below is None else int(below)), (None if above is None else int(above))


def served(db: Connection, cp: Checkpoint) -> bytes:
    """The checkpoint as served: the log's signed note and every witness cosignature stored
    for its size (verifier/log/cosigning.py), in witness name order."""
    lines = db.execute("SELECT line FROM cosignatures WHERE size = ? ORDER BY witness", (cp.size,)).fetchall()
    return cp.note + "".join(str(r[0]) for r in lines).encode()


def cosigned_by(db: Connection, size: int) -> list[str]:
    return [str(r[0]) for r in db.execute("SELECT witness FROM cosignatures WHERE size = ? ORDER BY witness", (size,))]


def cosigned_after(db: Connection, size: int) -> Checkpoint | None:
    """The latest checkpoint larger than size that a witness cosigned, or None."""
    row = db.execute("SELECT MAX(size) FROM cosignatures WHERE size > ?", (size,)).fetchone()
    return None if row is None or row[0] is None else at_size(db, int(row[0]))


class Pace:
    """When a process signs after a batch: every batch (gap 0), or when its last such
    checkpoint is at least gap seconds old (setting CHECKPOINT_MIN_GAP_S); what a skipped
    batch appended is covered by the next batch's checkpoint, the interval publisher's, or a
    receipt's (covering publishes when no checkpoint holds the entry yet)."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.last = -float("inf")
        self.lock = threading.Lock()

    def due(self) -> bool:
        if self.gap <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            if now - self.last < self.gap:
                return False
            self.last = now
            return True


def sign_current(db: Connection, signer: note.Signer) -> Checkpoint:
    """Inside a write transaction: the checkpoint of the ledger's size now, signed and
    stored unless the latest stored one already has that size (takes the publishing lock
    unless this transaction appended)."""
    head = ledger.appended_head(db)
    if head is not None:
        # This transaction grew the log under the write lock: its size is one no other
        # publisher can see before the commit, so no publishing lock is needed, and the root
        # comes from the right edge the appends kept (no lookups under the lock).
        n, r = head
    else:
        db.take_publish_lock()
        n = ledger.size(db)
        last = latest(db)
        if last is not None and last.size >= n:
            return last
        r = ledger.root(db, n)
    signed = note.sign(note.Checkpoint(signer.name, n, r).text(), signer)
    created = int(time.time())
    insert = "INSERT INTO checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING"
    if head is not None:  # nothing to read back: written with the transaction's other rows
        db.defer_statement("checkpoint", insert, (n, r, signed, created))
        return Checkpoint(n, r, signed, created)
    db.execute(insert, (n, r, signed, created))
    stored = at_size(db, n)
    assert stored is not None
    return stored


def publish(db: Connection, signer: note.Signer) -> Checkpoint:
    """Signs and stores a checkpoint of the ledger if it grew since the latest one."""
    last = latest(db)
    if last is not None and last.size == ledger.size(db):
        return last  # nothing new: no lock taken
    with db.publishing():
        return sign_current(db, signer)


def covering(db: Connection, index: int, signer: note.Signer) -> Checkpoint:
    """A stored checkpoint whose tree holds entry index: the latest, published now if needed."""
    last = latest(db)
    if last is None or last.size <= index:
        last = publish(db, signer)
    return last


def receipt(db: Connection, index: int, signer: note.Signer) -> dict[str, Any]:
    """Where entry index is in the ledger, its inclusion proof, and the checkpoint it is under."""
    return receipt_under(db, index, covering(db, index, signer))


def receipt_under(db: Connection, index: int, cp: Checkpoint) -> dict[str, Any]:
    """receipt() under a given checkpoint that holds entry index (a batch's, once for all)."""
    entry = ledger.entry(db, index)
    return {
        "ledger_index": index,
        "leaf_hash": merkle.leaf_hash(entry.raw).hex(),
        "tree_size": cp.size,
        "inclusion_proof": [h.hex() for h in ledger.inclusion_proof(db, index, cp.size)],
        "checkpoint": served(db, cp).decode(),
    }


class IntervalPublisher(Periodic):
    """A daemon thread that publishes every interval seconds (one per server process)."""

    def __init__(self, connect: Any, signer: note.Signer, interval: float) -> None:
        super().__init__("checkpoint publisher", connect, lambda db: publish(db, signer), interval)
