"""Records for utilities: readings by time with cursors, and energy per interval."""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from verifier.storage import Connection
from verifier.wire import times
from verifier.wire.packet import DEVICE_EVENTS, KIND_METER, SESSION_EVENTS, Reading, decode_reading

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


def readings(
    db: Connection, device_id: str, start: int, end: int, cursor: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Readings with start <= ts < end in number order, after the cursor; and the next cursor.
    Each says which packet holds it (its seq and ledger entry)."""
    rows = db.execute(
        "SELECT r.raw, r.seq, p.ledger_idx FROM readings r JOIN packets p ON p.device_id = r.device_id"
        " AND p.seq = r.seq WHERE r.device_id = ? AND r.ts >= ? AND r.ts < ? AND r.number > ?"
        " ORDER BY r.number LIMIT ?",
        (device_id, start, end, -1 if cursor is None else cursor, limit + 1),
    ).fetchall()
    out = [
        {**reading_json(decode_reading(bytes(r[0]))), "packet": {"seq": int(r[1]), "ledger_index": int(r[2])}}
        for r in rows[:limit]
    ]
    return out, (out[-1]["number"] if len(rows) > limit else None)


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


# A device's last meter reading at or before a time, and its first at or after it.
_AT_OR_BEFORE = (
    "SELECT number, raw FROM readings WHERE device_id = ? AND kind = ? AND ts <= ?"
    " ORDER BY ts DESC, number DESC LIMIT 1"
)
_AT_OR_AFTER = (
    "SELECT number, raw FROM readings WHERE device_id = ? AND kind = ? AND ts >= ? ORDER BY ts, number LIMIT 1"
)


def _meter_reading(db: Connection, sql: str, device_id: str, t: int) -> tuple[int, bytes] | None:
    row = db.execute(sql, (device_id, KIND_METER, t)).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


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
        row = db.execute(
            "SELECT raw FROM readings WHERE device_id = ? AND kind = ? ORDER BY number LIMIT 1", (device_id, KIND_METER)
        ).fetchone()
        first = point(decode_reading(bytes(row[0])))
        new = tuple.__new__  # _Edge(...) without its keyword handling: a year by hour is 8,761 of them
        stored = {
            t: new(_Edge, ((i, e), gap, None, None))  # the readings surround t: their points are not needed
            for t, i, e, gap in db.execute(
                "SELECT t, import_wh, export_wh, gap FROM register_edges WHERE device_id = ? AND t >= ? AND t <= ?"
                " AND t % ? = 0",
                (device_id, times[0], times[-1], times.step),
            )
        }

    def one(sql: str, t: int) -> Point | None:
        found = _meter_reading(db, sql, device_id, t)
        return None if found is None else point(decode_reading(found[1]))

    edges = []
    for t in times:
        edge = stored.get(t)
        if edge is None and last is not None and first is not None:
            if t > last.ts:
                edge = _Edge(None, False, last, None)
            elif t < first.ts:
                edge = _Edge(None, False, None, first)
        if edge is None:
            before = one(_AT_OR_BEFORE, t)
            after = before if before is not None and before.ts == t else one(_AT_OR_AFTER, t)
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
        int(ts)
        for (ts,) in db.execute(
            "SELECT r.ts FROM anomalies a JOIN readings r ON r.device_id = a.device_id AND r.number = a.number"
            " WHERE a.device_id = ?",
            (device_id,),
        )
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
    where, params = ("WHERE a.device_id = ?", (device_id,)) if device_id else ("", ())
    rows = db.execute(
        "SELECT a.device_id, a.number, r.ts, a.check_type, a.detail, a.ledger_idx FROM anomalies a"
        f" JOIN readings r ON r.device_id = a.device_id AND r.number = a.number {where}"
        " ORDER BY a.ledger_idx DESC, a.number DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [
        {"device_id": str(r[0]), "number": int(r[1]), "ts": int(r[2]), "check": str(r[3]), "detail": str(r[4]),
         "ledger_index": int(r[5])}
        for r in rows
    ]  # fmt: skip


def first_meter_reading(db: Connection) -> tuple[str, int] | None:
    """(device, reading number) of the first meter reading of the first device (by id) that has one."""
    row = db.execute(
        "SELECT device_id, MIN(number) FROM readings WHERE kind = ? GROUP BY device_id ORDER BY device_id LIMIT 1",
        (KIND_METER,),
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def all_readings(db: Connection, device_id: str) -> list[Reading]:
    """Every reading of a device, decoded, in number order."""
    rows = db.execute("SELECT raw FROM readings WHERE device_id = ? ORDER BY number", (device_id,)).fetchall()
    return [decode_reading(bytes(r[0])) for r in rows]


def stored(db: Connection) -> dict[str, int]:
    """How many readings and register edges the database holds (benchmarks and operators)."""
    readings = int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    return {
        "readings": readings,
        "register_edges": int(db.execute("SELECT COUNT(*) FROM register_edges").fetchone()[0]),
    }


def packet_of_reading(db: Connection, device_id: str, number: int) -> int:
    """The seq of the packet that carried a reading; LookupError if there is no such reading."""
    row = db.execute("SELECT seq FROM readings WHERE device_id = ? AND number = ?", (device_id, number)).fetchone()
    if row is None:
        raise LookupError(f"no reading {number} of {device_id}")
    return int(row[0])


def packet_readings(db: Connection, device_id: str, seq: int) -> list[tuple[int, bytes]]:
    """(number, the exact bytes the board hashed) of every reading a packet carried, in order."""
    rows = db.execute(
        "SELECT number, raw FROM readings WHERE device_id = ? AND seq = ? ORDER BY number", (device_id, seq)
    ).fetchall()
    return [(int(r[0]), bytes(r[1])) for r in rows]


def meter_readings_around(db: Connection, device_id: str, t: int) -> tuple[int, int] | None:
    """The numbers of the last meter reading at or before t and the first at or after it, or
    None when t is not surrounded by readings."""
    before = _meter_reading(db, _AT_OR_BEFORE, device_id, t)
    after = _meter_reading(db, _AT_OR_AFTER, device_id, t)
    return None if before is None or after is None else (before[0], after[0])


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
    row = db.execute(
        "SELECT raw FROM readings WHERE device_id = ? AND kind = ? ORDER BY number LIMIT 1", (device_id, KIND_METER)
    ).fetchone()
    return None if row is None else decode_reading(bytes(row[0])).ts


def readings_after(db: Connection, device_id: str, after: int, kinds: Sequence[int]) -> list[tuple[int, bytes]]:
    """(number, bytes) of a device's readings of these kinds numbered above after, in order."""
    marks = ", ".join("?" * len(kinds))
    rows = db.execute(
        f"SELECT number, raw FROM readings WHERE device_id = ? AND number > ? AND kind IN ({marks}) ORDER BY number",
        (device_id, after, *kinds),
    ).fetchall()
    return [(int(r[0]), bytes(r[1])) for r in rows]
