"""Frozen copies of the rules the migrations run, as they were when each migration was
written: a migration never imports live domain code (which moves on, while a database made
by an old release must upgrade the same way forever). Only the wire formats (verifier.wire),
fixed by the signatures over them, are imported."""

from __future__ import annotations

from collections.abc import Sequence

from verifier.wire.packet import KIND_METER, Reading

# 0007_meters / 0003_meters: the meter_serial of a meter that gives none (devices/identity.py)
UNKNOWN_SERIAL = "unknown"

# 0009_register_edges / 0005_register_edges: devices/records.py's edges, as of that release
EDGE_STEP = 900
GAP_S = 300
MAX_EDGE_GAP = 35_136
EDGE_COLUMNS = ("device_id", "t", "import_wh", "export_wh", "gap")


def _at(t: int, bts: int, bi: int, be: int, ats: int, ai: int, ae: int) -> tuple[int, int]:
    dt = ats - bts
    if dt <= 0:
        return bi, be
    num = t - bts
    return bi + (ai - bi) * num // dt, be + (ae - be) * num // dt


def edge_rows(
    device_id: str, previous: Reading | None, readings: Sequence[Reading]
) -> tuple[list[tuple[int | str, ...]], bool, int | None]:
    """The register_edges rows of a device's readings after its previous meter reading, whether
    its meter's time went back, and the t of an earlier row these replace."""
    rows: dict[int, tuple[int | str, ...]] = {}
    replaced = None
    p = previous
    for r in readings:
        if r.kind != KIND_METER:
            continue
        ts = r.ts
        if p is not None:
            pts = p.ts
            if ts < pts:
                return [], True, None
            t = pts - pts % EDGE_STEP + EDGE_STEP
            if t < ts and (ts - t) // EDGE_STEP < MAX_EDGE_GAP:
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
