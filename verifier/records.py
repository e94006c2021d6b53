"""Records for utilities: readings by time with cursors, and energy per interval."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from typing import Any

from verifier.packet import DEVICE_EVENTS, KIND_METER, SESSION_EVENTS, Reading, decode_reading
from verifier.storage import Connection

KINDS = {1: "meter", 2: "session", 3: "device"}
QUALITIES = {0: "unknown", 1: "informative", 2: "synchronised"}
INTERVALS = {"15m": 900, "1h": 3600, "1d": 86400}
GAP_S = 300  # a boundary between readings further apart than this is "interpolated"
MAX_INTERVALS = 2000


class TooMuchWork(ValueError):
    """A request asks for more than one answer may cost; the message says the bound."""


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    """Readings with start <= ts < end in number order, after the cursor; and the next cursor."""
    rows = db.execute(
        "SELECT raw FROM readings WHERE device_id = ? AND ts >= ? AND ts < ? AND number > ? ORDER BY number LIMIT ?",
        (device_id, start, end, -1 if cursor is None else cursor, limit + 1),
    ).fetchall()
    out = [reading_json(decode_reading(bytes(r[0]))) for r in rows[:limit]]
    return out, (out[-1]["number"] if len(rows) > limit else None)


REGISTERS = ("import_wh", "export_wh")


class _Edge:
    """The meter readings on either side of a boundary time t (at or before it, at or after it),
    fetched by the (device, ts) index: two indexed lookups per boundary, whatever the number
    of readings in between."""

    __slots__ = ("t", "before", "after")

    def __init__(self, t: int, before: Reading | None, after: Reading | None) -> None:
        self.t, self.before, self.after = t, before, after

    @property
    def inside(self) -> bool:
        """Whether the readings surround t: the registers at t are known (interpolated)."""
        return self.before is not None and self.after is not None

    @property
    def gap(self) -> bool:
        """Whether t falls in a gap longer than GAP_S: the split at t is interpolated."""
        return self.inside and self.after.ts - self.before.ts > GAP_S  # type: ignore[union-attr]

    def registers(self) -> tuple[int, ...]:
        """The registers at t in whole Wh: the straight line between the readings around t,
        rounded down. Every interval that ends at t and every one that starts there use this
        same value, so the intervals of any span add up to the registers' delta over it."""
        b, a = self.before, self.after
        assert b is not None and a is not None
        if a.ts <= b.ts:
            return tuple(b.values[k] for k in REGISTERS)
        dt, num = a.ts - b.ts, self.t - b.ts
        return tuple(b.values[k] + (a.values[k] - b.values[k]) * num // dt for k in REGISTERS)


def _edges(db: Connection, device_id: str, times: range) -> list[_Edge]:
    before_sql = (
        "SELECT raw FROM readings WHERE device_id = ? AND kind = ? AND ts <= ? ORDER BY ts DESC, number DESC LIMIT 1"
    )
    after_sql = "SELECT raw FROM readings WHERE device_id = ? AND kind = ? AND ts >= ? ORDER BY ts, number LIMIT 1"

    def one(sql: str, t: int) -> Reading | None:
        row = db.execute(sql, (device_id, KIND_METER, t)).fetchone()
        return None if row is None else decode_reading(bytes(row[0]))

    edges = []
    for t in times:
        before = one(before_sql, t)
        after = before if before is not None and before.ts == t else one(after_sql, t)
        edges.append(_Edge(t, before, after))
    return edges


def generation_register(attributes: dict[str, Any]) -> str | None:
    """The register a producer's generation is counted on (its enrollment says; export_wh
    when it does not); None for a device that is not a producer."""
    if attributes.get("role") != "producer":
        return None
    return str(attributes.get("generation_register", "export_wh"))


def energy(
    db: Connection, device_id: str, start: int, end: int, interval: str, generation: str | None = None
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

    Cost: two indexed lookups per boundary and one pass over the device's anomalies; at
    most MAX_INTERVALS intervals per request.
    """
    step = INTERVALS[interval]
    start -= start % step
    if -(-(end - start) // step) > MAX_INTERVALS:
        raise TooMuchWork(f"at most {MAX_INTERVALS} intervals of {interval} per request: ask for a shorter span")
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
    edges = _edges(db, device_id, range(start, times[-1] + 2 * step, step))
    out: list[dict[str, Any]] = []
    for i, t in enumerate(times):
        lo, hi = edges[i], edges[i + 1]
        u = t + step
        span: dict[str, Any] = {"start": t, "end": u, "start_time": iso(t), "end_time": iso(u)}
        opening: tuple[int, ...] | None = None
        closing: tuple[int, ...] | None = None
        covered_from, covered_to = t, u
        if lo.inside:
            opening = lo.registers()
        elif lo.after is not None and lo.after.ts < u:  # the readings begin inside
            opening, covered_from = tuple(lo.after.values[k] for k in REGISTERS), lo.after.ts
        if hi.inside:
            closing = hi.registers()
        elif hi.before is not None and hi.before.ts > t:  # the readings end inside
            closing, covered_to = tuple(hi.before.values[k] for k in REGISTERS), hi.before.ts
        if opening is None or closing is None or covered_to < covered_from:
            row = {**span, "import_wh": None, "export_wh": None, "quality": "missing"}
            if generation is not None:
                row["generation_wh"] = None
            out.append(row)
            continue
        first = bisect.bisect_left(disputed, t - GAP_S)
        if first < len(disputed) and disputed[first] <= u + GAP_S:
            quality = "disputed"
        elif covered_from > t or covered_to < u:
            quality = "partial"
        elif lo.gap or hi.gap:
            quality = "interpolated"
        else:
            quality = "measured"
        row = {
            **span,
            "import_wh": closing[0] - opening[0],
            "export_wh": closing[1] - opening[1],
            "quality": quality,
        }
        if covered_from > t or covered_to < u:
            row.update(
                covered_from=covered_from,
                covered_to=covered_to,
                covered_from_time=iso(covered_from),
                covered_to_time=iso(covered_to),
            )
        if generation is not None:
            row["generation_wh"] = row[generation]
        out.append(row)
    return out
