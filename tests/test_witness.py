"""Witnesses (C2SP tlog-witness v1.0.0, tlog-cosignature): the protocol's every answer, a
log that tries to fork refused by every witness, and real `wattproof witness serve`
processes cosigning the verifier's checkpoints while one witness is down and one hangs."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import forge
from tests.conftest import Database
from tests.enroll import enroll_key
from verifier import storage
from verifier.app import create_app
from verifier.devices import ingest
from verifier.log import checkpoints, cosigning, ledger, note, witness
from verifier.wire import merkle
from verifier.wire.packet import GENESIS, decode_packet
from verifier.wire.problems import Problem

LOG = note.Signer.generate("example.org/log")
OTHER = note.Signer.generate("example.org/log")  # the same origin, another key
W1 = note.Signer.generate("witness.example/w1", note.ALG_COSIGNATURE_V1)


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def _checkpoint(leaves: list[bytes], signer: note.Signer = LOG) -> bytes:
    return note.sign(note.Checkpoint(signer.name, len(leaves), merkle.root(leaves)).text(), signer)


def _body(old: int, leaves: list[bytes], proof: list[bytes] | None = None, signer: note.Signer = LOG) -> bytes:
    if proof is None:
        proof = merkle.consistency_proof(old, leaves) if 0 < old < len(leaves) else []
    return witness.request_body(old, proof, _checkpoint(leaves, signer))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[witness.WitnessState]:
    s = witness.WitnessState(tmp_path / "witness.sqlite")
    yield s
    s.close()


def _add(state: witness.WitnessState, body: bytes) -> witness.Answer:
    return witness.add_checkpoint(state, W1, {LOG.name: [LOG.verifier()]}, body, now=1_800_000_000)


def _refused(state: witness.WitnessState, body: bytes) -> tuple[int, str]:
    with pytest.raises(Problem) as e:
        _add(state, body)
    return e.value.status, e.value.kind


def test_a_witness_cosigns_a_consistent_log_and_refuses_everything_else(state: witness.WitnessState) -> None:
    five, eight = _leaves(5), _leaves(8)
    first = _add(state, _body(0, five))
    assert first.status == 200 and first.body.startswith("\u2014 witness.example/w1 ")
    opened = note.open_note(_checkpoint(five) + first.body.encode(), [LOG.verifier(), W1.verifier()])
    assert opened.cosigned == (("witness.example/w1", 1_800_000_000),)
    # the cosignature signs "cosignature/v1", its time and the checkpoint's text
    raw = base64.b64decode(first.body.split()[-1])
    assert raw[:4] == note.key_id(W1.name, W1.verifier().public_key, 0x04)
    assert int.from_bytes(raw[4:12], "big") == 1_800_000_000

    assert _refused(state, _body(0, _leaves(5), signer=OTHER)) == (403, "untrusted-checkpoint")
    stranger = note.Signer.generate("example.org/another-log")
    assert _refused(state, witness.request_body(0, [], _checkpoint(five, stranger))) == (404, "unknown-log")
    assert _refused(state, b"old 01\n\n" + _checkpoint(five)) == (400, "malformed-witness-request")
    assert _refused(state, b"old 5\nnot base64!\n\n" + _checkpoint(eight)) == (400, "malformed-witness-request")
    assert _refused(state, _body(6, five, proof=[])) == (400, "malformed-witness-request")  # old > size

    # old does not match the witness's size: 409 with its size
    stale = _add(state, _body(0, eight, proof=[]))
    assert (stale.status, stale.body, stale.content_type) == (409, "5\n", "text/x.tlog.size")
    # a fork at the same size: another root for size 5
    fork = _add(state, _body(5, _leaves(5, b"fork")))
    assert (fork.status, fork.body) == (409, "5\n")
    # a fork that grows: a proof from size 5 of another history, or a proof that was altered
    assert _refused(state, _body(5, _leaves(8, b"fork"), proof=merkle.consistency_proof(5, _leaves(8, b"fork")))) == (
        422,
        "bad-consistency-proof",
    )
    bent = merkle.consistency_proof(5, eight)
    bent[0] = bytes(32)
    assert _refused(state, _body(5, eight, proof=bent)) == (422, "bad-consistency-proof")
    # a smaller tree than the witness has seen
    assert _refused(state, _body(5, _leaves(3), proof=[])) == (400, "malformed-witness-request")
    assert _add(state, _body(3, _leaves(3))).status == 409

    # the real growth is cosigned, and remembered across a restart
    assert _add(state, _body(5, eight)).status == 200
    assert _add(state, _body(8, eight)).status == 200  # the same checkpoint again: cosigned again
    again = witness.WitnessState(state.db.execute("PRAGMA database_list").fetchone()[2])
    assert again.latest(LOG.name) == (8, merkle.root(eight))
    again.close()


def test_two_requests_from_one_size_cannot_roll_the_witness_back(state: witness.WitnessState) -> None:
    ten = _leaves(10)
    assert _add(state, _body(0, ten[:4])).status == 200
    answers: list[int] = []
    bodies = [_body(4, ten[:n]) for n in (6, 10, 7, 9)]
    threads = [threading.Thread(target=lambda b=b: answers.append(_add(state, b).status)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409, 409, 409]  # one wins; the others learn the new size
    size = state.latest(LOG.name)
    assert size is not None and size[0] in (6, 7, 9, 10)


# -- real witness processes and the verifier's cosigner -------------------------------------


def _witness_process(tmp_path: Path, name: str, log_vkey: str) -> tuple[subprocess.Popen[str], str, str]:
    key = tmp_path / f"{name.replace('/', '_')}.key"
    made = subprocess.run([sys.executable, "-m", "wattproof.cli", "witness", "keygen", "--name", name, "--out",
                           str(key)], capture_output=True, text=True, check=True)  # fmt: skip
    vkey = made.stdout.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattproof.cli", "witness", "serve", "--key", str(key), "--state",
         str(tmp_path / f"{name.replace('/', '_')}.sqlite"), "--log", log_vkey, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("witness ") and " listening on " in line, line
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, line.split()[-1], vkey


def _send(target: str, key: object, device: str, first_seq: int, n: int, prev: bytes) -> bytes:
    db = storage.connect(target)
    try:
        packets = []
        for seq in range(first_seq, first_seq + n):
            data = forge.simple(key, device, seq, 2, prev, 2 * seq, 1795000000 + 600 * seq)  # type: ignore[arg-type]
            prev = decode_packet(data).header_hash
            packets.append(data)
        assert all(isinstance(r, ingest.Outcome) for r in ingest.accept_batch(db, packets))
    finally:
        db.close()
    return prev


def test_witness_processes_cosign_the_checkpoints_and_refuse_a_fork(database: Database, tmp_path: Path) -> None:
    app = create_app(database.config())
    signer = app.extensions["wattproof.log_signer"]
    vkey = str(signer.verifier())
    procs = []
    try:
        p1, url1, k1 = _witness_process(tmp_path, "witness.example/w1", vkey)
        p2, url2, k2 = _witness_process(tmp_path, "witness.example/w2", vkey)
        procs += [p1, p2]
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        hung = socket.create_server(("127.0.0.1", 0))  # listens, never answers
        slow = f"http://127.0.0.1:{hung.getsockname()[1]}"
        spare = note.Signer.generate("witness.example/down", note.ALG_COSIGNATURE_V1).verifier()
        spare2 = note.Signer.generate("witness.example/hung", note.ALG_COSIGNATURE_V1).verifier()
        witnesses = cosigning.parse_all([f"{url1} {k1}", f"{url2} {k2}", f"{down} {spare}", f"{slow} {spare2}"])

        key = forge.new_key()
        enroll_key(database.target, "wit-1", key)
        prev = _send(database.target, key, "wit-1", 0, 10, GENESIS)
        db = storage.connect(database.target)
        try:
            checkpoints.publish(db, signer)
            started = time.monotonic()
            done = cosigning.cosign_latest(db, witnesses, timeout=0.5)
            assert time.monotonic() - started < 20  # a dead and a hung witness cost their timeouts only
            assert done["witness.example/w1"].startswith("\u2014 ") and done["witness.example/w2"].startswith("\u2014 ")
            assert done["witness.example/down"].startswith("not cosigned")
            assert done["witness.example/hung"].startswith("not cosigned")

            # ingest goes on while a witness is down; the next round proves consistency from the last size
            prev = _send(database.target, key, "wit-1", 10, 5, prev)
            cp = checkpoints.publish(db, signer)
            assert cosigning.last_size(db, witnesses[0]) == 12 and cp.size == 17
            cosigning.cosign_latest(db, witnesses[:2], timeout=5)
            served = app.test_client().get("/v1/ledger/checkpoint").data
            opened = note.open_note(served, [signer.verifier(), witnesses[0].key, witnesses[1].key])
            assert {name for name, _ in opened.cosigned} == {"witness.example/w1", "witness.example/w2"}
            assert note.Checkpoint.parse(opened.text).size == 17
            assert app.test_client().get("/log/checkpoint").data == served
            old = app.test_client().get("/v1/ledger/checkpoint?size=12").data
            assert len(note.open_note(old, [signer.verifier(), *[w.key for w in witnesses[:2]]]).cosigned) == 2

            # The log tries to fork: a second history under the same key and origin, at the
            # witnessed size and beyond. Every witness refuses both.
            fork = tmp_path / "fork.sqlite"
            enroll_key(fork, "wit-1", key)
            forked = _send(str(fork), key, "wit-1", 0, 15, GENESIS)  # 17 entries, another history
            fdb = storage.connect(fork)
            try:
                for grow in (0, 4):
                    if grow:
                        _send(str(fork), key, "wit-1", 15, grow, forked)
                    fcp = checkpoints.publish(fdb, signer)
                    assert fcp.size == 17 + grow and fcp.root != ledger.root(db, 17)
                    for w in witnesses[:2]:
                        with pytest.raises(cosigning.WitnessRefused):
                            cosigning.request_cosignature(fdb, w, fcp, timeout=5)
                # a smaller tree than the witnesses saw is refused by the client and the witness
                small = checkpoints.Checkpoint(5, ledger.root(fdb, 5), note.sign(
                    note.Checkpoint(signer.name, 5, ledger.root(fdb, 5)).text(), signer), 0)  # fmt: skip
                for w in witnesses[:2]:
                    with pytest.raises(cosigning.WitnessRefused):
                        cosigning.request_cosignature(fdb, w, small, timeout=5)
                    status, _ = cosigning._post(w, witness.request_body(17, [], small.note), 5)
                    assert status == 400
            finally:
                fdb.close()
            # the witnesses still stand by the real log
            assert cosigning.request_cosignature(db, witnesses[0], cp, timeout=5).startswith("\u2014 ")
        finally:
            db.close()
            closed.close()
            hung.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
