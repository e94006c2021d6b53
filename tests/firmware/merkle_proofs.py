# Runs under MicroPython: RFC 9162's recursive definition of a tree's root, for the
# firmware's Merkle tests to check the board's incremental RootBuilder against.

from merkle import _split, node_hash


def _subtree_root(hashes, lo, hi):
    if hi - lo == 1:
        return hashes[lo]
    k = _split(hi - lo)
    return node_hash(_subtree_root(hashes, lo, lo + k), _subtree_root(hashes, lo + k, hi))
