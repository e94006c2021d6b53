# Runs under MicroPython: the firmware Merkle code against the transparency-dev
# vectors, read in place from the interop folder named by WATTPROOF_INTEROP.

import binascii
import json
import os

import merkle
import merkle_proofs

INTEROP = os.getenv("WATTPROOF_INTEROP") or "../shared/interop"


def _hd(s):
    return binascii.unhexlify(s)


def _b64(s):
    return binascii.a2b_base64(s)


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


def _vectors(kind, sub=""):
    """(name, vector) for every JSON file below testdata/kind, in sorted order."""
    base = INTEROP + "/merkle/testdata/" + kind
    for name in sorted(os.listdir(base + sub)):
        path = sub + "/" + name
        if name.endswith(".json"):
            with open(base + path) as f:
                yield path, json.load(f)
        else:
            yield from _vectors(kind, path)


def test_root_constants_every_size():
    leaves, roots = _constants()
    assert len(leaves) == 8 and len(roots) == 9
    for size in range(9):
        assert merkle.root(leaves[:size]) == roots[size], size
    assert binascii.hexlify(roots[7]) == b"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"


def test_inclusion_proofs_generated_match_roots():
    leaves, roots = _constants()
    for size in range(1, 9):
        for index in range(size):
            proof = merkle_proofs.inclusion_proof(leaves[:size], index)
            assert merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index]), proof, roots[size])


def test_inclusion_vectors():
    leaves, roots = _constants()
    count = failing = 0
    for name, v in _vectors("inclusion"):
        proof = [_b64(p) for p in v["proof"] or []]
        root = _b64(v["root"]) if v["root"] else b""
        leaf = _b64(v["leafHash"]) if v["leafHash"] else b""
        ok = merkle.verify_inclusion(v["leafIdx"], v["treeSize"], leaf, proof, root)
        assert ok == (not v["wantErr"]), name
        if not v["wantErr"] and 0 < v["treeSize"] <= 8 and leaf == merkle.leaf_hash(leaves[v["leafIdx"]]):
            # The generator reproduces every happy-path proof over the reference leaves.
            assert merkle_proofs.inclusion_proof(leaves[: v["treeSize"]], v["leafIdx"]) == proof, name
        count += 1
        failing += v["wantErr"]
    assert count == 98 and failing > 0, (count, failing)


def test_consistency_vectors():
    count = failing = 0
    for name, v in _vectors("consistency"):
        proof = [_b64(p) for p in v["proof"] or []]
        ok = merkle.verify_consistency(v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), proof)
        assert ok == (not v["wantErr"]), name
        count += 1
        failing += v["wantErr"]
    assert count == 98 and failing > 0, (count, failing)


def test_root_builder_matches_recursive_definition():
    leaves = [bytes([i]) * (i % 5) for i in range(70)]
    hashes = [merkle.leaf_hash(x) for x in leaves]
    for size in (1, 2, 3, 5, 8, 13, 31, 32, 33, 64, 70):
        assert merkle.root(leaves[:size]) == merkle_proofs._subtree_root(hashes, 0, size), size


def test_inclusion_proof_refuses_bad_index():
    for index in (-1, 3):
        try:
            merkle_proofs.inclusion_proof([b"a", b"b", b"c"], index)
        except ValueError:
            continue
        raise AssertionError(index)
