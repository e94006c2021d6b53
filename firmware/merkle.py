# RFC 9162 Merkle tree hashing for the board: leaf = SHA-256(0x00 || data),
# node = SHA-256(0x01 || left || right), split at the largest power of two
# below n. Pure functions over bytes.

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data):
    h = hashlib.sha256(b"\x00")
    h.update(data)
    return h.digest()


def node_hash(left, right):
    h = hashlib.sha256(b"\x01")
    h.update(left)
    h.update(right)
    return h.digest()


def _split(n):
    # Largest power of two strictly below n (n >= 2).
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


class RootBuilder:
    """Folds leaves into the tree root with O(log n) memory (a compact range)."""

    def __init__(self):
        self._stack = []  # [hash, size] pairs, sizes strictly decreasing powers of two
        self.size = 0

    def add_leaf_hash(self, h):
        size = 1
        stack = self._stack
        while stack and stack[-1][1] == size:
            left = stack.pop()
            h = node_hash(left[0], h)
            size <<= 1
        stack.append((h, size))
        self.size += 1

    def add(self, data):
        self.add_leaf_hash(leaf_hash(data))

    def root(self):
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1][0]
        for i in range(len(stack) - 2, -1, -1):
            h = node_hash(stack[i][0], h)
        return h


def root(leaves):
    """Root over the leaf data in leaves (a list of bytes)."""
    b = RootBuilder()
    for data in leaves:
        b.add(data)
    return b.root()
