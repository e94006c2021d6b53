"""The authoritative append-only ledger: typed entries in an RFC 9162 Merkle tree.

Storage (SQLite): `ledger` holds each entry's deterministic CBOR and its leaf hash;
`ledger_nodes` holds the hash of every complete subtree (level >= 1), written when its last
leaf is appended; `checkpoints` holds every checkpoint handed out, as its signed note.
Proofs and roots are assembled from at most O(log n) stored nodes per hash, never by
rescanning the log. The tree arithmetic itself is verifier.merkle's; this module only
stores and fetches. Entries are never updated or deleted: a correction is a new entry.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from verifier import merkle, note, strict_cbor

# Tables: verifier/migrations.py (ledger, ledger_nodes, checkpoints).


@dataclass(frozen=True)
class Entry:
    index: int
    kind: str
    device_id: str | None
    body: dict[str, Any]
    raw: bytes


def encode_entry(kind: str, fields: dict[str, Any]) -> bytes:
    return strict_cbor.dumps({"kind": kind, **fields})


def size(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT MAX(idx) FROM ledger").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def append(db: sqlite3.Connection, kind: str, device_id: str | None, fields: dict[str, Any]) -> int:
    """Appends one entry inside the caller's transaction; returns its index."""
    return append_encoded(db, kind, device_id, encode_entry(kind, fields))


def append_encoded(db: sqlite3.Connection, kind: str, device_id: str | None, raw: bytes) -> int:
    """append() of an entry encode_entry(kind, ...) already made."""
    index = size(db)
    h = merkle.leaf_hash(raw)
    db.execute(
        "INSERT INTO ledger (idx, kind, device_id, entry, leaf) VALUES (?, ?, ?, ?, ?)",
        (index, kind, device_id, raw, h),
    )
    # Each time index is a right child, a complete subtree closes one level up.
    i, level = index, 0
    while i & 1:
        h = merkle.node_hash(_node(db, level, i - 1), h)
        i >>= 1
        level += 1
        db.execute("INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)", (level, i, h))
    return index


def _node(db: sqlite3.Connection, level: int, i: int) -> bytes:
    if level == 0:
        row = db.execute("SELECT leaf FROM ledger WHERE idx = ?", (i,)).fetchone()
    else:
        row = db.execute("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?", (level, i)).fetchone()
    if row is None:
        raise LookupError(f"ledger node ({level}, {i}) missing")
    return bytes(row[0])


def _pieces(lo: int, hi: int) -> list[tuple[int, int]]:
    """The complete subtrees (level, index) that make up leaves lo..hi-1, left to right."""
    out = []
    while lo < hi:
        level = 0
        while lo % (2 << level) == 0 and lo + (2 << level) <= hi:
            level += 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def _fetch(db: sqlite3.Connection, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Stored hashes of the given (level, index) subtrees: one indexed query per level."""
    by_level: dict[int, list[int]] = {}
    for level, i in keys:
        by_level.setdefault(level, []).append(i)
    found: dict[tuple[int, int], bytes] = {}
    for level, ids in by_level.items():
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            # "level = ? AND idx IN (...)" searches the primary key; a row-value IN would scan.
            if level == 0:
                rows = db.execute(f"SELECT idx, leaf FROM ledger WHERE idx IN ({marks})", part)
            else:
                rows = db.execute(
                    f"SELECT idx, hash FROM ledger_nodes WHERE level = ? AND idx IN ({marks})", [level, *part]
                )
            for i, h in rows:
                found[(level, int(i))] = bytes(h)
    missing = keys - found.keys()
    if missing:
        raise LookupError(f"ledger nodes missing: {sorted(missing)[:3]}")
    return found


def _range_hashes(db: sqlite3.Connection, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each leaf range, from stored complete subtrees in one round of lookups."""
    pieces = [_pieces(lo, hi) for lo, hi in ranges]
    nodes = _fetch(db, {p for ps in pieces for p in ps})
    out = []
    for ps in pieces:
        h = nodes[ps[-1]]
        for p in reversed(ps[:-1]):
            h = merkle.node_hash(nodes[p], h)
        out.append(h)
    return out


def root(db: sqlite3.Connection, tree_size: int) -> bytes:
    if tree_size == 0:
        return merkle.EMPTY_ROOT
    return _range_hashes(db, [(0, tree_size)])[0]


def inclusion_proof(db: sqlite3.Connection, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[tree_size]). Requires 0 <= index < tree_size <= size(db)."""
    if not 0 <= index < tree_size <= size(db):
        raise merkle.ProofError(f"index {index} outside tree of size {tree_size}")
    ranges, lo, hi = [], 0, tree_size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return _range_hashes(db, ranges[::-1])


def consistency_proof(db: sqlite3.Connection, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 PROOF(size1, D[size2]). Requires 0 < size1 <= size2 <= size(db)."""
    if not 0 < size1 <= size2 <= size(db):
        raise merkle.ProofError(f"sizes {size1} and {size2} do not fit a ledger of {size(db)}")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    return _range_hashes(db, ranges[::-1])


def entry(db: sqlite3.Connection, index: int) -> Entry:
    row = db.execute("SELECT idx, kind, device_id, entry FROM ledger WHERE idx = ?", (index,)).fetchone()
    if row is None:
        raise LookupError(f"no ledger entry {index}")
    return _entry(row)


def _entry(row: Sequence[Any]) -> Entry:
    raw = bytes(row[3])
    body = strict_cbor.loads(raw)
    return Entry(int(row[0]), str(row[1]), row[2], body, raw)


def entries(db: sqlite3.Connection, start: int = 0) -> Iterator[Entry]:
    for row in db.execute("SELECT idx, kind, device_id, entry FROM ledger WHERE idx >= ? ORDER BY idx", (start,)):
        yield _entry(row)


# -- checkpoints ---------------------------------------------------------------------------


def checkpoint(db: sqlite3.Connection, signer: note.Signer) -> bytes:
    """The signed checkpoint of the ledger as it is now; signs and stores a new one if it grew."""
    n = size(db)
    row = db.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    if row is not None and row[0] == n:
        return bytes(row[1])
    r = root(db, n)
    signed = note.sign(note.Checkpoint(signer.name, n, r).text(), signer)
    db.execute(
        "INSERT OR IGNORE INTO checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
        (n, r, signed, int(time.time())),
    )
    stored = db.execute("SELECT note FROM checkpoints WHERE size = ?", (n,)).fetchone()
    return bytes(stored[0])
