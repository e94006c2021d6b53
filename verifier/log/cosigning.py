"""Witness cosignatures for the log's checkpoints (C2SP tlog-witness, the client side).

A cosigner runs beside the checkpoint publisher in every server process, on a thread of
its own: each round it sends the latest stored checkpoint to every configured witness
that has not cosigned it, with a consistency proof from the size that witness last
cosigned (it learns that size from a 409 and retries once), checks the cosignature it gets
with the witness's key and stores it. Ingest and publishing never wait for a witness: a
witness that is down or slow costs its own round a timeout, and is asked again next round.

Checkpoints are served with the cosignatures stored for their size (`checkpoints.served`).
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from verifier.jobs import Periodic
from verifier.log import checkpoints, ledger, note, witness
from verifier.storage import Connection, transaction

log = logging.getLogger("wattproof.verifier")


@dataclass(frozen=True)
class Witness:
    url: str  # its submission prefix: add-checkpoint is POSTed to url + "/add-checkpoint"
    key: note.Verifier  # its cosignature/v1 key

    @classmethod
    def parse(cls, text: str) -> Witness:
        """A WITNESSES setting: "<submission URL> <verifier key>"."""
        parts = text.split()
        if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
            raise ValueError(f"a witness is '<URL> <verifier key>', not {text!r}")
        key = note.Verifier.parse(parts[1])
        if not key.cosigner:
            raise ValueError(f"witness key {key.name} is not a cosignature/v1 key (type 0x04)")
        return cls(parts[0].rstrip("/"), key)


def parse_all(values: Sequence[str] | str | None) -> list[Witness]:
    if not values:
        return []
    return [Witness.parse(v) for v in ([values] if isinstance(values, str) else values)]


def last_size(db: Connection, w: Witness) -> int:
    row = db.execute("SELECT size FROM witness_sizes WHERE witness = ?", (w.key.name,)).fetchone()
    return 0 if row is None else int(row[0])


def known(db: Connection) -> list[tuple[str, int, int]]:
    """Every witness that has cosigned for this log: (name, the size it last cosigned, when)."""
    return [(str(n), int(s), int(t)) for n, s, t in db.execute(
        "SELECT witness, size, updated_at FROM witness_sizes ORDER BY witness")]  # fmt: skip


def _set_size(db: Connection, w: Witness, size: int) -> None:
    """Inside a write transaction: the size the witness says it last cosigned."""
    db.execute(
        "INSERT INTO witness_sizes VALUES (?, ?, ?) ON CONFLICT (witness) DO UPDATE SET size = excluded.size,"
        " updated_at = excluded.updated_at",
        (w.key.name, size, int(time.time())),
    )


class WitnessRefused(RuntimeError):
    """A witness answered but did not cosign; the message says what it said."""


def _post(w: Witness, body: bytes, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(
        w.url + "/add-checkpoint", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 - configured URL
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def request_cosignature(db: Connection, w: Witness, cp: checkpoints.Checkpoint, timeout: float) -> str:
    """Asks one witness to cosign cp; stores and returns its cosignature line."""
    old, started = last_size(db, w), time.perf_counter()
    for _attempt in range(2):
        if old > cp.size:
            raise WitnessRefused(f"{w.key.name} has cosigned size {old}, beyond this checkpoint ({cp.size})")
        proof = ledger.consistency_proof(db, old, cp.size) if 0 < old < cp.size else []
        status, body = _post(w, witness.request_body(old, proof, cp.note), timeout)
        if status == 409:
            told = body.decode("ascii", "replace").strip()
            if not told.isdecimal() or int(told) == old:
                raise WitnessRefused(f"{w.key.name} refused size {cp.size}: it holds another root for it ({told})")
            old = int(told)
            with transaction(db):
                _set_size(db, w, old)
            continue
        if status != 200:
            raise WitnessRefused(f"{w.key.name} answered {status}: {body[:300].decode('utf-8', 'replace')}")
        for line in body.decode("utf-8").splitlines():
            name = line.removeprefix(note.SIG_PREFIX).rpartition(" ")[0]
            if name != w.key.name:
                continue
            checked = note.open_note(cp.note + (line + "\n").encode(), [w.key])
            when = dict(checked.cosigned).get(w.key.name)
            if when is None:
                continue
            with transaction(db):
                db.execute(
                    "INSERT INTO cosignatures VALUES (?, ?, ?, ?) ON CONFLICT (size, witness) DO NOTHING",
                    (cp.size, w.key.name, line + "\n", when),
                )
                _set_size(db, w, cp.size)
            log.info(
                "witness %s cosigned size %d in %.1f ms", w.key.name, cp.size, (time.perf_counter() - started) * 1e3
            )
            return line + "\n"
        raise WitnessRefused(f"{w.key.name} answered 200 without a valid cosignature by its key")
    raise WitnessRefused(f"{w.key.name} kept changing its size")


def cosign_latest(db: Connection, witnesses: Sequence[Witness], timeout: float) -> dict[str, str]:
    """One round: the latest checkpoint to every witness that has not cosigned it. Returns
    what each witness did (its cosignature, or why not); never raises for a witness."""
    cp = checkpoints.latest(db)
    if cp is None or cp.size == 0:
        return {}
    done = set(checkpoints.cosigned_by(db, cp.size))
    out = {}
    for w in witnesses:
        if w.key.name in done:
            continue
        try:
            out[w.key.name] = request_cosignature(db, w, cp, timeout)
        except (OSError, WitnessRefused, note.NoteError, UnicodeDecodeError) as e:
            log.warning("witness %s: %s (asked again next round)", w.key.name, e)
            out[w.key.name] = f"not cosigned: {e}"
    return out


class Cosigner(Periodic):
    """A daemon thread asking the witnesses to cosign the latest checkpoint every interval."""

    def __init__(
        self, connect: Callable[[], Connection], witnesses: Sequence[Witness], interval: float, timeout: float
    ) -> None:
        super().__init__("witness cosigner", connect, lambda db: cosign_latest(db, witnesses, timeout), interval)
