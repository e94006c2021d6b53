"""The verifier's RFC 9162 code against the transparency-dev vectors, and generated proofs."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import interop_dir
from verifier.wire import merkle


def _constants(interop: Path) -> tuple[list[bytes], list[bytes]]:
    text = (interop / "merkle" / "constants.go.txt").read_text()

    def block(func: str) -> list[bytes]:
        body = text[text.index(f"func {func}()") :]
        body = body[: body.index("\n}\n")]
        return [bytes.fromhex(h) for h in re.findall(r'hd\("([0-9a-f]*)"\)', body)]

    return block("LeafInputs"), [merkle.EMPTY_ROOT, *block("RootHashes")]


def _vectors(kind: str) -> list[tuple[str, dict[str, Any]]]:
    base = interop_dir() / "merkle" / "testdata" / kind
    return [(str(p.relative_to(base)), json.loads(p.read_text())) for p in sorted(base.rglob("*.json"))]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(v: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in v["proof"] or []]


def test_root_constants(interop: Path) -> None:
    leaves, roots = _constants(interop)
    hashes = [merkle.leaf_hash(x) for x in leaves]
    assert len(hashes) == 8
    for size in range(9):
        assert merkle.root(hashes[:size]) == roots[size]
    assert roots[7].hex() == "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"


def test_vector_counts() -> None:
    for kind in ("inclusion", "consistency"):
        vectors = _vectors(kind)
        assert len(vectors) == 98
        assert any(v["wantErr"] for _, v in vectors) and any(not v["wantErr"] for _, v in vectors)


@pytest.mark.parametrize(("name", "v"), _vectors("inclusion"), ids=lambda x: x if isinstance(x, str) else "")
def test_inclusion_vector(name: str, v: dict[str, Any]) -> None:
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize(("name", "v"), _vectors("consistency"), ids=lambda x: x if isinstance(x, str) else "")
def test_consistency_vector(name: str, v: dict[str, Any]) -> None:
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v))
    if v["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_generated_proofs_match_happy_path_vectors(interop: Path) -> None:
    leaves, _ = _constants(interop)
    hashes = [merkle.leaf_hash(x) for x in leaves]
    checked = 0
    for _, v in _vectors("inclusion"):
        index, size = v["leafIdx"], v["treeSize"]
        if not v["wantErr"] and 0 < size <= 8 and _b64(v["leafHash"]) == hashes[index]:
            assert merkle.inclusion_proof(index, hashes[:size]) == _proof(v)
            checked += 1
    for _, v in _vectors("consistency"):
        s1, s2 = v["size1"], v["size2"]
        if not v["wantErr"] and 0 < s1 <= s2 <= 8 and _b64(v["root2"]) == merkle.root(hashes[:s2]):
            assert merkle.consistency_proof(s1, hashes[:s2]) == _proof(v)
            checked += 1
    assert checked >= 10


@given(st.integers(1, 300), st.data())
def test_generated_inclusion_proofs_verify(size: int, data: st.DataObject) -> None:
    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    root = merkle.root(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(index, hashes)
    merkle.verify_inclusion(index, size, hashes[index], proof, root)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(other, size, hashes[index], proof, root)


@given(st.integers(1, 300), st.data())
def test_generated_consistency_proofs_verify(size2: int, data: st.DataObject) -> None:
    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size2)]
    size1 = data.draw(st.integers(1, size2))
    proof = merkle.consistency_proof(size1, hashes)
    merkle.verify_consistency(size1, size2, merkle.root(hashes[:size1]), merkle.root(hashes), proof)
    if size1 < size2:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(
                size1, size2, merkle.root(hashes[: size1 - 1] or [b"\0" * 32]), merkle.root(hashes), proof
            )
