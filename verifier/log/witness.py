"""A witness (C2SP tlog-witness v1.0.0): it cosigns a log's checkpoint only when the log
proves it consistent with the last one the witness cosigned, so a log that shows two
histories to two people is caught by every witness.

`add_checkpoint` is the whole protocol over a request body; `WitnessState` is its state in
a SQLite file of its own (one row per log origin: the size, root and checkpoint last
cosigned), checked and updated in one write transaction (BEGIN IMMEDIATE) before the
answer, so that two requests at once can never roll the witness back.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from verifier.log import note
from verifier.wire import merkle
from verifier.wire.problems import Problem

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: 200 with cosignature lines, or 409 with the witness's size. Every
    other refusal is a Problem (400 malformed, 403 untrusted, 404 unknown log, 422 bad proof)."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Request:
    old: int
    proof: list[bytes]
    checkpoint: bytes  # the signed note as sent


_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")


def parse_request(body: bytes) -> Request:
    """The add-checkpoint body: `old N`, up to 63 base64 proof lines, an empty line, the
    signed checkpoint. Raises ValueError naming what is wrong."""
    head, sep, checkpoint = body.partition(b"\n\n")
    if not sep:
        raise ValueError("the body needs an old size line, proof lines, an empty line, then the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ValueError("the old size and proof lines are ASCII") from None
    m = _OLD.fullmatch(lines[0])
    if m is None:
        raise ValueError("the first line must be `old <size>` (decimal, no leading zeros)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ValueError(f"at most {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character
            raise ValueError("a consistency proof line is not base64") from None
        if len(h) != merkle.HASH_SIZE:
            raise ValueError("a consistency proof line is not a 32-byte hash")
        proof.append(h)
    return Request(int(m.group(1)), proof, checkpoint)


def request_body(old: int, proof: Sequence[bytes], checkpoint: bytes) -> bytes:
    """The body a log sends (the client side of parse_request)."""
    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n").encode() + checkpoint


class WitnessState:
    """The latest checkpoint cosigned per log origin, in a SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        # One connection serves the server's threads: one request's transaction at a time (and
        # BEGIN IMMEDIATE orders them against any other process on the same file).
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,"
            " checkpoint BLOB NOT NULL, updated_at INTEGER NOT NULL)"
        )

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT size, root FROM logs WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def close(self) -> None:
        self.db.close()


def add_checkpoint(
    state: WitnessState,
    signer: note.Signer,
    logs: Mapping[str, Sequence[note.Verifier]],
    body: bytes,
    now: int | None = None,
) -> Answer:
    """POST add-checkpoint. logs: the trusted keys of each log origin the witness follows."""
    try:
        req = parse_request(body)
    except ValueError as e:
        raise Problem("malformed-witness-request", "body", str(e)) from None
    try:
        text = req.checkpoint.decode("utf-8")
        cp = note.Checkpoint.parse(text[: text.rfind("\n\n") + 1])
    except (UnicodeDecodeError, note.NoteError) as e:
        raise Problem("malformed-witness-request", "checkpoint", f"not a checkpoint: {e}") from None
    keys = logs.get(cp.origin)
    if keys is None:
        raise Problem("unknown-log", "checkpoint", f"this witness does not follow the log {cp.origin!r}")
    try:
        opened = note.open_note(req.checkpoint, [k for k in keys if not k.cosigner])
    except note.NoteError as e:
        raise Problem("untrusted-checkpoint", "checkpoint", f"no valid signature by the log's key: {e}") from None
    if req.old > cp.size:
        raise Problem(
            "malformed-witness-request", "old", f"old size {req.old} is larger than the checkpoint's {cp.size}"
        )
    with state.lock:
        return _check_and_update(state, signer, req, cp, opened.text, now)


def _check_and_update(
    state: WitnessState, signer: note.Signer, req: Request, cp: note.Checkpoint, text: str, now: int | None
) -> Answer:
    db = state.db
    db.execute("BEGIN IMMEDIATE")  # the check and the update are one: no request rolls the state back
    try:
        row = db.execute("SELECT size, root FROM logs WHERE origin = ?", (cp.origin,)).fetchone()
        size, root = (0, merkle.EMPTY_ROOT) if row is None else (int(row[0]), bytes(row[1]))
        if req.old != size:
            db.execute("ROLLBACK")
            return Answer(409, f"{size}\n", SIZE_CONTENT_TYPE)
        if req.old == 0:
            if req.proof:
                raise Problem("bad-consistency-proof", "proof", "the consistency proof from size 0 must be empty")
        elif req.old == cp.size:
            if cp.root != root:
                db.execute("ROLLBACK")  # the log signed two roots for one size: a fork
                return Answer(409, f"{size}\n", SIZE_CONTENT_TYPE)
        else:
            try:
                merkle.verify_consistency(req.old, cp.size, root, cp.root, req.proof)
            except merkle.ProofError as e:
                raise Problem("bad-consistency-proof", "proof", f"from size {req.old}: {e}") from None
        when = int(time.time()) if now is None else now
        db.execute(
            "INSERT INTO logs VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET size = excluded.size,"
            " root = excluded.root, checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
            (cp.origin, cp.size, cp.root, req.checkpoint, when),
        )
        db.execute("COMMIT")  # persisted before the answer
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return Answer(200, signer.signature_line(text, when))
