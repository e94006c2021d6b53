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
GAP_S = 300  # a boundary between readings further apart than this is uncertain
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


class _Registers:
    """The meter readings next to given times, fetched by the (device, ts) index: two indexed
    lookups per boundary, whatever the number of readings in between."""

    def __init__(self, db: Connection, device_id: str) -> None:
        self.db, self.device_id = db, device_id

    def _one(self, sql: str, t: int) -> Reading | None:
        row = self.db.execute(sql, (self.device_id, KIND_METER, t)).fetchone()
        return None if row is None else decode_reading(bytes(row[0]))

    def at(self, t: int) -> tuple[tuple[float, float] | None, bool]:
        """(import, export) Wh at time t, interpolated; and whether it is certain."""
        before = self._one(
            "SELECT raw FROM readings WHERE device_id = ? AND kind = ? AND ts <= ? ORDER BY ts DESC, number DESC"
            " LIMIT 1",
            t,
        )
        after = self._one(
            "SELECT raw FROM readings WHERE device_id = ? AND kind = ? AND ts >= ? ORDER BY ts, number LIMIT 1", t
        )
        if before is None or after is None:
            return None, False
        if before.ts == after.ts:
            return (before.values["import_wh"], before.values["export_wh"]), True
        f = (t - before.ts) / (after.ts - before.ts)
        value = tuple(before.values[k] + f * (after.values[k] - before.values[k]) for k in ("import_wh", "export_wh"))
        return (value[0], value[1]), after.ts - before.ts <= GAP_S


def energy(db: Connection, device_id: str, start: int, end: int, interval: str) -> list[dict[str, Any]]:
    """Energy per interval from the cumulative registers.

    Each interval is "measured" when readings close to both of its boundaries exist (the
    registers there are interpolated between readings at most GAP_S apart), "uncertain"
    when a boundary falls in a longer gap (the energy is right in total, its split over
    the intervals is interpolated), "disputed" when a reading in or next to it was recorded
    as an anomaly at ingest, and "missing" without readings on both sides.

    Cost: two indexed lookups per boundary and one pass over the device's anomalies; at
    most MAX_INTERVALS intervals per request.
    """
    step = INTERVALS[interval]
    start -= start % step
    if -(-(end - start) // step) > MAX_INTERVALS:
        raise TooMuchWork(f"at most {MAX_INTERVALS} intervals of {interval} per request: ask for a shorter span")
    registers = _Registers(db, device_id)
    disputed = sorted(
        int(ts)
        for (ts,) in db.execute(
            "SELECT r.ts FROM anomalies a JOIN readings r ON r.device_id = a.device_id AND r.number = a.number"
            " WHERE a.device_id = ?",
            (device_id,),
        )
    )
    out: list[dict[str, Any]] = []
    b, certain_b = registers.at(start)
    for t in range(start, end, step):
        a, certain_a = b, certain_b
        b, certain_b = registers.at(t + step)
        span = {"start": t, "end": t + step, "start_time": iso(t), "end_time": iso(t + step)}
        if a is None or b is None:
            out.append({**span, "import_wh": None, "export_wh": None, "quality": "missing"})
            continue
        first = bisect.bisect_left(disputed, t - GAP_S)
        touched = first < len(disputed) and disputed[first] <= t + step + GAP_S
        quality = "measured" if certain_a and certain_b else "uncertain"
        out.append(
            {
                **span,
                "import_wh": round(b[0] - a[0], 3),
                "export_wh": round(b[1] - a[1], 3),
                "quality": "disputed" if touched else quality,
            }
        )
    return out
