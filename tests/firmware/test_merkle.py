# Runs under MicroPython: the firmware's Merkle roots (the only Merkle code a board runs:
# it builds each packet's root; proofs are checked by the verifier and `wattproof verify`)
# against the transparency-dev constants, read in place from the interop folder named by
# WATTPROOF_INTEROP.

import binascii
import os

import merkle
import merkle_proofs

INTEROP = os.getenv("WATTPROOF_INTEROP") or "../shared/interop"


def _hd(s):
    return binascii.unhexlify(s)


def _go_block(text, func):
    """The hd("...") literals inside one Go function of constants.go.txt."""
    body = text[text.index("func " + func + "()") :]
    body = body[: body.index("\n}\n")]
    return [_hd(part.split('")')[0]) for part in body.split('hd("')[1:]]


def _constants():
    with open(INTEROP + "/merkle/constants.go.txt") as f:
        text = f.read()
    leaves = _go_block(text, "LeafInputs")
    roots = [merkle.EMPTY_ROOT] + _go_block(text, "RootHashes")
    return leaves, roots


def test_root_constants_every_size():
    leaves, roots = _constants()
    assert len(leaves) == 8 and len(roots) == 9
    for size in range(9):
        assert merkle.root(leaves[:size]) == roots[size], size
    assert binascii.hexlify(roots[7]) == b"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"


def test_root_builder_matches_recursive_definition():
    leaves = [bytes([i]) * (i % 5) for i in range(70)]
    hashes = [merkle.leaf_hash(x) for x in leaves]
    for size in (1, 2, 3, 5, 8, 13, 31, 32, 33, 64, 70):
        assert merkle.root(leaves[:size]) == merkle_proofs._subtree_root(hashes, 0, size), size
