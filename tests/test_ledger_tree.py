"""The stored ledger tree against the pure RFC 9162 reference in verifier.wire.merkle."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ENGINES, Database, make_database
from verifier import storage
from verifier.log import checkpoints, ledger, note
from verifier.wire import merkle


@pytest.fixture(scope="module", params=ENGINES)
def tree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[storage.Connection, list[bytes]]:
    """70 entries on each engine (the node ids every backend stores come from verifier.wire.merkle)."""
    db = storage.connect(make_database(request.param, tmp_path_factory.mktemp("tree"), request).target)
    leaves = []
    for i in range(70):
        with storage.transaction(db):
            ledger.append(db, "test", None, {"n": i})
        leaves.append(merkle.leaf_hash(ledger.encode_entry("test", {"n": i})))
    return db, leaves


def test_roots_of_every_size(tree: tuple[storage.Connection, list[bytes]]) -> None:
    db, leaves = tree
    assert ledger.size(db) == 70
    for n in range(71):
        assert ledger.root(db, n) == merkle.root(leaves[:n]), n


def test_inclusion_proofs_match_the_reference(tree: tuple[storage.Connection, list[bytes]]) -> None:
    db, leaves = tree
    for n in range(1, 71):
        for i in range(n):
            proof = ledger.inclusion_proof(db, i, n)
            assert proof == merkle.inclusion_proof(i, leaves[:n]), (i, n)
            merkle.verify_inclusion(i, n, leaves[i], proof, ledger.root(db, n))


def test_consistency_proofs_match_the_reference(tree: tuple[storage.Connection, list[bytes]]) -> None:
    db, leaves = tree
    for n in range(1, 71):
        for m in range(1, n + 1):
            proof = ledger.consistency_proof(db, m, n)
            assert proof == merkle.consistency_proof(m, leaves[:n]), (m, n)
            merkle.verify_consistency(m, n, ledger.root(db, m), ledger.root(db, n), proof)


def test_bad_proof_requests(tree: tuple[storage.Connection, list[bytes]]) -> None:
    db, _ = tree
    for index, size in ((5, 5), (0, 71)):
        with pytest.raises(merkle.ProofError):
            ledger.inclusion_proof(db, index, size)
    for size1, size2 in ((0, 3), (4, 3)):
        with pytest.raises(merkle.ProofError):
            ledger.consistency_proof(db, size1, size2)


def test_checkpoints_are_signed_stored_and_reused(tree: tuple[storage.Connection, list[bytes]]) -> None:
    db, leaves = tree
    signer = note.Signer.generate("wattproof.test/ledger")
    first = checkpoints.publish(db, signer).note
    assert checkpoints.publish(db, signer).note == first  # the ledger did not grow: the same one
    assert checkpoints.at_size(db, 70) is not None and checkpoints.latest(db).note == first  # type: ignore[union-attr]
    opened = note.open_note(first, [signer.verifier()])
    cp = note.Checkpoint.parse(opened.text)
    assert (cp.origin, cp.size, cp.root) == ("wattproof.test/ledger", 70, merkle.root(leaves))


def test_the_stored_nodes_are_the_ones_the_pure_arithmetic_names(tree: tuple[storage.Connection, list[bytes]]) -> None:
    db, leaves = tree
    named = {node for i in range(70) for node in merkle.appended_nodes(i) if merkle.stored(node)}
    stored = {(int(level), int(i)) for level, i, _ in db.execute("SELECT level, idx, hash FROM ledger_nodes")}
    assert stored == named
    for level, i in named:  # each is the root of its 2**level leaves
        (h,) = db.execute("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?", (level, i)).fetchone()
        assert bytes(h) == merkle.root(leaves[i << level : (i + 1) << level])


def test_proof_node_ids_cover_exactly_the_proof_ranges() -> None:
    for size in range(1, 40):
        for index in range(size):
            ranges = merkle.inclusion_ranges(index, size)
            assert len(ranges) == merkle.inclusion_length(index, size)
            for (lo, hi), parts in zip(ranges, merkle.inclusion_nodes(index, size), strict=True):
                covered = [leaf for level, i in parts for leaf in range(i << level, (i + 1) << level)]
                assert covered == list(range(lo, hi)) and not lo <= index < hi
        for size1 in range(1, size + 1):
            for (lo, hi), parts in zip(
                merkle.consistency_ranges(size1, size), merkle.consistency_nodes(size1, size), strict=True
            ):
                covered = [leaf for level, i in parts for leaf in range(i << level, (i + 1) << level)]
                assert covered == list(range(lo, hi))


def test_proof_errors_say_what_was_expected_and_what_was_found() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(11)]
    good_root, proof = merkle.root(leaves), merkle.inclusion_proof(4, leaves)
    other = merkle.root(leaves[:10])
    with pytest.raises(merkle.ProofError) as wrong_root:
        merkle.verify_inclusion(4, 11, leaves[4], proof, other)
    assert good_root.hex() in str(wrong_root.value) and other.hex() in str(wrong_root.value)
    with pytest.raises(merkle.ProofError, match=f"has {len(proof) - 1} hashes, expected {len(proof)}"):
        merkle.verify_inclusion(4, 11, leaves[4], proof[:-1], good_root)
    consistency = merkle.consistency_proof(6, leaves)
    with pytest.raises(merkle.ProofError, match=f"has {len(consistency) + 1} hashes, expected {len(consistency)}"):
        merkle.verify_consistency(6, 11, merkle.root(leaves[:6]), good_root, [*consistency, good_root])
    with pytest.raises(merkle.ProofError) as wrong_old:
        merkle.verify_consistency(6, 11, other, good_root, consistency)
    assert other.hex() in str(wrong_old.value) and merkle.root(leaves[:6]).hex() in str(wrong_old.value)


def test_appending_many_at_once_builds_the_same_tree(
    tree: tuple[storage.Connection, list[bytes]], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db, leaves = tree
    other = storage.connect(make_database(db.engine, tmp_path, request).target)
    raws = [ledger.encode_entry("test", {"n": i}) for i in range(70)]
    with storage.transaction(other):
        ledger.append_many(other, "test", None, raws[:5])
    with storage.transaction(other):
        ledger.append_many(other, "test", None, raws[5:9])
        ledger.append_many(other, "test", None, raws[9:])
    assert ledger.size(other) == 70
    nodes = "SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx"
    assert [tuple(r) for r in other.execute(nodes)] == [tuple(r) for r in db.execute(nodes)]
    for n in (1, 9, 64, 70):
        assert ledger.root(other, n) == merkle.root(leaves[:n])


def test_a_transaction_knows_the_root_it_appended_to(database: Database) -> None:
    db = storage.connect(database.target)
    raws = [ledger.encode_entry("test", {"n": i}) for i in range(41)]
    for lo, hi in ((0, 1), (1, 2), (2, 7), (7, 32), (32, 41)):
        with storage.transaction(db):
            assert ledger.appended_head(db) is None  # nothing appended in this one yet
            ledger.append_many(db, "test", None, raws[lo:hi])
            head = ledger.appended_head(db)
        assert head == (hi, merkle.root([merkle.leaf_hash(r) for r in raws[:hi]]))
        assert head == (ledger.size(db), ledger.root(db, hi))
    assert ledger.appended_head(db) is None  # outside a transaction


def test_the_upper_levels_kept_per_connection_give_the_same_proofs(
    tree: tuple[storage.Connection, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node cache (levels from CACHED_FROM_LEVEL, here 2 so that 70 entries use it): the
    same proofs cold and warm, nothing kept from inside a transaction, and a cache at its
    bound emptied, never grown past it."""
    db, leaves = tree
    monkeypatch.setattr(ledger, "CACHED_FROM_LEVEL", 2)
    monkeypatch.setattr(ledger, "CACHE_MOST", 12)
    ledger._caches.pop(db, None)
    with storage.transaction(db):
        ledger.inclusion_proof(db, 5, 70)
    assert not ledger._caches[db]  # read inside a transaction: not kept
    for _ in range(2):  # cold, then warm
        for n in (33, 64, 70):
            for i in range(n):
                assert ledger.inclusion_proof(db, i, n) == merkle.inclusion_proof(i, leaves[:n]), (i, n)
            for m in range(1, n):
                assert ledger.consistency_proof(db, m, n) == merkle.consistency_proof(m, leaves[:n]), (m, n)
        cache = ledger._caches[db]
        assert cache and len(cache) <= 12 and all(level >= 2 for level, _ in cache)
