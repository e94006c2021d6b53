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


def root_from_inclusion(index, size, leaf, proof):
    """RFC 9162 2.1.3.2. Requires 0 <= index < size; returns the root the proof implies."""
    if index >= size or index < 0:
        raise ValueError("merkle: index %d outside tree of size %d" % (index, size))
    if len(leaf) != 32:
        raise ValueError("merkle: leaf hash is not 32 bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != 32:
            raise ValueError("merkle: proof hash is not 32 bytes")
        if sn == 0:
            raise ValueError("merkle: proof too long")
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
        raise ValueError("merkle: proof too short")
    return r


def verify_inclusion(index, size, leaf, proof, root_hash):
    """True when proof shows leaf (a leaf hash) at index in the tree of size with root_hash."""
    try:
        return len(root_hash) == 32 and root_from_inclusion(index, size, leaf, proof) == root_hash
    except ValueError:
        return False


def verify_consistency(size1, size2, root1, root2, proof):
    """RFC 9162 2.1.4.2. Requires 0 < size1 <= size2; equal sizes need an empty proof."""
    if size1 <= 0 or size2 < size1:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    for p in proof:
        if len(p) != 32:
            return False
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # size1 is a power of two: the old root is the first node of the path.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
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
    return sn == 0 and fr == root1 and sr == root2
