# Runs under MicroPython: RFC 9162 inclusion proofs made from the leaves, for the
# firmware's Merkle tests. No board makes proofs (the verifier does), so this stays out
# of the board image and lives beside the tests that need it.

from merkle import _split, leaf_hash, node_hash


def _subtree_root(hashes, lo, hi):
    if hi - lo == 1:
        return hashes[lo]
    k = _split(hi - lo)
    return node_hash(_subtree_root(hashes, lo, lo + k), _subtree_root(hashes, lo + k, hi))


def inclusion_proof(leaves, index):
    """Audit path for leaves[index], leaf first. Requires 0 <= index < len(leaves)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError("merkle: index out of range")
    hashes = [leaf_hash(d) for d in leaves]
    path = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_subtree_root(hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_subtree_root(hashes, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path
