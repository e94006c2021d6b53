"""RFC 9162 Merkle tree hashing, proofs and their verification.

Pure functions over bytes: no storage, no I/O. leaf = SHA-256(0x00 || data),
node = SHA-256(0x01 || left || right); a tree of n > 1 leaves splits at the
largest power of two k < n. Proof generation here takes the full list of leaf
hashes; storage layers that keep interior nodes call `verify_*` the same way.

Node ids, for every storage backend: a stored node is (level, index), the complete
subtree of 2**level leaves starting at leaf index * 2**level (level 0 is a leaf).
`appended_nodes` says which nodes an append completes; `inclusion_nodes` and
`consistency_nodes` say which stored nodes make up each hash of a proof (as
transparency-dev/merkle's proof.Inclusion / proof.Consistency do), so a backend only
fetches ids and `hash_ranges` folds them. Nothing here knows how nodes are stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# The lowest level a backend stores interior nodes at: a node of levels 1 to 3 (2 to 8
# leaves) is folded again from its leaves when a proof needs it, which costs a few hashes
# and saves about seven stored nodes in eight.
STORED_FROM_LEVEL = 4


class ProofError(ValueError):
    """A proof does not check out, or its inputs break a precondition."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n. Requires n >= 2."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes (RFC 9162 2.1.1).

    Computed level by level: pairing left to right and carrying an odd last node up
    unchanged gives the same tree as the recursive split at the largest power of two.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 2.1.3.1). Requires 0 <= index < n."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ProofError(f"index {index} outside tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(index, leaf_hashes[:k]) + [root(leaf_hashes[k:])]
    return inclusion_proof(index - k, leaf_hashes[k:]) + [root(leaf_hashes[:k])]


def consistency_proof(size1: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(size1, D[n]) (RFC 9162 2.1.4.1). Requires 0 < size1 <= n."""
    n = len(leaf_hashes)
    if not 0 < size1 <= n:
        raise ProofError(f"size1 {size1} outside 1..{n}")
    return _subproof(size1, leaf_hashes, True)


def _subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if complete else [root(d)]
    k = _split(n)
    if m <= k:
        return _subproof(m, d[:k], complete) + [root(d[k:])]
    return _subproof(m - k, d[k:], False) + [root(d[:k])]


# -- node ids (storage-independent tree arithmetic) ------------------------------------------

Node = tuple[int, int]  # (level, index): the complete subtree of leaves [index << level, (index + 1) << level)


def appended_nodes(index: int) -> list[Node]:
    """The nodes above level 0 that appending leaf index completes, lowest first: node
    (level, i) is node_hash((level - 1, 2i), (level - 1, 2i + 1))."""
    out, i, level = [], index, 0
    while i & 1:
        i >>= 1
        level += 1
        out.append((level, i))
    return out


def stored(node: Node) -> bool:
    """Whether a backend keeps this interior node (leaves are the entries' own hashes)."""
    return node[0] >= STORED_FROM_LEVEL


def below(node: Node) -> range:
    """The leaves of a node: what a node that is not stored is folded from."""
    level, i = node
    return range(i << level, (i + 1) << level)


def subtrees(lo: int, hi: int) -> list[Node]:
    """The complete subtrees that make up leaves lo..hi-1, left to right, largest first."""
    out = []
    while lo < hi:
        level = 0
        while lo % (2 << level) == 0 and lo + (2 << level) <= hi:
            level += 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf range behind each hash of PATH(index, D[size]), in proof order."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} outside a tree of size {size} (0 to {size - 1})")
    ranges, lo, hi = [], 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf range behind each hash of PROOF(size1, D[size2]), in proof order."""
    if not 0 < size1 <= size2:
        raise ProofError(f"sizes {size1} and {size2}: a consistency proof needs 0 < size1 <= size2")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    return ranges[::-1]


def inclusion_nodes(index: int, size: int) -> list[list[Node]]:
    """For each hash of the inclusion proof, the stored nodes it is folded from."""
    return [subtrees(lo, hi) for lo, hi in inclusion_ranges(index, size)]


def consistency_nodes(size1: int, size2: int) -> list[list[Node]]:
    """For each hash of the consistency proof, the stored nodes it is folded from."""
    return [subtrees(lo, hi) for lo, hi in consistency_ranges(size1, size2)]


def inclusion_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[size]) has: what a verifier expects up front."""
    return len(inclusion_ranges(index, size))


def consistency_length(size1: int, size2: int) -> int:
    """How many hashes PROOF(size1, D[size2]) has (0 for equal sizes)."""
    return len(consistency_ranges(size1, size2))


def fold(parts: Sequence[Node], hashes: dict[Node, bytes]) -> bytes:
    """MTH of a leaf range from the hashes of its subtrees (as subtrees() lists them)."""
    h = hashes[parts[-1]]
    for part in reversed(parts[:-1]):
        h = node_hash(hashes[part], h)
    return h


def _hex(h: bytes) -> str:
    return h.hex()


def _check_hashes(proof: Sequence[bytes], **named: bytes) -> None:
    for name, h in named.items():
        if len(h) != HASH_SIZE:
            raise ProofError(f"{name} has {len(h)} bytes, not {HASH_SIZE}")
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofError(f"proof hash {i} has {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that proof implies for leaf hash at index (RFC 9162 2.1.3.2). Requires 0 <= index < size."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} outside tree of size {size}")
    _check_hashes(proof, leaf=leaf)
    expected = inclusion_length(index, size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof of index {index} in size {size} has {len(proof)} hashes, expected {expected}"
        )
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Raises ProofError unless proof places leaf hash at index in the tree (size, root_hash)."""
    _check_hashes((), root=root_hash)
    found = root_from_inclusion(index, size, leaf, proof)
    if found != root_hash:
        raise ProofError(
            f"inclusion proof leads to root {_hex(found)}, expected {_hex(root_hash)} (index {index}, size {size})"
        )


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Raises ProofError unless tree (size2, root2) extends (size1, root1). Requires 0 < size1 <= size2."""
    if size1 <= 0:
        raise ProofError("size1 must be positive: every tree extends the empty one")
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError(f"equal sizes but different roots: {_hex(root1)} and {_hex(root2)}")
        return
    expected = consistency_length(size1, size2)
    if len(proof) != expected:
        raise ProofError(f"consistency proof {size1} -> {size2} has {len(proof)} hashes, expected {expected}")
    _check_hashes(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError(f"consistency proof leads to old root {_hex(fr)}, expected {_hex(root1)} (size {size1})")
    if sr != root2:
        raise ProofError(f"consistency proof leads to new root {_hex(sr)}, expected {_hex(root2)} (size {size2})")
