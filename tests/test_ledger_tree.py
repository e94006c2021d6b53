"""The stored ledger tree against the pure RFC 9162 reference in verifier.merkle."""

from __future__ import annotations

import sqlite3

import pytest

from verifier import ledger, merkle, migrations, note


@pytest.fixture(scope="module")
def tree() -> tuple[sqlite3.Connection, list[bytes]]:
    db = sqlite3.connect(":memory:")
    migrations.upgrade(db)
    leaves = []
    for i in range(70):
        ledger.append(db, "test", None, {"n": i})
        leaves.append(merkle.leaf_hash(ledger.encode_entry("test", {"n": i})))
    return db, leaves


def test_roots_of_every_size(tree: tuple[sqlite3.Connection, list[bytes]]) -> None:
    db, leaves = tree
    assert ledger.size(db) == 70
    for n in range(71):
        assert ledger.root(db, n) == merkle.root(leaves[:n]), n


def test_inclusion_proofs_match_the_reference(tree: tuple[sqlite3.Connection, list[bytes]]) -> None:
    db, leaves = tree
    for n in range(1, 71):
        for i in range(n):
            proof = ledger.inclusion_proof(db, i, n)
            assert proof == merkle.inclusion_proof(i, leaves[:n]), (i, n)
            merkle.verify_inclusion(i, n, leaves[i], proof, ledger.root(db, n))


def test_consistency_proofs_match_the_reference(tree: tuple[sqlite3.Connection, list[bytes]]) -> None:
    db, leaves = tree
    for n in range(1, 71):
        for m in range(1, n + 1):
            proof = ledger.consistency_proof(db, m, n)
            assert proof == merkle.consistency_proof(m, leaves[:n]), (m, n)
            merkle.verify_consistency(m, n, ledger.root(db, m), ledger.root(db, n), proof)


def test_bad_proof_requests(tree: tuple[sqlite3.Connection, list[bytes]]) -> None:
    db, _ = tree
    for index, size in ((5, 5), (0, 71)):
        with pytest.raises(merkle.ProofError):
            ledger.inclusion_proof(db, index, size)
    for size1, size2 in ((0, 3), (4, 3)):
        with pytest.raises(merkle.ProofError):
            ledger.consistency_proof(db, size1, size2)


def test_checkpoints_are_signed_stored_and_reused(tree: tuple[sqlite3.Connection, list[bytes]]) -> None:
    db, leaves = tree
    signer = note.Signer.generate("wattproof.test/ledger")
    first = ledger.checkpoint(db, signer)
    assert ledger.checkpoint(db, signer) == first
    opened = note.open_note(first, [signer.verifier()])
    cp = note.Checkpoint.parse(opened.text)
    assert (cp.origin, cp.size, cp.root) == ("wattproof.test/ledger", 70, merkle.root(leaves))
