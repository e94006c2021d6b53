"""Ingest: every check on a device packet, then one atomic commit with its ledger entry.

Order (docs/protocol.md section 10): decode; device known and active; key id; signature;
count, Merkle root and time order inside the packet; the device's chain (sequence number,
previous header hash, reading numbers); time not in the future beyond MAX_SKEW_S, and
not before the previous packet when both are on synchronised clocks. All of these refuse.

Registers going back without a meter-fault event, and more energy than the device's
capacity allows, do not refuse: the packet is authentic and chained, and a refusal could
never be repaired (the next packet's prev names this one), so every later measurement of
the device would be stuck on the board. They are recorded as anomalies instead: in the
packet's ledger entry, in the anomalies table, and in the energy records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifier.devices import records
from verifier.devices.identity import OCMF_ROLE
from verifier.log import checkpoints, ledger, note
from verifier.storage import Conflict, Connection, transaction
from verifier.wire import strict_cbor
from verifier.wire.packet import (
    EVENT_CLOCK_SET,
    EVENT_METER_FAULT,
    GENESIS,
    KIND_DEVICE,
    KIND_METER,
    TIME_SYNCHRONISED,
    Packet,
    Reading,
    decode_packet,
    decode_reading,
    verify_packet,
)
from verifier.wire.problems import PacketError, Problem

MAX_SKEW_S = 300  # a reading may be at most this far ahead of the verifier's clock
ENERGY_SLACK = 1.25  # capacity x time x slack + 2 Wh: meters and clocks are not perfect


@dataclass(frozen=True)
class Outcome:
    packet: Packet
    duplicate: bool  # True: the very same packet was accepted before; nothing was written
    ledger_index: int
    anomalies: int = 0  # readings accepted but recorded as anomalous


class RateLimiter:
    """Token buckets in this process, one per key (a device, a client address): rate a second,
    bursts of burst."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def take(self, key: str) -> float:
        """0 when one more may pass (and it is counted); else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            return 0.0

    def wait(self, key: str) -> float:
        """The seconds until one more may pass (0: now), counting nothing."""
        with self._lock:
            tokens = self._tokens(key, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def charge(self, key: str, cost: int) -> None:
        """Counts cost after the fact; the bucket may go below zero (down to -burst), so a
        client that keeps wasting work waits longer."""
        if cost <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._buckets[key] = (max(-float(self.burst), self._tokens(key, now) - cost), now)
        if len(self._buckets) > 100_000:  # forget full buckets: they are the default anyway
            with self._lock:
                for k in [k for k, (t, _) in self._buckets.items() if t >= self.burst]:
                    del self._buckets[k]


MAX_BATCH_PACKETS = 256
MAX_BATCH_BYTES = 4 << 20


def may_be_new(db: Connection, datas: Sequence[bytes]) -> list[bool]:
    """For each packet, whether it can be one the ledger takes: well formed, of an active
    device, its seq the next of the device's chain (counting the ones before it here). Cheap
    (no signature checked, one read a device): what a client past its waste budget still
    gets checked, so one client's junk or replays never stop another board's next packet."""
    out: list[bool] = []
    expected: dict[str, int] = {}
    for data in datas:
        try:
            h = decode_packet(data).header
        except PacketError:
            out.append(False)
            continue
        if h.device_id not in expected:
            row = db.execute(
                "SELECT d.status, c.seq FROM devices d LEFT JOIN chain_heads c ON c.device_id = d.device_id"
                " WHERE d.device_id = ?",
                (h.device_id,),
            ).fetchone()
            expected[h.device_id] = (
                -1 if row is None or row[0] != "active" else (0 if row[1] is None else int(row[1]) + 1)
            )
        new = h.seq == expected[h.device_id] >= 0
        if new:
            expected[h.device_id] += 1
        out.append(new)
    return out


def split_batch(data: bytes) -> list[bytes]:
    """The packets of a batch body: a definite CBOR array of at most MAX_BATCH_PACKETS byte
    strings in the deterministic profile. Reads heads only and stops at the first thing
    wrong, so a body of millions of items costs no more than its first few bytes."""
    pos, n = _head(data, 0, 4, "batch")
    if n == 0:
        raise Problem("invalid-field", "batch", "expected a non-empty array of byte strings, one packet each")
    if n > MAX_BATCH_PACKETS:
        raise Problem("batch-too-large", "batch", f"{n} packets, at most {MAX_BATCH_PACKETS} in one request")
    out = []
    for i in range(n):
        pos, length = _head(data, pos, 2, f"batch[{i}]")
        if pos + length > len(data):
            raise Problem("malformed-cbor", f"batch[{i}]", "the byte string runs past the end of the body")
        out.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise Problem("malformed-cbor", "batch", f"{len(data) - pos} bytes after the array")
    return out


def _head(data: bytes, pos: int, major: int, field: str) -> tuple[int, int]:
    """(position after the head, its argument) of a definite, shortest-form head of a major type."""
    try:
        found, value, end = strict_cbor.head(data, pos)
    except strict_cbor.CBORProfileError as e:
        raise Problem("malformed-cbor", field, str(e)) from None
    if found != major:
        what = "an array" if major == 4 else "a byte string"
        raise Problem("invalid-field", field, f"expected {what} (CBOR major type {major})")
    return end, value


class _Ticket:
    """One request's packets waiting in a Joiner, and what became of them."""

    __slots__ = ("datas", "done", "lead", "results", "error")

    def __init__(self, datas: list[bytes]) -> None:
        self.datas = datas
        self.done = threading.Event()
        self.lead = False  # woken to lead the next round, not with its results
        self.results: list[Outcome | Problem] = []
        self.error: BaseException | None = None


class Joiner:
    """Group commit: the packets of requests that arrive while a transaction is under way in
    this process go into the next transaction together, one commit and one checkpoint for
    all of them (a board sends one packet a request; a city's boards send a thousand a
    second).

    The first request finds the joiner idle and runs its own packets at once: nothing waits
    for company, so a lone request is answered as fast as before. Requests that arrive
    meanwhile queue; when the running round ends, the first of them leads the next round
    with every packet queued by then (up to MAX_BATCH_PACKETS, whole requests). Each request
    gets its own packets' results, in order, as accept_batch gives them: one refused packet
    changes nothing for the others. A round that fails (the database lost) fails every
    request in it, and nothing of it is committed: each is answered as such and retried."""

    def __init__(self, most: int = 0) -> None:
        self.most = most or MAX_BATCH_PACKETS
        self._lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._busy = False
        self.rounds = 0  # transactions run, and the packets in them: what joining saved
        self.packets = 0

    def accept(self, run: Any, datas: list[bytes]) -> list[Outcome | Problem]:
        """run(datas) -> results, for these packets and any joined to them."""
        ticket = _Ticket(datas)
        with self._lock:
            self._queue.append(ticket)
            lead = ticket.lead = not self._busy
            self._busy = True
        if not lead:
            ticket.done.wait()
        if ticket.lead:
            self._round(run)
        if ticket.error is not None:
            raise ticket.error
        return ticket.results

    def _round(self, run: Any) -> None:
        with self._lock:
            taken, count = 0, 0
            for t in self._queue:
                if taken and count + len(t.datas) > self.most:
                    break
                taken, count = taken + 1, count + len(t.datas)
            batch, self._queue = self._queue[:taken], self._queue[taken:]
        try:
            results = run([d for t in batch for d in t.datas])
            start = 0
            for t in batch:
                t.results = results[start : start + len(t.datas)]
                start += len(t.datas)
        except BaseException as e:  # noqa: BLE001 - every request of the round answers it
            for t in batch:
                t.error = e
        with self._lock:
            self.rounds += 1
            self.packets += count
            if self._queue:  # the next round's leader takes what queued meanwhile
                nxt = self._queue[0]
                nxt.lead = True
                nxt.done.set()
            else:
                self._busy = False
        for t in batch:
            t.lead = False
            t.done.set()


def accept_packet(db: Connection, data: bytes, limiter: RateLimiter | None = None, now: float | None = None) -> Outcome:
    """Verifies packet bytes and appends them to the device's chain and the ledger."""
    result = accept_batch(db, [data], limiter, now)[0]
    if isinstance(result, Problem):
        raise result  # an equivocation's evidence is committed before the refusal is answered
    return result


def accept_batch(
    db: Connection,
    datas: list[bytes],
    limiter: RateLimiter | None = None,
    now: float | None = None,
    publish: note.Signer | None = None,
) -> list[Outcome | Problem]:
    """accept_packet for many packets, in order, with one commit for all of them; with
    publish (the log's key), a batch that grows the log signs its checkpoint in that commit.

    Each packet has its own outcome: one refused packet changes nothing for the others
    (every refusal is decided before anything of it is written). Nothing is acknowledged
    before the single commit is on disk; a crash before it loses the whole batch, which the
    sender then retries.

    Everything that only reads is done before the write lock is taken, on a snapshot of
    each device's chain (carried from packet to packet within the batch), and the readings
    of the packets planned to be appended are written before it too (_write_batch); under
    the lock, a plan whose snapshot is no longer the device's latest state is made again.
    """
    verified: list[tuple[Packet, int, bool] | Problem] = []
    decoded: list[Packet | Problem] = []
    for data in datas:
        try:
            decoded.append(decode_packet(data))
        except Problem as e:
            decoded.append(e)
    seen = _devices(db, {p.header.device_id for p in decoded if isinstance(p, Packet)})  # one query a batch
    for packet in decoded:
        try:
            verified.append(packet if isinstance(packet, Problem) else _verified(db, packet, now, seen))
        except Problem as e:
            verified.append(e)
    for attempt in range(CONFLICT_RETRIES + 1):
        heads = {d: _state_of(d, row[5:-1]) for d, row in seen.items()} if attempt == 0 else {}  # read with them
        planned = _plan_batch(db, verified, limiter if attempt == 0 else None, heads)  # a retry costs no tokens
        try:
            return _write_batch(db, planned, publish)
        except Conflict:
            if attempt == CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


# How often a batch is planned again when its transaction met another's (PostgreSQL broke a
# deadlock between two workers taking the same packets).
CONFLICT_RETRIES = 2


def _plan_batch(
    db: Connection,
    verified: list[tuple[Packet, int, bool] | Problem],
    limiter: RateLimiter | None,
    heads: dict[str, _State] | None = None,
) -> list[_Plan | Problem]:
    """Each verified packet's plan, on a snapshot of its device's chain (heads: read already)
    carried from packet to packet; writes nothing."""
    planned: list[_Plan | Problem] = []
    states: dict[str, _State] = dict(heads or {})
    for item in verified:
        if isinstance(item, Problem):
            planned.append(item)
            continue
        packet, capacity_w, flagged = item
        device_id = packet.header.device_id
        state = states.get(device_id) or _state(db, device_id)
        plan = _plan(db, packet, capacity_w, state)
        if plan.result is None and plan.entry:  # it would be appended: only new packets cost the device
            if flagged:
                plan.result = _flagged(device_id)
            elif limiter is not None and (wait := limiter.take(device_id)):
                plan.result = Problem(
                    "rate-limited", "header.payload.device_id", f"retry in {wait:.1f} s", retry_after=wait
                )
        if plan.result is None and plan.after is not None:
            states[device_id] = plan.after
        planned.append(plan)
    return planned


def _write_batch(
    db: Connection, planned: list[_Plan | Problem], publish: note.Signer | None
) -> list[Outcome | Problem]:
    """The batch's one transaction."""
    with transaction(db):
        _read_under_lock(db, {p.packet.header.device_id for p in planned if isinstance(p, _Plan)})
        results: list[Outcome | Problem] = []
        for p in planned:
            results.append(p if isinstance(p, Problem) else _commit(db, p))
        if publish is not None and any(isinstance(r, Outcome) and not r.duplicate for r in results):
            checkpoints.sign_current(db, publish)  # the batch's checkpoint, in its one commit
        return results


def is_new(result: Outcome | Problem) -> bool:
    """Whether a result stored something new (what a client's waste budget does not pay for)."""
    return isinstance(result, Outcome) and not result.duplicate


def _recorded(db: Connection, packet: Packet, public_key: bytes) -> bool:
    """Whether a revoked device's packet is one the ledger accepted before the revocation: its
    retry still gets its receipt (a duplicate), so the board can let it go; any other packet
    of a revoked device is refused."""
    try:
        verify_packet(packet, public_key)
    except PacketError:
        return False
    h = packet.header
    row = db.execute("SELECT header_hash FROM packets WHERE device_id = ? AND seq = ?", (h.device_id, h.seq)).fetchone()
    return row is not None and bytes(row[0]) == packet.header_hash


def _flagged(device_id: str) -> Problem:
    return Problem(
        "device-flagged",
        "header.payload.device_id",
        f"device {device_id} is quarantined after an equivocation: keep the packet; an installer"
        " revokes the device or an admin clears the flag (docs/devices.md)",
    )


def _by_device(db: Connection, select: str, device_ids: set[str]) -> dict[str, Any]:
    """The rows of select (a query on devices d whose last column is d.device_id) for these
    devices, by device id: one query for up to 500 of them."""
    found: dict[str, Any] = {}
    ids = sorted(device_ids)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for row in db.execute(f"{select} WHERE d.device_id IN ({', '.join('?' * len(part))})", part):
            found[row[-1]] = row
    return found


def _devices(db: Connection, device_ids: set[str]) -> dict[str, Any]:
    """The rows of a batch's devices, each with its chain head for the plan, by device id
    (the devices not enrolled are missing)."""
    return _by_device(
        db,
        f"SELECT d.public_key, d.status, d.attributes, d.flagged, d.role, {_HEAD_COLUMNS}, d.device_id"
        " FROM devices d LEFT JOIN chain_heads c ON c.device_id = d.device_id"
        " LEFT JOIN edges_unordered u ON u.device_id = d.device_id",
        device_ids,
    )


def _verified(db: Connection, packet: Packet, now: float | None, seen: dict[str, Any]) -> tuple[Packet, int, bool]:
    """Every check that needs no chain state: the packet, its device's capacity (W), and
    whether the device is flagged. seen: the batch's device rows (_devices)."""
    h = packet.header
    row = seen.get(h.device_id)
    if row is None:
        raise PacketError("unknown-device", "header.payload.device_id", f"device {h.device_id!r} is not enrolled")
    if row[1] != "active" and not _recorded(db, packet, bytes(row[0])):
        raise PacketError("device-revoked", "header.payload.device_id", f"device {h.device_id!r} was revoked")
    if row[4] == OCMF_ROLE:
        detail = f"{h.device_id!r} is a third-party charger: its OCMF records go to POST /v1/ocmf"
        raise PacketError("unknown-device", "header.payload.device_id", detail)
    verify_packet(packet, bytes(row[0]))
    now = time.time() if now is None else now
    if h.last_ts > now + MAX_SKEW_S:
        raise PacketError(
            "timestamp-in-future",
            "header.payload.last_ts",
            f"{h.last_ts - now:.0f} s ahead of the verifier's clock (at most {MAX_SKEW_S})",
        )
    return packet, int(json.loads(row[2]).get("capacity_w", 0)), bool(row[3])


@dataclass(frozen=True)
class _State:
    """What the checks need of a device's chain: its last accepted packet (seq, header hash),
    its last reading, its last meter reading, and whether a meter fault followed that."""

    device_id: str
    last: tuple[int, bytes] | None
    reading: Reading | None
    meter: Reading | None
    fault: bool
    unordered: bool = False  # the meter's time went back once: no register edges are kept
    span: int = 0  # the longest of its packets, last_ts - first_ts (records: searches by time)


@dataclass
class _Plan:
    packet: Packet
    capacity_w: int
    basis: tuple[int, bytes] | None  # the chain state the plan was made on
    result: Outcome | Problem | _Equivocation | None = None  # decided without a write
    after: _State | None = None  # the chain state once this packet is appended
    anomalies: list[tuple[int, str, str]] | None = None
    entry: bytes = b""
    stored: bytes = b""  # the packet row's readings (records.pack), made before the lock
    edges: tuple[list[tuple[int | str, ...]], bool, int | None] = ([], False, None)  # records.edge_rows


_HEAD_COLUMNS = "c.seq, c.header_hash, c.reading, c.meter, c.fault, u.device_id, c.span"


def _state(db: Connection, device_id: str) -> _State:
    """The device's chain state: its chain_heads row, written with every accepted packet."""
    row = db.execute(
        f"SELECT {_HEAD_COLUMNS} FROM chain_heads c"
        " LEFT JOIN edges_unordered u ON u.device_id = c.device_id WHERE c.device_id = ?",
        (device_id,),
    ).fetchone()
    return _state_of(device_id, row)


def _state_of(device_id: str, row: Sequence[Any] | None) -> _State:
    """The chain state from a row of _HEAD_COLUMNS (None, or NULLs: no packet yet)."""
    if row is None or row[0] is None:
        return _State(device_id, None, None, None, False)
    meter = None if row[3] is None else decode_reading(bytes(row[3]))
    last = (int(row[0]), bytes(row[1]))
    return _State(device_id, last, decode_reading(bytes(row[2])), meter, bool(row[4]), row[5] is not None, int(row[6]))


def _plan(db: Connection, packet: Packet, capacity_w: int, state: _State) -> _Plan:
    """Decides a verified packet's fate against a chain state, writing nothing."""
    h = packet.header
    plan = _Plan(packet, capacity_w, state.last)
    if state.last is not None and h.seq <= state.last[0]:
        same = db.execute(
            "SELECT header_hash, ledger_idx FROM packets WHERE device_id = ? AND seq = ?", (h.device_id, h.seq)
        ).fetchone()
        if same is None:  # planned earlier in this batch, not written yet: decide under the lock
            plan.basis = (-1, b"")
        elif bytes(same[0]) == packet.header_hash:
            plan.result = Outcome(packet, duplicate=True, ledger_index=int(same[1]))
        else:
            plan.result = _Equivocation(ledger.entry(db, int(same[1])).body["header"])
        return plan
    try:
        _check_chain(packet, state)
    except Problem as e:
        plan.result = e
        return plan
    anomalies, meter, fault = _check_registers(packet, capacity_w, state)
    plan.anomalies = anomalies
    if not state.unordered:
        plan.edges = records.edge_rows(h.device_id, state.meter, packet.readings)
    unordered = state.unordered or plan.edges[1]
    span = max(state.span, h.last_ts - h.first_ts)
    plan.after = _State(h.device_id, (h.seq, packet.header_hash), packet.readings[-1], meter, fault, unordered, span)
    fields: dict[str, Any] = {
        "device_id": h.device_id,
        "seq": h.seq,
        "header": packet.cose_sign1,
        "received": int(time.time()),
    }
    if anomalies:
        fields["anomalies"] = [[number, check, detail] for number, check, detail in anomalies]
    plan.entry = ledger.encode_entry("packet", fields)
    plan.stored = records.pack([r.raw for r in packet.readings])  # the array as the board sent it
    return plan


def _check_chain(packet: Packet, state: _State) -> None:
    h = packet.header
    expected = 0 if state.last is None else state.last[0] + 1
    if h.seq != expected:
        raise Problem(
            "sequence-conflict", "header.payload.seq", f"expected packet {expected}, got {h.seq}", expected_seq=expected
        )
    if h.prev != (GENESIS if state.last is None else state.last[1]):
        raise Problem(
            "sequence-conflict",
            "header.payload.prev",
            "prev is not the hash of the device's last accepted header",
            expected_seq=expected,
        )
    previous = state.reading
    if previous is None and packet.readings[0].number != 0:
        raise PacketError(
            "reading-number-gap",
            "readings[0].number",
            f"a device's first reading is 0, got {packet.readings[0].number}",
        )
    if previous is not None:
        if packet.readings[0].number != previous.number + 1:
            raise PacketError(
                "reading-number-gap",
                "readings[0].number",
                f"expected reading {previous.number + 1}, got {packet.readings[0].number}",
            )
        first = packet.readings[0]
        clock_set = first.kind == KIND_DEVICE and first.values["event"] == EVENT_CLOCK_SET
        if first.quality == previous.quality == TIME_SYNCHRONISED and first.ts < previous.ts and not clock_set:
            raise PacketError(
                "timestamp-out-of-range",
                "readings[0].ts",
                "earlier than the device's previous reading on a synchronised clock",
            )


_LOCKED_ROW = (
    "SELECT d.flagged, c.seq, c.header_hash, d.status, d.kid, d.public_key, d.device_id FROM devices d"
    " LEFT JOIN chain_heads c ON c.device_id = d.device_id"
)


def _read_under_lock(db: Connection, device_ids: set[str]) -> None:
    """The flag, status, key and chain head of the batch's devices, as they are now that the
    lock is held: one query for all of them, each row used once by _commit."""
    db.scratch.setdefault("locked rows", {}).update(_by_device(db, _LOCKED_ROW, device_ids))


def _commit(db: Connection, plan: _Plan) -> Outcome | Problem:
    """Applies a plan inside the caller's transaction, first making it again if the device's
    chain moved since its snapshot (the chain head is read once per device per transaction,
    then followed in the transaction's scratch)."""
    h = plan.packet.header
    if isinstance(plan.result, Outcome) and plan.result.duplicate:
        return plan.result  # the very packet is in the ledger: nothing since changes that
    chains: dict[str, tuple[bool, tuple[int, bytes] | None]] = db.scratch.setdefault("chains", {})
    if h.device_id not in chains:  # the device's flag and chain head, read once under the lock
        row = db.scratch.get("locked rows", {}).pop(h.device_id, None)
        if row is None:
            row = db.execute(_LOCKED_ROW + " WHERE d.device_id = ?", (h.device_id,)).fetchone()
        if row[3] != "active":  # revoked since the packet was checked
            return PacketError("device-revoked", "header.payload.device_id", f"device {h.device_id!r} was revoked")
        if bytes(row[4]) != plan.packet.kid:  # its key rotated since: the new key decides
            try:
                verify_packet(plan.packet, bytes(row[5]))
            except PacketError as e:
                return e
        chains[h.device_id] = (bool(row[0]), None if row[1] is None else (int(row[1]), bytes(row[2])))
    flagged, last = chains[h.device_id]
    if last != plan.basis:
        plan = _plan(db, plan.packet, plan.capacity_w, _state(db, h.device_id))
    if isinstance(plan.result, Outcome | Problem):
        return plan.result
    assert plan.entry or plan.result is not None, "a plan made under the lock always decides"
    if isinstance(plan.result, _Equivocation):
        if _equivocation_recorded(db, h.device_id, h.seq, plan.packet.cose_sign1):
            return Problem(
                "equivocation",
                "header.payload.seq",
                f"packet {h.seq} of {h.device_id} was already accepted with other content; this evidence is"
                " recorded already",
            )
        ledger.append(
            db,
            "equivocation",
            h.device_id,
            {
                "device_id": h.device_id,
                "seq": h.seq,
                "accepted": plan.result.accepted,
                "offered": plan.packet.cose_sign1,
            },
        )
        db.execute("UPDATE devices SET flagged = 1 WHERE device_id = ?", (h.device_id,))
        chains[h.device_id] = (True, last)
        return Problem(
            "equivocation",
            "header.payload.seq",
            f"packet {h.seq} of {h.device_id} was already accepted with other content; the device is flagged",
        )
    if flagged:
        return _flagged(h.device_id)  # flagged by an earlier packet of this batch, or meanwhile
    outcome = _append(db, plan)  # a failure here fails the whole batch: nothing is committed
    chains[h.device_id] = (False, (h.seq, plan.packet.header_hash))
    return outcome


def _equivocation_recorded(db: Connection, device_id: str, seq: int, offered: bytes) -> bool:
    """Whether the ledger holds an equivocation entry for this (device, seq, offered header):
    replaying the evidence must not grow the ledger."""
    return any(
        e.body["seq"] == seq and e.body["offered"] == offered
        for e in ledger.of_device(db, device_id, ("equivocation",))
    )


class _Equivocation(Exception):
    def __init__(self, accepted: bytes) -> None:
        self.accepted = accepted


def _append(db: Connection, plan: _Plan) -> Outcome:
    packet, h, anomalies = plan.packet, plan.packet.header, plan.anomalies or []
    index = ledger.append_encoded(db, "packet", h.device_id, plan.entry)
    # Deferred, as the ledger's rows: a batch's packets go in with one statement per table.
    if anomalies:
        db.defer_rows(
            "anomalies",
            ("device_id", "number", "check_type", "detail", "ledger_idx"),
            [(h.device_id, number, check, detail, index) for number, check, detail in anomalies],
        )
    db.defer_rows(
        "packets",
        (
            "device_id",
            "seq",
            "header_hash",
            "ledger_idx",
            "reading_count",
            "first_number",
            "first_ts",
            "last_ts",
            "received_at",
            "readings",
        ),
        [
            (
                h.device_id,
                h.seq,
                packet.header_hash,
                index,
                h.count,
                packet.readings[0].number,
                h.first_ts,
                h.last_ts,
                int(time.time()),
                plan.stored,
            )
        ],
    )
    rows, went_back, replaced = plan.edges
    if went_back:  # from now on this device's edges are looked up in its readings
        db.execute("DELETE FROM register_edges WHERE device_id = ?", (h.device_id,))
        db.execute("INSERT INTO edges_unordered (device_id) VALUES (?)", (h.device_id,))
    if replaced is not None:  # a second reading exactly at a quarter hour stored before
        db.execute("DELETE FROM register_edges WHERE device_id = ? AND t = ?", (h.device_id, replaced))
    if rows:
        db.defer_rows("register_edges", records.EDGE_COLUMNS, rows)
    after = plan.after
    assert after is not None and after.reading is not None
    meter = None if after.meter is None else after.meter.raw
    # The chain head, once per device per batch (a later packet's statement replaces it).
    db.defer_statement(
        f"chain_heads:{h.device_id}",
        "INSERT INTO chain_heads (device_id, seq, header_hash, reading, meter, fault, span)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq,"
        " header_hash = excluded.header_hash, reading = excluded.reading, meter = excluded.meter,"
        " fault = excluded.fault, span = excluded.span",
        (
            h.device_id,
            h.seq,
            packet.header_hash,
            after.reading.raw,
            meter,
            int(after.fault and meter is not None),
            after.span,
        ),  # fmt: skip
    )
    return Outcome(packet, duplicate=False, ledger_index=index, anomalies=len(anomalies))


def _check_registers(
    packet: Packet, capacity_w: int, state: _State
) -> tuple[list[tuple[int, str, str]], Reading | None, bool]:
    """(reading number, problem slug, detail) for each register that went back without a
    meter-fault event before it, and each step with more energy than the capacity allows;
    then the last meter reading and whether a meter fault followed it."""
    before, fault = state.meter, state.fault
    found = []
    for r in packet.readings:
        if r.kind == KIND_DEVICE and r.values["event"] == EVENT_METER_FAULT:
            fault = True
        if r.kind != KIND_METER:
            continue
        if before is not None and not fault:
            for name in ("import_wh", "export_wh"):
                delta = r.values[name] - before.values[name]
                seconds = r.ts - before.ts
                both_timed = r.quality == before.quality == TIME_SYNCHRONISED
                if delta < 0:
                    found.append((r.number, "register-decreased", f"{name} went back by {-delta} Wh"))
                elif both_timed and seconds > 0 and delta > capacity_w * seconds / 3600 * ENERGY_SLACK + 2:
                    found.append(
                        (r.number, "implausible-energy", f"{name}: {delta} Wh in {seconds} s exceeds {capacity_w} W")
                    )
        before, fault = r, False
    return found, before, fault


def stored_packet(db: Connection, device_id: str, seq: int) -> bytes:
    """The packet bytes as the device sent them, rebuilt from the ledger and the readings."""
    row = db.execute(
        "SELECT ledger_idx, readings FROM packets WHERE device_id = ? AND seq = ?", (device_id, seq)
    ).fetchone()
    if row is None:
        raise LookupError(f"no packet {seq} of {device_id}")
    header: bytes = ledger.entry(db, int(row[0])).body["header"]
    return b"\x82" + header + records.array(bytes(row[1]))


def packet_entry(db: Connection, device_id: str, seq: int) -> int:
    """The ledger index of a device's accepted packet seq; LookupError if there is none."""
    row = db.execute("SELECT ledger_idx FROM packets WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchone()
    if row is None:
        raise LookupError(f"no packet {seq} of {device_id}")
    return int(row[0])


def describe(outcome: Outcome) -> dict[str, Any]:
    h = outcome.packet.header
    return {
        "status": "duplicate" if outcome.duplicate else "accepted",
        "device_id": h.device_id,
        "seq": h.seq,
        "header_hash": outcome.packet.header_hash.hex(),
        "ledger_index": outcome.ledger_index,
        "anomalies": outcome.anomalies,
    }


def headers(db: Connection, device_id: str) -> list[tuple[int, bytes]]:
    """(seq, COSE_Sign1 header bytes) of a device's accepted packets, in order."""
    rows = [
        (int(r[0]), int(r[1]))
        for r in db.execute("SELECT seq, ledger_idx FROM packets WHERE device_id = ? ORDER BY seq", (device_id,))
    ]
    found = ledger.bodies(db, [idx for _, idx in rows])
    return [(seq, found[idx]["header"]) for seq, idx in rows]


def chain_head(db: Connection, device_id: str) -> tuple[int, bytes] | None:
    """(seq, header hash) of a device's last accepted packet, or None before its first."""
    row = db.execute("SELECT seq, header_hash FROM chain_heads WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def packet_hash(db: Connection, device_id: str, seq: int) -> bytes | None:
    """The header hash of a device's accepted packet seq, or None."""
    row = db.execute("SELECT header_hash FROM packets WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchone()
    return None if row is None else bytes(row[0])


def first_number_after(db: Connection, device_id: str, ledger_index: int) -> int | None:
    """The first reading number of the device's first packet appended after a ledger entry
    (the first reading a key set by that entry signed), or None."""
    row = db.execute(
        "SELECT first_number FROM packets WHERE device_id = ? AND ledger_idx > ? ORDER BY ledger_idx LIMIT 1",
        (device_id, ledger_index),
    ).fetchone()
    return None if row is None else int(row[0])
