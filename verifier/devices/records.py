"""Records for utilities: readings by time with cursors, and energy per interval."""

from __future__ import annotations

import bisect
import json
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import cbor2

from verifier.storage import Connection
from verifier.wire import strict_cbor, times
from verifier.wire.packet import DEVICE_EVENTS, KIND_METER, MAX_READINGS, SESSION_EVENTS, Reading, decode_reading

KINDS = {1: "meter", 2: "session", 3: "device"}
QUALITIES = {0: "unknown", 1: "informative", 2: "synchronised"}
INTERVALS = {"15m": 900, "1h": 3600, "1d": 86400}
GAP_S = 300  # a boundary between readings further apart than this is "interpolated"
# The qualities from best to worst: what several devices' interval together is worth is its worst.
QUALITY_RANK = {"measured": 0, "interpolated": 1, "partial": 2, "disputed": 3, "missing": 4}
QUALITY_OF_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}
MAX_INTERVALS = 8784  # a leap year of hours


class TooMuchWork(ValueError):
    """A request asks for more than one answer may cost; the message says the bound."""


iso = times.iso  # total: a time outside 1970..9999 is shown, never an exception
MAX_TIME = times.MAX_TIME


def parse_time(raw: str) -> int:
    """A time as people give it: Unix seconds, or ISO 8601 with Z or an offset."""
    if raw.isascii() and raw.isdecimal() and len(raw) <= 13:
        value = int(raw)
    else:
        try:
            when = datetime.fromisoformat(raw.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"expected Unix seconds or ISO 8601 (2026-11-18T11:00:00Z), {times.BOUND_TEXT}") from None
        if when.tzinfo is None:
            raise ValueError("an ISO 8601 time needs Z or an offset (+01:00): local time is ambiguous")
        try:
            value = int(when.timestamp())
        except (OverflowError, OSError, ValueError):
            value = -1
    if not times.in_range(value):
        raise ValueError(f"expected {times.BOUND_TEXT}")
    return value


def reading_json(r: Reading) -> dict[str, Any]:
    values = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in r.values.items()}
    if r.kind == 2:
        values["event"] = SESSION_EVENTS[r.values["event"]]
    elif r.kind == 3:
        values["event"] = DEVICE_EVENTS[r.values["event"]]
    return {
        "number": r.number,
        "kind": KINDS[r.kind],
        "ts": r.ts,
        "time": iso(r.ts),
        "quality": QUALITIES[r.quality],
        **values,
    }


# -- the readings, kept in their packets ----------------------------------------------------
#
# Each packet row holds its readings as the one array the board signed them in (CBOR, each
# reading the exact bytes it hashed): a row per reading cost more than the reading. A search
# by number finds the packet by its first number; a search by time finds it by its first
# reading's time, reaching back by the device's longest packet (chain_heads.span), so that a
# packet that began before a time and ends after it is never missed.

PAGE = 64  # packets fetched per query while scanning


def pack(raws: Sequence[bytes]) -> bytes:
    """What a packet row keeps of its readings: the array they were signed in (CBOR, each the
    exact bytes its board hashed), compressed with zlib (RFC 1950): a packet's readings repeat
    their keys and most of their values, and take a third of the space so. Level 1: as small
    as the default's for 15 readings (1.5 % more for 64) in half the time or less."""
    return zlib.compress(strict_cbor.dumps(list(raws)), 1)


def array(blob: bytes) -> bytes:
    """The readings array of a packet row, byte for byte as the board sent it."""
    return zlib.decompress(blob)


def unpack(blob: bytes) -> list[bytes]:
    """A packet row's readings: the bytes of each, in order. (The array ingest wrote after its
    strict checks; the audit hashes every item into the signed root again.)"""
    raws = cbor2.loads(zlib.decompress(blob))
    if type(raws) is not list:
        raise ValueError("a packet row's readings are not an array")
    return raws


def kind_of(raw: bytes) -> int:
    """A stored reading's kind without decoding it: a reading is a CBOR map whose first key is
    0 (canonical order), its value the kind (wire/packet.py)."""
    if raw[0] & 0xE0 == 0xA0 and raw[1] == 0 and raw[2] < 24:
        return raw[2]
    return decode_reading(raw).kind


def _span(db: Connection, device_id: str) -> int:
    row = db.execute("SELECT span FROM chain_heads WHERE device_id = ?", (device_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _by_number(db: Connection, device_id: str, after: int, columns: str = "seq, ledger_idx") -> Iterator[Any]:
    """(first_number, readings blob, *columns) of the packets that hold readings numbered above
    after, in number order."""
    last = after - MAX_READINGS  # a packet that holds after + 1 begins no earlier than this
    while True:
        rows = db.execute(
            f"SELECT first_number, readings, {columns} FROM packets WHERE device_id = ? AND first_number > ?"
            " ORDER BY first_number LIMIT ?",
            (device_id, last, PAGE),
        ).fetchall()
        yield from rows
        if len(rows) < PAGE:
            return
        last = int(rows[-1][0])


def _by_time(db: Connection, device_id: str, lo: int, hi: int, descending: bool) -> Iterator[Any]:
    """(first_ts, seq, readings blob) of the packets whose first reading's time is in lo..hi,
    by that time (then seq), ascending or descending."""
    order = "DESC" if descending else ""
    bound: tuple[int, int] | None = None
    while True:
        keyset, params = "", [device_id, lo, hi]
        if bound is not None:
            keyset = " AND (first_ts < ? OR (first_ts = ? AND seq < ?))" if descending else (
                " AND (first_ts > ? OR (first_ts = ? AND seq > ?))")  # fmt: skip
            params += [bound[0], bound[0], bound[1]]
        rows = db.execute(
            f"SELECT first_ts, seq, readings FROM packets WHERE device_id = ? AND first_ts >= ? AND first_ts <= ?"
            f"{keyset} ORDER BY first_ts {order}, seq {order} LIMIT ?",
            (*params, PAGE),
        ).fetchall()
        yield from rows
        if len(rows) < PAGE:
            return
        bound = (int(rows[-1][0]), int(rows[-1][1]))


def readings(
    db: Connection, device_id: str, start: int, end: int, cursor: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Readings with start <= ts < end in number order, after the cursor; and the next cursor.
    Each says which packet holds it (its seq and ledger entry)."""
    after = -1 if cursor is None else cursor
    lo = start - _span(db, device_id)  # a packet holding a reading at start began no earlier
    out: list[dict[str, Any]] = []
    last = after - MAX_READINGS
    while len(out) <= limit:
        rows = db.execute(
            "SELECT first_number, readings, seq, ledger_idx FROM packets WHERE device_id = ? AND first_number > ?"
            " AND first_ts >= ? AND first_ts < ? ORDER BY first_number LIMIT ?",
            (device_id, last, lo, end, PAGE),
        ).fetchall()
        for first, blob, seq, idx in rows:
            for i, raw in enumerate(unpack(blob)):
                if first + i <= after:
                    continue
                r = decode_reading(raw)
                if start <= r.ts < end:
                    out.append({**reading_json(r), "packet": {"seq": int(seq), "ledger_index": int(idx)}})
        if len(rows) < PAGE:
            break
        last = int(rows[-1][0])
    return out[:limit], (out[limit - 1]["number"] if len(out) > limit else None)


def reading(db: Connection, device_id: str, number: int) -> Reading | None:
    """A device's reading by its number, or None."""
    row = db.execute(
        "SELECT first_number, reading_count, readings FROM packets WHERE device_id = ? AND first_number <= ?"
        " ORDER BY first_number DESC LIMIT 1",
        (device_id, number),
    ).fetchone()
    if row is None or number >= int(row[0]) + int(row[1]):
        return None
    return decode_reading(unpack(row[2])[number - int(row[0])])


def meter_at_or_before(db: Connection, device_id: str, t: int) -> Reading | None:
    """A device's last meter reading at or before t (the latest time, then the highest number)."""
    span, best = _span(db, device_id), None
    for first_ts, _, blob in _by_time(db, device_id, -(2**62), t, descending=True):
        if best is not None and first_ts + span < best.ts:
            break  # this packet and those before it end before the best one found
        for raw in unpack(blob):
            if kind_of(raw) != KIND_METER:
                continue
            r = decode_reading(raw)
            if r.ts <= t and (best is None or (r.ts, r.number) > (best.ts, best.number)):
                best = r
    return best


def meter_at_or_after(db: Connection, device_id: str, t: int) -> Reading | None:
    """A device's first meter reading at or after t (the earliest time, then the lowest number)."""
    best = None
    for first_ts, _, blob in _by_time(db, device_id, t - _span(db, device_id), 2**62, descending=False):
        if best is not None and first_ts > best.ts:
            break  # this packet and those after it begin after the best one found
        for raw in unpack(blob):
            if kind_of(raw) != KIND_METER:
                continue
            r = decode_reading(raw)
            if r.ts >= t and (best is None or (r.ts, r.number) < (best.ts, best.number)):
                best = r
    return best


def _first_meter(db: Connection, device_id: str) -> Reading | None:
    for _, blob, *_ in _by_number(db, device_id, -1):
        for raw in unpack(blob):
            if kind_of(raw) == KIND_METER:
                return decode_reading(raw)
    return None


REGISTERS = ("import_wh", "export_wh")
EDGE_STEP = 900  # register edges are kept at every quarter hour (hours and days are quarter hours too)
MAX_EDGE_GAP = 35_136  # a gap across more quarter hours than a year's is not written out (looked up instead)


class Point(NamedTuple):
    """A meter reading as the energy arithmetic needs it: its time and its registers."""

    ts: int
    registers: tuple[int, int]  # import_wh, export_wh


def point(r: Reading) -> Point:
    return Point(r.ts, (r.values["import_wh"], r.values["export_wh"]))


class _Edge(NamedTuple):
    """What a boundary time t needs of the meter readings on either side of it (the last at
    or before t, the first at or after it): the registers at t when the readings surround it
    (else None), whether t falls in a gap longer than GAP_S (its split is interpolated), and
    the readings themselves (for an interval where the readings begin or end)."""

    at: tuple[int, int] | None
    gap: bool
    before: Point | None
    after: Point | None


def _at(t: int, bts: int, bi: int, be: int, ats: int, ai: int, ae: int) -> tuple[int, int]:
    """The registers at t in whole Wh: the straight line between the readings around t,
    rounded down. Every interval that ends at t and every one that starts there use this
    same value, so the intervals of any span add up to the registers' delta over it."""
    dt = ats - bts
    if dt <= 0:
        return bi, be
    num = t - bts
    return bi + (ai - bi) * num // dt, be + (ae - be) * num // dt


def _edge(t: int, before: Point | None, after: Point | None) -> _Edge:
    if before is None or after is None:
        return _Edge(None, False, before, after)
    (bi, be), (ai, ae) = before.registers, after.registers
    return _Edge(_at(t, before.ts, bi, be, after.ts, ai, ae), after.ts - before.ts > GAP_S, before, after)


def edge_rows(
    device_id: str, previous: Reading | None, readings: Sequence[Reading]
) -> tuple[list[tuple[int | str, ...]], bool, int | None]:
    """The register_edges rows a device's new readings make, after its previous meter reading:
    for every quarter hour t they reach, the registers at t (the straight line between the
    last reading at or before t and the first at or after it, rounded down; a reading exactly
    at t gives its own) and whether t falls in a gap longer than GAP_S. Also whether the
    meter's time went back (then no rows: such a device's edges are looked up, never kept),
    and the t of a row stored before that these rows replace (a second reading at that t).
    Ingest writes them; the audit derives them again (docs/energy.md)."""
    rows: dict[int, tuple[int | str, ...]] = {}
    replaced = None
    p = previous  # the last meter reading so far
    for r in readings:
        if r.kind != KIND_METER:
            continue
        ts = r.ts
        if p is not None:
            pts = p.ts
            if ts < pts:
                return [], True, None
            t = pts - pts % EDGE_STEP + EDGE_STEP  # the first quarter hour after p
            if t < ts and (ts - t) // EDGE_STEP < MAX_EDGE_GAP:  # most readings cross none
                gap = int(ts - pts > GAP_S)
                pv, rv = p.values, r.values
                bi, be, ai, ae = pv["import_wh"], pv["export_wh"], rv["import_wh"], rv["export_wh"]
                while t < ts:
                    rows[t] = (device_id, t, *_at(t, pts, bi, be, ts, ai, ae), gap)
                    t += EDGE_STEP
        if ts % EDGE_STEP == 0:
            if previous is not None and previous.ts == ts and ts not in rows:
                replaced = ts
            rows[ts] = (device_id, ts, r.values["import_wh"], r.values["export_wh"], 0)
        p = r
    return list(rows.values()), False, replaced


EDGE_COLUMNS = ("device_id", "t", "import_wh", "export_wh", "gap")


def _edges(db: Connection, device_id: str, times: range, kept: bool = True) -> list[_Edge]:
    """The edges at the given boundaries: from the register_edges rows ingest keeps (one range
    query), or, where there are none (a device whose time went back, a boundary in a gap
    longer than a year), by two indexed lookups in the readings."""
    stored: dict[int, _Edge] = {}
    first = last = None
    head = db.execute(
        "SELECT c.meter, u.device_id FROM chain_heads c LEFT JOIN edges_unordered u ON u.device_id = c.device_id"
        " WHERE c.device_id = ?",
        (device_id,),
    ).fetchone()
    if head is not None and head[0] is None:  # packets, but never a meter reading (a charger, say)
        return [_Edge(None, False, None, None)] * len(times)
    if kept and head is not None and head[1] is None and times:
        last = point(decode_reading(bytes(head[0])))
        found = _first_meter(db, device_id)
        assert found is not None  # the chain head holds a meter reading
        first = point(found)
        new = tuple.__new__  # _Edge(...) without its keyword handling: a year by hour is 8,761 of them
        stored = {
            t: new(_Edge, ((i, e), gap, None, None))  # the readings surround t: their points are not needed
            for t, i, e, gap in db.execute(
                "SELECT t, import_wh, export_wh, gap FROM register_edges WHERE device_id = ? AND t >= ? AND t <= ?"
                " AND t % ? = 0",
                (device_id, times[0], times[-1], times.step),
            )
        }

    def one(find: Any, t: int) -> Point | None:
        found = find(db, device_id, t)
        return None if found is None else point(found)

    edges = []
    for t in times:
        edge = stored.get(t)
        if edge is None and last is not None and first is not None:
            if t > last.ts:
                edge = _Edge(None, False, last, None)
            elif t < first.ts:
                edge = _Edge(None, False, None, first)
        if edge is None:
            before = one(meter_at_or_before, t)
            after = before if before is not None and before.ts == t else one(meter_at_or_after, t)
            edge = _edge(t, before, after)
        edges.append(edge)
    return edges


def generation_register(attributes: dict[str, Any]) -> str | None:
    """The register a producer's generation is counted on (its enrollment says; export_wh
    when it does not); None for a device that is not a producer."""
    if attributes.get("role") != "producer":
        return None
    return str(attributes.get("generation_register", "export_wh"))


class Interval(NamedTuple):
    start: int
    end: int
    import_wh: int | None  # None: missing
    export_wh: int | None
    quality: str
    covered_from: int
    covered_to: int


def intervals(
    db: Connection, device_id: str, start: int, end: int, step: int, kept_edges: bool = True
) -> list[Interval]:
    """Energy per interval of step seconds (a multiple of EDGE_STEP) from start (rounded down
    to a step) to end: energy()'s arithmetic without a bound on the count or its formatting,
    for the verifier's own work (certificates, matching, communities)."""
    start -= start % step
    disputed = sorted(
        _ts_of(db, device_id, int(number))
        for (number,) in db.execute("SELECT DISTINCT number FROM anomalies WHERE device_id = ?", (device_id,))
    )
    times = range(start, end, step)
    if not times:
        return []
    edges = _edges(db, device_id, range(start, times[-1] + 2 * step, step), kept_edges)
    out: list[Interval] = []
    new = tuple.__new__  # Interval(...) without its keyword handling: a year by hour is 8,760 of them
    for i, t in enumerate(times):
        lo, hi = edges[i], edges[i + 1]
        u = t + step
        opening, closing = lo[0], hi[0]
        if opening is not None and closing is not None and not disputed:  # the usual case, the same result
            quality = "interpolated" if lo[1] or hi[1] else "measured"
            out.append(new(Interval, (t, u, closing[0] - opening[0], closing[1] - opening[1], quality, t, u)))
            continue
        covered_from, covered_to = t, u
        after, before = lo[3], hi[2]
        if opening is None and after is not None and after.ts < u:  # the readings begin inside
            opening, covered_from = after.registers, after.ts
        if closing is None and before is not None and before.ts > t:  # the readings end inside
            closing, covered_to = before.registers, before.ts
        if opening is None or closing is None or covered_to < covered_from:
            out.append(Interval(t, u, None, None, "missing", t, u))
            continue
        first = bisect.bisect_left(disputed, t - GAP_S) if disputed else 0
        if disputed and first < len(disputed) and disputed[first] <= u + GAP_S:
            quality = "disputed"
        elif covered_from > t or covered_to < u:
            quality = "partial"
        elif lo[1] or hi[1]:
            quality = "interpolated"
        else:
            quality = "measured"
        out.append(Interval(t, u, closing[0] - opening[0], closing[1] - opening[1], quality, covered_from, covered_to))
    return out


def data_span(db: Connection, device_id: str | None = None) -> tuple[int, int] | None:
    """(first, last) reading times of a device's packets, or of every device's; None without any."""
    where, args = ("WHERE device_id = ?", (device_id,)) if device_id is not None else ("", ())
    row = db.execute(f"SELECT MIN(first_ts), MAX(last_ts) FROM packets {where}", args).fetchone()
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))


def widened(start: int, end: int, step: int) -> dict[str, Any]:
    """What an answer says of its period when it is widened to whole intervals of step: the
    period asked, the period answered, and whether they differ."""
    first, last = start - start % step, end + (-end) % step
    return {"from": first, "to": last, "from_time": iso(first), "to_time": iso(last), "asked_from": start,
            "asked_to": end, "widened": (first, last) != (start, end)}  # fmt: skip


def energy(
    db: Connection,
    device_id: str,
    start: int,
    end: int,
    interval: str,
    generation: str | None = None,
    kept_edges: bool = True,
) -> list[dict[str, Any]]:
    """Energy per interval in whole Wh, from the cumulative registers (docs/energy.md).

    The registers at each boundary come from the readings on either side of it (the straight
    line between them, rounded down: the same value closes one interval and opens the next),
    so the intervals of any span add up exactly to the registers' delta over that span, and
    over a span that starts and ends at readings to the difference of those readings. An
    interval where the readings begin or end is "partial": its energy is that of the part the
    readings cover (covered_from .. covered_to). Qualities: "measured" (both boundaries
    between readings at most GAP_S apart), "interpolated" (a boundary falls in a longer gap:
    the energy of the gap is split by time), "partial", "disputed" (a reading in or next to
    it was recorded as an anomaly at ingest) and "missing" (no readings cover any of it:
    energy null). With generation (a producer's generation register), generation_wh too.

    Cost: one range query over the register edges ingest keeps (kept_edges=False: two
    indexed lookups per boundary instead, the same answer) and one pass over the device's
    anomalies; at most MAX_INTERVALS intervals per request.
    """
    step = INTERVALS[interval]
    start -= start % step
    if -(-(end - start) // step) > MAX_INTERVALS:
        raise TooMuchWork(f"at most {MAX_INTERVALS} intervals of {interval} per request: ask for a shorter span")
    out: list[dict[str, Any]] = []
    stamps: dict[int, str] = {}  # each boundary's ISO 8601 once (it ends one interval and starts the next)
    for iv in intervals(db, device_id, start, end, step, kept_edges):
        opened = stamps.pop(iv.start, None) or iso(iv.start)
        stamps[iv.end] = closed = iso(iv.end)
        row: dict[str, Any] = {
            "start": iv.start,
            "end": iv.end,
            "start_time": opened,
            "end_time": closed,
            "import_wh": iv.import_wh,
            "export_wh": iv.export_wh,
            "quality": iv.quality,
        }
        if iv.quality != "missing" and (iv.covered_from > iv.start or iv.covered_to < iv.end):
            row.update(
                covered_from=iv.covered_from,
                covered_to=iv.covered_to,
                covered_from_time=iso(iv.covered_from),
                covered_to_time=iso(iv.covered_to),
            )
        if generation is not None:
            row["generation_wh"] = row[generation]
        out.append(row)
    return out


def anomalies(db: Connection, device_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest readings ingest recorded as anomalies (newest packet entry first): which
    device, which reading, when, which check and what it found."""
    where, params = ("WHERE device_id = ?", (device_id,)) if device_id else ("", ())
    rows = db.execute(
        f"SELECT device_id, number, check_type, detail, ledger_idx FROM anomalies {where}"
        " ORDER BY ledger_idx DESC, number DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [
        {"device_id": str(r[0]), "number": int(r[1]), "ts": _ts_of(db, str(r[0]), int(r[1])), "check": str(r[2]),
         "detail": str(r[3]), "ledger_index": int(r[4])}
        for r in rows
    ]  # fmt: skip


def _ts_of(db: Connection, device_id: str, number: int) -> int:
    found = reading(db, device_id, number)
    assert found is not None, (device_id, number)  # an anomaly names a reading its packet holds
    return found.ts


def first_meter_reading(db: Connection) -> tuple[str, int] | None:
    """(device, reading number) of the first meter reading of the first device (by id) that has one."""
    row = db.execute("SELECT MIN(device_id) FROM chain_heads WHERE meter IS NOT NULL").fetchone()
    if row is None or row[0] is None:
        return None
    found = _first_meter(db, str(row[0]))
    return None if found is None else (str(row[0]), found.number)


def all_readings(db: Connection, device_id: str) -> list[Reading]:
    """Every reading of a device, decoded, in number order."""
    return [decode_reading(raw) for _, blob, *_ in _by_number(db, device_id, -1) for raw in unpack(blob)]


def stored(db: Connection) -> dict[str, int]:
    """How many readings and register edges the database holds (benchmarks and operators)."""
    readings = int(db.execute("SELECT COALESCE(SUM(reading_count), 0) FROM packets").fetchone()[0])
    return {
        "readings": readings,
        "register_edges": int(db.execute("SELECT COUNT(*) FROM register_edges").fetchone()[0]),
    }


def packet_of_reading(db: Connection, device_id: str, number: int) -> int:
    """The seq of the packet that carried a reading; LookupError if there is no such reading."""
    row = db.execute(
        "SELECT seq, first_number, reading_count FROM packets WHERE device_id = ? AND first_number <= ?"
        " ORDER BY first_number DESC LIMIT 1",
        (device_id, number),
    ).fetchone()
    if row is None or number < 0 or number >= int(row[1]) + int(row[2]):
        raise LookupError(f"no reading {number} of {device_id}")
    return int(row[0])


def packet_readings(db: Connection, device_id: str, seq: int) -> list[tuple[int, bytes]]:
    """(number, the exact bytes the board hashed) of every reading a packet carried, in order."""
    row = db.execute(
        "SELECT first_number, readings FROM packets WHERE device_id = ? AND seq = ?", (device_id, seq)
    ).fetchone()
    if row is None:
        return []
    return [(int(row[0]) + i, raw) for i, raw in enumerate(unpack(row[1]))]


def meter_readings_around(db: Connection, device_id: str, t: int) -> tuple[int, int] | None:
    """The numbers of the last meter reading at or before t and the first at or after it, or
    None when t is not surrounded by readings."""
    before = meter_at_or_before(db, device_id, t)
    after = meter_at_or_after(db, device_id, t)
    return None if before is None or after is None else (before.number, after.number)


def producers_last_meter(db: Connection) -> list[tuple[str, dict[str, Any], bytes]]:
    """(device, attributes, its last meter reading's bytes) of every active producer that has
    sent a meter reading, by id: what issuance starts from."""
    rows = db.execute(
        "SELECT d.device_id, d.attributes, c.meter FROM devices d JOIN chain_heads c ON c.device_id = d.device_id"
        " WHERE d.role = 'producer' AND d.status = 'active' AND c.meter IS NOT NULL ORDER BY d.device_id"
    ).fetchall()
    return [(str(r[0]), json.loads(r[1]), bytes(r[2])) for r in rows]


def first_meter_time(db: Connection, device_id: str) -> int | None:
    """The time of a device's first meter reading, or None before any."""
    found = _first_meter(db, device_id)
    return None if found is None else found.ts


def readings_after(db: Connection, device_id: str, after: int, kinds: Sequence[int]) -> list[tuple[int, bytes]]:
    """(number, bytes) of a device's readings of these kinds numbered above after, in order."""
    out = []
    for first, blob, *_ in _by_number(db, device_id, after):
        for i, raw in enumerate(unpack(blob)):
            if first + i > after and kind_of(raw) in kinds:
                out.append((first + i, raw))
    return out
