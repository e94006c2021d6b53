"""Group commit: concurrent requests' packets joined into one transaction (ingest.Joiner)."""

from __future__ import annotations

import threading
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import Database
from tests.enroll import enroll_key
from verifier import settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.devices import ingest
from verifier.log import ledger
from verifier.wire.packet import GENESIS, decode_packet

NOW = int(time.time()) - 86400


def _until(condition: Any, what: str) -> None:
    """Waits for another thread to reach a state (not a timing assertion: a bound on a hang)."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


class Rounds:
    """A run function whose first round waits until released; it records every round."""

    def __init__(self, fail_round: int | None = None) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.rounds: list[list[bytes]] = []
        self.fail_round = fail_round

    def __call__(self, datas: list[bytes]) -> list[Any]:
        self.rounds.append(list(datas))
        if len(self.rounds) == 1:
            self.started.set()
            self.release.wait()
        if self.fail_round == len(self.rounds):
            raise storage.Unavailable("the database went away")
        return [d.upper() for d in datas]


def _start(joiner: ingest.Joiner, run: Rounds, datas: list[bytes], out: dict[bytes, Any]) -> threading.Thread:
    def go() -> None:
        try:
            out[datas[0]] = joiner.accept(run, datas)
        except storage.Unavailable as e:
            out[datas[0]] = e

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_requests_that_arrive_during_a_round_share_the_next_one() -> None:
    joiner, run = ingest.Joiner(), Rounds()
    out: dict[bytes, Any] = {}
    first = _start(joiner, run, [b"a"], out)
    run.started.wait()
    others = [_start(joiner, run, datas, out) for datas in ([b"b"], [b"c", b"d"], [b"e"])]
    _until(lambda: len(joiner._queue) == 3, "three requests queued")
    run.release.set()
    for t in (first, *others):
        t.join()
    assert run.rounds == [[b"a"], [b"b", b"c", b"d", b"e"]]  # the alone one ran at once; the rest together
    assert out == {b"a": [b"A"], b"b": [b"B"], b"c": [b"C", b"D"], b"e": [b"E"]}  # each its own results
    assert (joiner.rounds, joiner.packets) == (2, 5)
    again: Any = joiner.accept(run, [b"f"])
    assert again == [b"F"]  # idle again: runs at once


def test_a_round_takes_whole_requests_up_to_its_bound() -> None:
    joiner, run = ingest.Joiner(most=3), Rounds()
    out: dict[bytes, Any] = {}
    first = _start(joiner, run, [b"a"], out)
    run.started.wait()
    others = []
    for datas in ([b"b", b"c"], [b"d", b"e"], [b"f"]):
        others.append(_start(joiner, run, datas, out))
        queued = len(others)
        _until(lambda: len(joiner._queue) == queued, "queued in order")  # noqa: B023 - waited for here
    run.release.set()
    for t in (first, *others):
        t.join()
    assert run.rounds == [[b"a"], [b"b", b"c"], [b"d", b"e", b"f"]]
    assert out[b"d"] == [b"D", b"E"] and out[b"f"] == [b"F"]


def test_a_failed_round_fails_each_of_its_requests_and_no_other() -> None:
    joiner, run = ingest.Joiner(), Rounds(fail_round=2)
    out: dict[bytes, Any] = {}
    first = _start(joiner, run, [b"a"], out)
    run.started.wait()
    others = [_start(joiner, run, datas, out) for datas in ([b"b"], [b"c"])]
    _until(lambda: len(joiner._queue) == 2, "two requests queued")
    run.release.set()
    for t in (first, *others):
        t.join()
    assert out[b"a"] == [b"A"]
    assert isinstance(out[b"b"], storage.Unavailable) and isinstance(out[b"c"], storage.Unavailable)
    again: Any = joiner.accept(run, [b"d"])
    assert again == [b"D"]  # the joiner is not left busy


def test_concurrent_boards_over_the_api_are_all_committed_once(database: Database) -> None:
    engine_db = database
    app = create_app({**engine_db.config(), "CHECKPOINT_MIN_GAP_S": 0})
    keys = {f"join-{n}": ec.generate_private_key(ec.SECP256R1()) for n in range(8)}
    for name, key in keys.items():
        enroll_key(engine_db.target, name, key, capacity_w=5000)
    answers: dict[str, list[int]] = {name: [] for name in keys}

    def board(name: str) -> None:
        client = app.test_client()
        prev = GENESIS
        for seq in range(6):
            data = forge.simple(keys[name], name, seq=seq, prev=prev, first_number=3 * seq, t0=NOW + 300 * seq)
            for _ in range(2):  # every packet twice, as a board retrying a lost answer
                answers[name].append(client.post("/v1/packets", data=data, content_type="application/cbor").status_code)
            prev = decode_packet(data).header_hash

    threads = [threading.Thread(target=board, args=(name,)) for name in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(codes == [201, 200] * 6 for codes in answers.values()), answers
    joiner: ingest.Joiner = app.extensions["wattproof.joiner"]
    assert joiner.packets == 8 * 12 and joiner.rounds <= joiner.packets
    db = storage.connect(engine_db.target)
    assert ledger.size(db) == 8 + 1 + 8 * 6  # enrollments, the installer, each packet once
    log_key = settings.log_signer({**settings.DEFAULTS, **engine_db.config()}, create=False).verifier()
    report = replay.audit(db, log_key)
    assert report.ok and report.packets == 48, report.problem
