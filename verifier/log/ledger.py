"""The authoritative append-only ledger: typed entries in an RFC 9162 Merkle tree.

Storage: `ledger` holds each entry's deterministic CBOR and its leaf hash;
`ledger_nodes` holds the hash of every complete subtree of 16 leaves or more (level >= 4,
merkle.STORED_FROM_LEVEL), written when its last leaf is appended (the smaller ones are
folded again from their leaves when a proof needs them); `checkpoints` holds every
checkpoint handed out, as its signed note.
Proofs and roots are assembled from at most O(log n) stored nodes per hash, never by
rescanning the log. The tree arithmetic (which node ids an append writes and a proof
reads) is verifier.wire.merkle's, pure; this module only stores and fetches through the
storage seam, the same on every backend. The next index is the `ledger_head` row, read
and advanced under the write lock. Entries are never updated or deleted: a correction is a new entry.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from verifier.log import tiles
from verifier.storage import Connection
from verifier.wire import merkle, strict_cbor

# Tables: verifier/storage/tables.py and migrations.py (ledger, ledger_head, ledger_nodes,
# checkpoints). Other areas read entries through the functions below, never the tables.


@dataclass(frozen=True)
class Entry:
    index: int
    kind: str
    device_id: str | None
    body: dict[str, Any]
    raw: bytes


def encode_entry(kind: str, fields: dict[str, Any]) -> bytes:
    return strict_cbor.dumps({"kind": kind, **fields})


def size(db: Connection) -> int:
    """Entries in the ledger: its one coordinator row, advanced under the write lock."""
    return int(db.execute("SELECT size FROM ledger_head WHERE id = 1").fetchone()[0])


def appended_head(db: Connection) -> tuple[int, bytes] | None:
    """(size, root) of the ledger as the current write transaction left it, from the tree's
    right edge that its appends keep; None when this transaction appended nothing."""
    tail = db.scratch.get("ledger") if db.in_transaction else None
    if tail is None:
        return None
    n, right = tail[0], tail[1]
    if n == 0:
        return 0, merkle.EMPTY_ROOT
    h = right[-1]
    for left in reversed(right[:-1]):  # the edge's subtrees, largest first, fold from the right
        h = merkle.node_hash(left, h)
    return n, h


def append(db: Connection, kind: str, device_id: str | None, fields: dict[str, Any]) -> int:
    """Appends one entry inside the caller's transaction; returns its index."""
    return append_encoded(db, kind, device_id, encode_entry(kind, fields))


def append_encoded(db: Connection, kind: str, device_id: str | None, raw: bytes) -> int:
    """append() of an entry encode_entry(kind, ...) already made. The index is the
    ledger_head row's size, read and advanced in the caller's write transaction (which
    holds the database's write lock, so no two appends see one size). The transaction keeps
    the tree's right edge (the hashes of subtrees(0, size)) in its scratch after the first
    append, so that later appends in it read nothing."""
    return append_many(db, kind, device_id, [raw])


def append_many(db: Connection, kind: str, device_id: str | None, raws: Sequence[bytes]) -> int:
    """Appends encoded entries of one kind in order; returns the first one's index."""
    if not db.in_transaction:
        raise RuntimeError("ledger.append outside a write transaction")
    tail = db.scratch.get("ledger")
    if tail is None:
        n = size(db)
        edge = merkle.subtrees(0, n)
        hashes = _fetch(db, set(edge))
        tail = db.scratch["ledger"] = [n, [hashes[node] for node in edge]]
    first: int = tail[0]
    right: list[bytes] = tail[1]
    entries, closed = [], []
    for index, raw in enumerate(raws, first):
        h = merkle.leaf_hash(raw)
        entries.append((index, kind, device_id, raw, h))
        for level, i in merkle.appended_nodes(index):  # each folds the edge's last subtree into h
            h = merkle.node_hash(right.pop(), h)
            if level >= merkle.STORED_FROM_LEVEL:
                closed.append((level, i, h))
        right.append(h)
    # Deferred: the entries of a whole batch go in with one statement per table, at the
    # transaction's next statement or its commit.
    db.defer_rows("ledger", ("idx", "kind", "device_id", "entry", "leaf"), entries)
    if closed:
        db.defer_rows("ledger_nodes", ("level", "idx", "hash"), closed)
    tail[0] = first + len(entries)
    db.defer_statement("ledger_head", "UPDATE ledger_head SET size = ? WHERE id = 1", (tail[0],))
    return first


# The upper levels of the tree, kept per connection: every proof needs a node of each level,
# and a stored node (a complete subtree) never changes once committed. From level 12 a
# node covers 4,096 entries: at 10,000,000 entries there are 4,882 of them, half a proof's
# nodes. Only nodes read outside a transaction are kept (committed, never rolled back), and
# a cache that reaches its bound is emptied (a ledger of billions: the top refills first).
CACHED_FROM_LEVEL = 12
CACHE_MOST = 16_384
_caches: weakref.WeakKeyDictionary[Connection, dict[merkle.Node, bytes]] = weakref.WeakKeyDictionary()


def _fetch(db: Connection, keys: set[merkle.Node]) -> dict[merkle.Node, bytes]:
    """Hashes of the given nodes: stored ones as the backend fetches them its fastest way
    (the upper levels' from this connection's cache), the small ones below
    merkle.STORED_FROM_LEVEL folded from their leaves, fetched in the same round."""
    small = [k for k in keys if 0 < k[0] < merkle.STORED_FROM_LEVEL]
    wanted = set(keys)
    if small:
        wanted.difference_update(small)
        wanted.update((0, leaf) for node in small for leaf in merkle.below(node))
    found = _stored(db, wanted)
    for node in small:
        found[node] = merkle.root([found[(0, leaf)] for leaf in merkle.below(node)])
    return found


def _stored(db: Connection, keys: set[merkle.Node]) -> dict[merkle.Node, bytes]:
    cache = _caches.setdefault(db, {})
    found: dict[merkle.Node, bytes] = {k: cache[k] for k in keys if k in cache}
    wanted = keys - found.keys() if found else keys
    if wanted:
        fetched = {(level, i): h for level, i, h in db.tree_nodes(wanted)}
        found.update(fetched)
        if not db.in_transaction:
            if len(cache) + len(fetched) > CACHE_MOST:
                cache.clear()
            cache.update((k, h) for k, h in fetched.items() if k[0] >= CACHED_FROM_LEVEL)
    missing = keys - found.keys()
    if missing:
        raise LookupError(f"ledger nodes missing: {sorted(missing)[:3]}")
    return found


def _hashes(db: Connection, parts: Sequence[Sequence[merkle.Node]]) -> list[bytes]:
    """Each range's hash, folded from its stored nodes fetched in one round of lookups."""
    nodes = _fetch(db, {node for ps in parts for node in ps})
    return [merkle.fold(ps, nodes) for ps in parts]


def root(db: Connection, tree_size: int) -> bytes:
    if tree_size == 0:
        return merkle.EMPTY_ROOT
    return _hashes(db, [merkle.subtrees(0, tree_size)])[0]


def inclusion_proof(db: Connection, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[tree_size]). Requires 0 <= index < tree_size <= size(db)."""
    return _proof(db, merkle.inclusion_nodes(index, tree_size), tree_size, f"tree size {tree_size} is larger than")


def consistency_proof(db: Connection, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 PROOF(size1, D[size2]). Requires 0 < size1 <= size2 <= size(db)."""
    return _proof(db, merkle.consistency_nodes(size1, size2), size2, f"sizes {size1} and {size2} do not fit")


def _proof(db: Connection, parts: list[list[merkle.Node]], tree_size: int, what: str) -> list[bytes]:
    try:
        return _hashes(db, parts)
    except LookupError:
        _beyond(db, tree_size, f"{what} the ledger")
        raise


def _beyond(db: Connection, tree_size: int, what: str) -> None:
    """A proof's nodes were not all stored: a tree larger than the ledger is the caller's
    mistake (ProofError). The size is not read before every proof: a node is stored only once
    the whole subtree it covers is, so a tree beyond the ledger always misses one."""
    n = size(db)
    if tree_size > n:
        raise merkle.ProofError(f"{what} ({n})")


def entry(db: Connection, index: int) -> Entry:
    row = db.execute("SELECT idx, kind, device_id, entry FROM ledger WHERE idx = ?", (index,)).fetchone()
    if row is None:
        raise LookupError(f"no ledger entry {index}")
    return _entry(row)


def _entry(row: Sequence[Any]) -> Entry:
    raw = bytes(row[3])
    body = strict_cbor.loads(raw)
    return Entry(int(row[0]), str(row[1]), row[2], body, raw)


# The ledger's device index leaves packet entries out (a device's packets are found through
# the packets table): every search by device says so, in the index's own words.
NOT_PACKETS = "kind <> 'packet'"


def _no_packets(kinds: Sequence[str]) -> None:
    if "packet" in kinds:
        raise ValueError("a device's packet entries are found through the packets table (ingest.packet_entry)")


def of_device(db: Connection, device_id: str, kinds: Sequence[str]) -> list[Entry]:
    """A device's entries of the given kinds (not packets), in order."""
    _no_packets(kinds)
    marks = ", ".join("?" * len(kinds))
    rows = db.execute(
        f"SELECT idx, kind, device_id, entry FROM ledger WHERE device_id = ? AND {NOT_PACKETS} AND kind IN ({marks})"
        " ORDER BY idx",
        (device_id, *kinds),
    ).fetchall()
    return [_entry(r) for r in rows]


def kinds_of_device(db: Connection, device_id: str, leave_out: Sequence[str] = ()) -> list[tuple[int, str]]:
    """(index, kind) of a device's entries, in order, but its packets and the kinds left out."""
    marks = ", ".join("?" * len(leave_out)) or "NULL"
    rows = db.execute(
        f"SELECT idx, kind FROM ledger WHERE device_id = ? AND {NOT_PACKETS} AND kind NOT IN ({marks}) ORDER BY idx",
        (device_id, *leave_out),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def last_index(db: Connection, kinds: Sequence[str], device_id: str | None = None) -> int | None:
    """The index of the last entry of these kinds (of this device), or None."""
    marks = ", ".join("?" * len(kinds))
    where, args = "", ()  # type: tuple[str, tuple[str, ...]]
    if device_id is not None:
        _no_packets(kinds)
        where, args = (f"AND device_id = ? AND {NOT_PACKETS}", (device_id,))
    row = db.execute(f"SELECT MAX(idx) FROM ledger WHERE kind IN ({marks}) {where}", (*kinds, *args)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def newest(db: Connection, kind: str, limit: int) -> list[Entry]:
    """The latest entries of a kind that name no device (registry actions), newest first."""
    rows = db.execute(
        f"SELECT idx, kind, device_id, entry FROM ledger WHERE device_id IS NULL AND {NOT_PACKETS} AND kind = ?"
        " ORDER BY idx DESC LIMIT ?",
        (kind, limit),
    ).fetchall()
    return [_entry(r) for r in rows]


def of_kind_before(db: Connection, kind: str, before: int) -> list[Entry]:
    """Every entry of a kind before an index, in order (the installers an enrollment could name)."""
    rows = db.execute(
        "SELECT idx, kind, device_id, entry FROM ledger WHERE kind = ? AND idx < ? ORDER BY idx", (kind, before)
    ).fetchall()
    return [_entry(r) for r in rows]


def bodies(db: Connection, indexes: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The entries at these indexes, decoded, by index (a few hundred at a time)."""
    out: dict[int, dict[str, Any]] = {}
    for at in range(0, len(indexes), 500):
        chunk = list(indexes[at : at + 500])
        marks = ", ".join("?" * len(chunk))
        for idx, raw in db.execute(f"SELECT idx, entry FROM ledger WHERE idx IN ({marks})", chunk).fetchall():
            out[int(idx)] = strict_cbor.loads(bytes(raw))
    return out


def entries(db: Connection, start: int = 0) -> Iterator[Entry]:
    for row in db.execute("SELECT idx, kind, device_id, entry FROM ledger WHERE idx >= ? ORDER BY idx", (start,)):
        yield _entry(row)


def tile_hashes(db: Connection, tile: tiles.Tile) -> bytes:
    """A tile's contents: its hashes concatenated (an entry bundle: use entry_bundle)."""
    wanted = tile.nodes()
    found = _fetch(db, set(wanted))
    return b"".join(found[node] for node in wanted)


def entry_bundle(db: Connection, tile: tiles.Tile) -> bytes:
    """An entry bundle's contents: its entries, each length-prefixed."""
    span = tile.leaves()
    rows = db.execute(
        "SELECT entry FROM ledger WHERE idx >= ? AND idx < ? ORDER BY idx", (span.start, span.stop)
    ).fetchall()
    if len(rows) != len(span):
        raise LookupError(f"ledger entries {span.start} to {span.stop - 1} are not all stored")
    return tiles.bundle([bytes(r[0]) for r in rows])


def find_leaf(db: Connection, leaf: bytes) -> int | None:
    """The index of the entry whose leaf hash is leaf, or None."""
    row = db.execute("SELECT idx FROM ledger WHERE leaf = ? ORDER BY idx LIMIT 1", (leaf,)).fetchone()
    return None if row is None else int(row[0])
