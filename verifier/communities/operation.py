"""Energy communities (collective self-consumption): local production shared among the
members behind one grid area, step by step, and settled at cost. docs/communities.md.

A community has members (producer and consumer devices, each from a time and maybe until
one) and settings that change over time: the measurement step (France: 30 minutes until the
end of 2024, 15 minutes since 2025-01-01), the allocation key and the price per kWh. Keys:

- ``dynamic``, the default key of the French Code de l'énergie (article D315-6): at each step
  the production P is shared in proportion to consumption, capped at each member's
  consumption: alloc_i = C_i x min(1, P / sum C).
- ``static``: fixed coefficients k_i (sum at most 1): alloc_i = min(C_i, k_i x P).
- ``per-step``: coefficients for each step, uploaded by the operator as CSV
  (``Horodate;<member>;...``), used as the static key at their step (a step without
  coefficients falls back to the dynamic key).

Energy is integer Wh. Each member's exact share is rounded down and the Wh left over go, one
each, to the largest remainders (ties: member order), so that at every step sum alloc <=
min(P, sum C), alloc_i <= C_i, and surplus = P - sum alloc, exactly. The allocated energy is
supplied by the producers in proportion to their production (the same rounding). Every
setting is a ledger entry; the audit rebuilds the tables from them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from verifier.devices import lifecycle, records
from verifier.log import ledger
from verifier.storage import Connection
from verifier.wire import times
from verifier.wire.problems import Problem

KEYS = ("dynamic", "static", "per-step")
STEPS = (900, 1800)
FRANCE_15_MIN_FROM = 1_735_689_600  # 2025-01-01T00:00:00Z (the French step went from 30 to 15 minutes)
COEFFICIENT_DIGITS = 6  # coefficients are decimals with at most 6 digits after the point
SCALE = 10**COEFFICIENT_DIGITS
COMMUNITY_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_STEPS = 3000  # steps per allocation request (a month of quarter hours is 2,976)
ENTRY_KINDS = ("community", "community-member", "community-member-end", "community-settings", "community-coefficients")


def default_step(at: int) -> int:
    """The French measurement step at a time: 30 minutes before 2025, 15 minutes since."""
    return 900 if at >= FRANCE_15_MIN_FROM else 1800


def coefficient(text: Any, where: str) -> int:
    """A coefficient as an integer of millionths; a Problem when it is not a decimal 0..1."""
    try:
        value = Decimal(str(text).strip().replace(",", "."))
    except InvalidOperation:
        raise Problem("bad-request", where, f"{text!r} is not a decimal number") from None
    scaled = value * SCALE
    if not value.is_finite() or scaled != scaled.to_integral_value() or not 0 <= value <= 1:
        raise Problem("bad-request", where, f"{text!r}: a decimal from 0 to 1, at most {COEFFICIENT_DIGITS} decimals")
    return int(scaled)


# --- allocation arithmetic (pure) -----------------------------------------------------------


def largest_remainder(shares: Sequence[tuple[int, int]], denominator: int) -> list[int]:
    """Integers for exact shares floor_i + rem_i / denominator: each rounded down, then the
    units left to reach floor(sum of the shares) given one each to the largest remainders
    (ties: the earlier share). Each result is its share's floor or ceiling."""
    out = [f for f, _ in shares]
    left = sum(r for _, r in shares) // denominator if denominator else 0
    for i in sorted(range(len(shares)), key=lambda i: (-shares[i][1], i))[:left]:
        out[i] += 1
    return out


def allocate(production: int, consumption: Sequence[int], scaled: Sequence[int] | None = None) -> list[int]:
    """Each consumer's allocated local energy in Wh for one step: the dynamic key without
    coefficients, else the static key with coefficients in millionths (sum <= SCALE)."""
    if scaled is None:
        total = sum(consumption)
        if production >= total:
            return list(consumption)
        return largest_remainder([divmod(c * production, total) for c in consumption], total)
    shares = []
    for c, k in zip(consumption, scaled, strict=True):
        shares.append((c, 0) if k * production >= c * SCALE else divmod(k * production, SCALE))
    return largest_remainder(shares, SCALE)


def supply(allocated: int, production: Sequence[int]) -> list[int]:
    """Each producer's part of the allocated energy, in proportion to its production."""
    total = sum(production)
    if not total:
        return [0 for _ in production]
    return largest_remainder([divmod(allocated * p, total) for p in production], total)


# --- configuration: ledger entries and their tables ------------------------------------------


def _require(db: Connection, community_id: str) -> None:
    if db.execute("SELECT 1 FROM communities WHERE community_id = ?", (community_id,)).fetchone() is None:
        raise Problem("not-found", "community_id", f"no community {community_id}")


def _settings_fields(
    community_id: str, valid_from: int, step_s: int | None, key: str, coefficients: dict[str, Any] | None,
    price_per_kwh: str,
) -> dict[str, Any]:  # fmt: skip
    step = default_step(valid_from) if step_s is None else step_s
    if step not in STEPS:
        raise Problem("bad-request", "step_s", "the step is 900 or 1800 seconds")
    if valid_from % step:
        raise Problem("unprocessable", "from", f"settings start on a step boundary ({step} s)")
    if key not in KEYS:
        raise Problem("bad-request", "key", f"expected one of {', '.join(KEYS)}")
    try:
        price = Decimal(str(price_per_kwh))
    except InvalidOperation:
        raise Problem("bad-request", "price_per_kwh", "expected a decimal price") from None
    if not price.is_finite() or price < 0 or price.as_tuple().exponent < -6:  # type: ignore[operator]
        raise Problem("bad-request", "price_per_kwh", "a price of 0 or more, at most 6 decimals")
    fields: dict[str, Any] = {
        "community_id": community_id,
        "from": valid_from,
        "step_s": step,
        "key": key,
        "price_per_kwh": str(price),
    }
    if key == "static":
        if not coefficients:
            raise Problem("unprocessable", "coefficients", "the static key needs a coefficient per consumer")
        scaled = {str(d): coefficient(v, f"coefficients.{d}") for d, v in coefficients.items()}
        if sum(scaled.values()) > SCALE:
            raise Problem("unprocessable", "coefficients", "the coefficients add up to more than 1")
        fields["coefficients"] = {d: str(Decimal(v) / SCALE) for d, v in sorted(scaled.items())}
    elif coefficients:
        raise Problem("bad-request", "coefficients", "only the static key takes coefficients here")
    return fields


def create(
    db: Connection, community_id: str, name: str, grid_area: str, currency: str, valid_from: int,
    price_per_kwh: str = "0", step_s: int | None = None, key: str = "dynamic",
    coefficients: dict[str, Any] | None = None, now: int | None = None,
) -> int:  # fmt: skip
    """Inside a write transaction: a community and its first settings, as ledger entries."""
    if not COMMUNITY_ID.fullmatch(community_id):
        raise Problem("bad-request", "community_id", "expected [a-z0-9][a-z0-9._-]{0,63}")
    if not name or len(name) > 200:
        raise Problem("bad-request", "name", "1 to 200 characters")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise Problem("bad-request", "currency", "an ISO 4217 code such as EUR")
    if db.execute("SELECT 1 FROM communities WHERE community_id = ?", (community_id,)).fetchone() is not None:
        raise Problem("already-exists", "community_id", f"community {community_id} exists already")
    settings = _settings_fields(community_id, valid_from, step_s, key, coefficients, price_per_kwh)
    at = int(time.time()) if now is None else now
    fields = {"community_id": community_id, "name": name, "grid_area": grid_area, "currency": currency, "time": at}
    index = ledger.append(db, "community", None, fields)
    apply_entry(db, "community", fields, index)
    settings_index = ledger.append(db, "community-settings", None, settings)
    apply_entry(db, "community-settings", settings, settings_index)
    return index


def change_settings(
    db: Connection, community_id: str, valid_from: int, price_per_kwh: str, step_s: int | None = None,
    key: str = "dynamic", coefficients: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """Inside a write transaction: settings from valid_from on (a ledger entry)."""
    _require(db, community_id)
    fields = _settings_fields(community_id, valid_from, step_s, key, coefficients, price_per_kwh)
    index = ledger.append(db, "community-settings", None, fields)
    apply_entry(db, "community-settings", fields, index)
    return index


def member_role(device_role: str) -> str:
    """A member produces or consumes: a charger's load is consumption."""
    return "producer" if device_role == "producer" else "consumer"


def overlap(a: tuple[int, int | None], b: tuple[int, int | None]) -> tuple[int, int | None] | None:
    """The time two memberships [from, until) share (until None: open), or None."""
    start = max(a[0], b[0])
    ends = [e for e in (a[1], b[1]) if e is not None]
    end = min(ends) if ends else None
    return (start, end) if end is None or end > start else None


def _span_text(span: tuple[int, int | None]) -> str:
    return f"{records.iso(span[0])} to {'open end' if span[1] is None else records.iso(span[1])}"


def check_one_community(
    memberships: Iterable[tuple[str, int, int | None]], community_id: str, device_id: str, span: tuple[int, int | None]
) -> None:
    """A delivery point belongs to one collective self-consumption operation at a time: the
    membership span of device_id in community_id may share no time with any of its other
    memberships (community, from, until). Raises Problem: already-exists in the same
    community, community-overlap naming the other community and the time they share."""
    for other, start, end in memberships:
        shared = overlap(span, (start, end))
        if shared is None:
            continue
        if other == community_id:
            raise Problem("already-exists", "device_id", f"{device_id} is a member for part of that time already")
        raise Problem(
            "community-overlap",
            "device_id",
            f"{device_id} is a member of community {other} from {_span_text(shared)}: a delivery point belongs to"
            f" one collective self-consumption operation at a time (end that membership first: POST"
            f" /v1/communities/{other}/members/{device_id}/end)",
        )


def memberships_of(db: Connection, device_id: str) -> list[tuple[str, int, int | None]]:
    """Every membership of a device: (community, from, until)."""
    rows = db.execute(
        "SELECT community_id, valid_from, valid_until FROM community_members WHERE device_id = ?", (device_id,)
    ).fetchall()
    return [(str(r[0]), int(r[1]), None if r[2] is None else int(r[2])) for r in rows]


def add_member(db: Connection, community_id: str, device_id: str, valid_from: int, until: int | None = None) -> int:
    """Inside a write transaction: a producer or consumer device joins (from, maybe until), in
    no other community over the same time."""
    _require(db, community_id)
    row = lifecycle.role_and_status(db, device_id)
    if row is None:
        raise Problem("not-found", "device_id", f"no device {device_id}")
    if row[0] not in ("producer", "consumer", "charger"):
        raise Problem("unprocessable", "device_id", f"{device_id} is a {row[0]}: members produce or consume")
    if until is not None and until <= valid_from:
        raise Problem("unprocessable", "until", "a membership ends after it begins")
    check_one_community(memberships_of(db, device_id), community_id, device_id, (valid_from, until))
    fields: dict[str, Any] = {
        "community_id": community_id, "device_id": device_id, "from": valid_from, "role": member_role(str(row[0])),
    }  # fmt: skip
    if until is not None:
        fields["until"] = until
    index = ledger.append(db, "community-member", device_id, fields)
    apply_entry(db, "community-member", fields, index)
    return index


def end_member(db: Connection, community_id: str, device_id: str, valid_from: int, until: int) -> int:
    """Inside a write transaction: the membership of device_id in community_id that began at
    valid_from ends at until (exclusive; until = valid_from: it never took effect). Only ever
    shortens a membership; the allocation and settlement of the time after are derived again."""
    _require(db, community_id)
    row = db.execute(
        "SELECT role, valid_until FROM community_members WHERE community_id = ? AND device_id = ? AND valid_from = ?",
        (community_id, device_id, valid_from),
    ).fetchone()
    if row is None:
        raise Problem("not-found", "from", f"{device_id} has no membership of {community_id} beginning at"
                      f" {records.iso(valid_from)}")  # fmt: skip
    check_end(valid_from, None if row[1] is None else int(row[1]), until)
    fields = {"community_id": community_id, "device_id": device_id, "from": valid_from, "until": until,
              "role": str(row[0])}  # fmt: skip
    index = ledger.append(db, "community-member-end", device_id, fields)
    apply_entry(db, "community-member-end", fields, index)
    return index


def check_end(valid_from: int, current_until: int | None, until: int) -> None:
    """An end only shortens a membership, to no earlier than its beginning."""
    if until < valid_from:
        raise Problem("unprocessable", "until", "a membership ends at or after it begins")
    if current_until is not None and until >= current_until:
        raise Problem("unprocessable", "until", f"the membership ends at {records.iso(current_until)} already")


def overlaps(members: Iterable[tuple[str, str, int, int | None]]) -> list[tuple[str, str, str, tuple[int, int | None]]]:
    """Every pair of one device's memberships in two communities that share time:
    (device, community, other community, shared span). members: (community, device, from, until)."""
    by_device: dict[str, list[tuple[str, int, int | None]]] = {}
    for c, d, start, end in members:
        by_device.setdefault(d, []).append((c, start, end))
    found = []
    for d, spans in sorted(by_device.items()):
        for i, (c1, s1, e1) in enumerate(sorted(spans)):
            for c2, s2, e2 in sorted(spans)[i + 1 :]:
                shared = overlap((s1, e1), (s2, e2))
                if c1 != c2 and shared is not None:
                    found.append((d, c1, c2, shared))
    return found


def overlap_text(found: tuple[str, str, str, tuple[int, int | None]]) -> str:
    d, c1, c2, shared = found
    return (f"{d} is a member of {c1} and of {c2} from {_span_text(shared)}: one community at a time; end one"
            f" of the memberships (wattproof community end-member)")  # fmt: skip


def parse_coefficients(text: str) -> list[tuple[int, str, int]]:
    """A per-step coefficient CSV (Horodate;<member>;... with ISO 8601 times, ';' or ','):
    (step start, device, millionths) for each cell. A Problem names the first bad cell."""
    sample = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if ";" in sample else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows or not rows[0] or rows[0][0].strip().lower() != "horodate" or len(rows[0]) < 2:
        raise Problem("bad-request", "body", "expected a header Horodate;<member>;<member>...")
    members = [m.strip() for m in rows[0][1:]]
    out: list[tuple[int, str, int]] = []

    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(members) + 1:
            raise Problem("bad-request", f"line {line}", f"expected {len(members) + 1} cells")
        try:
            start = records.parse_time(row[0].strip())
        except ValueError as e:
            raise Problem("bad-request", f"line {line}", str(e)) from None
        scaled = [coefficient(cell, f"line {line} {m}") for m, cell in zip(members, row[1:], strict=True)]
        if sum(scaled) > SCALE:
            raise Problem("unprocessable", f"line {line}", "the coefficients of a step add up to more than 1")
        out.extend((start, m, k) for m, k in zip(members, scaled, strict=True))
    if not out:
        raise Problem("bad-request", "body", "no steps in the file")
    return out


def upload_coefficients(db: Connection, community_id: str, text: str) -> tuple[int, int]:
    """Inside a write transaction: per-step coefficients (replacing those of the same steps);
    the CSV as sent is the ledger entry. Returns (index, steps)."""
    _require(db, community_id)
    fields = {"community_id": community_id, "csv": text}
    rows = entry_rows("community-coefficients", fields, 0)  # parsed before anything is written
    index = ledger.append(db, "community-coefficients", None, fields)
    _write(db, {t: [(*r[:-1], index) for r in rs] for t, rs in rows.items()})
    return index, len({r[1] for r in rows["community_coefficients"]})


def entry_rows(kind: str, fields: dict[str, Any], index: int) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a community entry puts in each table, keys first (a row with a stored row's
    key replaces it; community_coefficients rows replace every row of their step)."""
    c = fields["community_id"]
    if kind == "community":
        created = _bounded(fields["time"])
        return {"communities": [(c, fields["name"], fields["grid_area"], fields["currency"], created, index)]}
    row: tuple[Any, ...]
    if kind == "community-settings":
        row = (c, _bounded(fields["from"]), fields["step_s"], fields["key"], _dumps(fields.get("coefficients", {})),
               fields["price_per_kwh"], index)  # fmt: skip
        return {"community_settings": [row]}
    if kind in ("community-member", "community-member-end"):
        until = fields.get("until")
        until = None if until is None else _bounded(until)
        row = (c, fields["device_id"], _bounded(fields["from"]), fields["role"], until, index)
        return {"community_members": [row]}
    if kind == "community-coefficients":
        return {"community_coefficients": [(c, s, d, k, index) for s, d, k in parse_coefficients(fields["csv"])]}
    raise ValueError(f"not a community entry: {kind}")


def _bounded(ts: int) -> int:
    """A time as the tables keep it: entries written before times were bounded (to the end of
    9999) may hold later ones, which mean "never" all the same (migration times_in_range)."""
    return min(int(ts), times.MAX_TIME)


TABLES = {  # columns, key columns first
    "communities": (("community_id",), ("name", "grid_area", "currency", "created_at", "created_idx")),
    "community_settings": (("community_id", "valid_from"),
                           ("step_s", "allocation_key", "coefficients", "price_per_kwh", "ledger_idx")),
    "community_members": (("community_id", "device_id", "valid_from"), ("role", "valid_until", "ledger_idx")),
    "community_coefficients": (("community_id", "step_start", "device_id"), ("coefficient", "ledger_idx")),
}  # fmt: skip


def apply_entry(db: Connection, kind: str, fields: dict[str, Any], index: int) -> None:
    """Writes a community entry's rows (entry_rows) to its table."""
    _write(db, entry_rows(kind, fields, index))


def _write(db: Connection, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, rows in tables.items():
        keys, values = TABLES[table]
        if table == "community_coefficients":
            db.executemany(
                "DELETE FROM community_coefficients WHERE community_id = ? AND step_start = ?",
                sorted({(r[0], r[1]) for r in rows}),
            )
        else:
            where = " AND ".join(f"{k} = ?" for k in keys)
            db.executemany(f"DELETE FROM {table} WHERE {where}", [r[: len(keys)] for r in rows])
        db.insert_rows(table, (*keys, *values), rows)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- allocation over a period ----------------------------------------------------------------


@dataclass
class Settings:
    valid_from: int
    step_s: int
    key: str
    coefficients: dict[str, int]  # millionths
    price_per_kwh: Decimal


@dataclass
class Step:
    start: int
    step_s: int
    key: str
    production: dict[str, int]  # producer -> Wh generated
    consumption: dict[str, int]  # consumer -> Wh used
    allocated: dict[str, int]  # consumer -> local Wh
    supplied: dict[str, int]  # producer -> local Wh it supplied
    quality: str  # the worst of the members' interval qualities
    price_per_kwh: Decimal = field(default=Decimal(0))

    @property
    def surplus(self) -> dict[str, int]:
        return {p: self.production[p] - self.supplied[p] for p in self.production}


def describe(db: Connection, community_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT community_id, name, grid_area, currency, created_at, created_idx FROM communities"
        " WHERE community_id = ?",
        (community_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no community {community_id}")
    members = [
        {
            "device_id": r[0],
            "role": r[1],
            "from": int(r[2]),
            "until": None if r[3] is None else int(r[3]),
            "from_time": records.iso(int(r[2])),
            "until_time": None if r[3] is None else records.iso(int(r[3])),
        }
        for r in db.execute(
            "SELECT device_id, role, valid_from, valid_until FROM community_members WHERE community_id = ?"
            " ORDER BY device_id, valid_from",
            (community_id,),
        )
    ]
    settings = [
        {"from": s.valid_from, "from_time": records.iso(s.valid_from), "step_s": s.step_s, "key": s.key,
         "coefficients": {d: str(Decimal(k) / SCALE) for d, k in s.coefficients.items()},
         "price_per_kwh": str(s.price_per_kwh)}
        for s in _settings(db, community_id)
    ]  # fmt: skip
    return {
        "community_id": row[0],
        "name": row[1],
        "grid_area": row[2],
        "currency": row[3],
        "created_at": int(row[4]),
        "created_time": records.iso(int(row[4])),
        "ledger_index": int(row[5]),
        "members": members,
        "settings": settings,
    }


def member_devices(db: Connection, community_id: str) -> set[str]:
    """Every device that is or was a member of the community."""
    rows = db.execute("SELECT device_id FROM community_members WHERE community_id = ?", (community_id,)).fetchall()
    return {str(r[0]) for r in rows}


def for_members(doc: dict[str, Any], devices: set[str] | None) -> dict[str, Any]:
    """A community's description or settlement as a member sees it: the community's totals,
    and of the per-member rows (members, consumers, producers, flows) only its own devices'
    (devices None: everything, as the operator sees it)."""
    if devices is None:
        return doc
    out = dict(doc)
    if "members" in out:
        out["members"] = [m for m in doc["members"] if m["device_id"] in devices]
        out["member_count"] = len({m["device_id"] for m in doc["members"]})
    for side in ("consumers", "producers"):
        if side in out:
            out[side] = {d: v for d, v in doc[side].items() if d in devices}
    if "flows" in out:
        out["flows"] = [f for f in doc["flows"] if f["consumer"] in devices or f["producer"] in devices]
        out.pop("total_amount", None)  # the others' money: the flows shown are this member's
    if "settings" in out:  # a static key's coefficients name every member
        out["settings"] = [
            {**s, "coefficients": {d: k for d, k in s["coefficients"].items() if d in devices}} for s in doc["settings"]
        ]
    return out


def step_of_members(s: Step, devices: set[str]) -> Step:
    """A step as a member sees it: the totals of every member stay (step_json adds them up
    from the dicts, so they are kept as one "others" row), the per-member rows are its own."""
    return dataclasses.replace(
        s,
        consumption=_own_and_others(s.consumption, devices),
        allocated=_own_and_others(s.allocated, devices),
        production=_own_and_others(s.production, devices),
        supplied=_own_and_others(s.supplied, devices),
    )


OTHERS = "(others)"  # the other members' rows of a step, added up (no device id has parentheses)


def _own_and_others(values: dict[str, int], devices: set[str]) -> dict[str, int]:
    mine = {d: v for d, v in values.items() if d in devices}
    rest = [v for d, v in values.items() if d not in devices]
    if rest:
        mine[OTHERS] = sum(rest)
    return mine


def list_all(db: Connection) -> list[dict[str, Any]]:
    return [describe(db, str(r[0])) for r in db.execute("SELECT community_id FROM communities ORDER BY community_id")]


def _settings(db: Connection, community_id: str) -> list[Settings]:
    return [
        Settings(int(r[0]), int(r[1]), str(r[2]), {d: coefficient(v, d) for d, v in json.loads(r[3]).items()},
                 Decimal(str(r[4])))
        for r in db.execute(
            "SELECT valid_from, step_s, allocation_key, coefficients, price_per_kwh FROM community_settings"
            " WHERE community_id = ? ORDER BY valid_from",
            (community_id,),
        )
    ]  # fmt: skip


def steps(db: Connection, community_id: str, start: int, end: int) -> list[Step]:
    """The allocation of every step that starts in [start, end): the step and key of the
    settings in force, the members of the step, their energy (records.intervals)."""
    _require(db, community_id)
    versions = _settings(db, community_id)
    members = db.execute(
        "SELECT device_id, role, valid_from, valid_until FROM community_members WHERE community_id = ?",
        (community_id,),
    ).fetchall()
    registers = {}
    for device_id, role, _, _ in members:
        if role == "producer":
            attributes = lifecycle.attributes_of(db, device_id)
            registers[device_id] = records.generation_register({"role": "producer", **attributes})
    # The step boundaries: each settings version's steps within [start, end).
    spans: list[tuple[int, int, Settings]] = []
    for n, v in enumerate(versions):
        until = versions[n + 1].valid_from if n + 1 < len(versions) else end
        lo, hi = max(start, v.valid_from), min(end, until)
        if lo < hi:
            lo -= (lo - v.valid_from) % v.step_s
            spans.append((lo, hi, v))
    if sum(-(-(hi - lo) // v.step_s) for lo, hi, v in spans) > MAX_STEPS:
        raise records.TooMuchWork(f"at most {MAX_STEPS} steps per request: ask for a shorter period")
    out: list[Step] = []
    rank = records.QUALITY_RANK
    changes = sorted({int(m[2]) for m in members} | {int(m[3]) for m in members if m[3] is not None})
    for lo, hi, v in spans:
        step = v.step_s
        energy: dict[str, list[records.Interval]] = {}  # each member's intervals of the span, by step
        for device_id in {m[0] for m in members}:
            energy[device_id] = records.intervals(db, device_id, lo, hi, step)
        coefficients = _step_coefficients(db, community_id, lo, hi) if v.key == "per-step" else {}
        producers: list[str] = []
        consumers: list[str] = []
        next_change = lo - 1  # who is a member is decided again where a membership begins or ends
        for k, t in enumerate(range(lo, hi, step)):
            if t > next_change:
                present = [(d, r) for d, r, f, u in members if int(f) <= t and (u is None or t < int(u))]
                producers = sorted(d for d, r in present if r == "producer")
                consumers = sorted(d for d, r in present if r == "consumer")
                later = [c for c in changes if c > t]
                next_change = later[0] - 1 if later else hi
            worst = 0
            production, consumption = {}, {}
            for d in producers:
                iv = energy[d][k]
                worst = max(worst, rank[iv[4]])
                value = iv[3] if registers[d] == "export_wh" else iv[2]
                production[d] = value or 0
            for d in consumers:
                iv = energy[d][k]
                worst = max(worst, rank[iv[4]])
                consumption[d] = iv[2] or 0
            p = sum(production.values())
            key, scaled = v.key, None
            if v.key == "static":
                scaled = [v.coefficients.get(d, 0) for d in consumers]
            elif v.key == "per-step":
                at = coefficients.get(t)
                if at is None:
                    key = "dynamic"  # no coefficients for this step: the default key
                else:
                    scaled = [at.get(d, 0) for d in consumers]
            shares = allocate(p, list(consumption.values()), scaled)
            allocated = dict(zip(consumers, shares, strict=True))
            supplied = dict(zip(producers, supply(sum(shares), list(production.values())), strict=True))
            out.append(Step(t, step, key, production, consumption, allocated, supplied, records.QUALITY_OF_RANK[worst],
                            v.price_per_kwh))  # fmt: skip
    return out


def _step_coefficients(db: Connection, community_id: str, start: int, end: int) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for t, device_id, k in db.execute(
        "SELECT step_start, device_id, coefficient FROM community_coefficients WHERE community_id = ?"
        " AND step_start >= ? AND step_start < ?",
        (community_id, start, end),
    ):
        out.setdefault(int(t), {})[str(device_id)] = int(k)
    return out


def step_json(s: Step) -> dict[str, Any]:
    return {
        "start": s.start,
        "start_time": records.iso(s.start),
        "step_s": s.step_s,
        "key": s.key,
        "quality": s.quality,
        "production_wh": sum(s.production.values()),
        "consumption_wh": sum(s.consumption.values()),
        "allocated_wh": sum(s.allocated.values()),
        "surplus_wh": sum(s.production.values()) - sum(s.allocated.values()),
        "consumers": {
            d: {"consumption_wh": c, "allocated_wh": s.allocated[d], "grid_wh": c - s.allocated[d]}
            for d, c in s.consumption.items()
        },
        "producers": {
            d: {"production_wh": p, "supplied_wh": s.supplied[d], "surplus_wh": p - s.supplied[d]}
            for d, p in s.production.items()
        },
    }


CSV_QUANTITIES = ("allocated", "consumption", "grid", "production", "supplied", "surplus")


def to_csv(rows: Iterable[Step], quantity: str = "allocated") -> str:
    """The per-step curve distribution operators exchange: Horodate;<member>;... in Wh, one
    line per step, times ISO 8601 (UTC) at the step's start."""
    rows = list(rows)
    producer_side = quantity in ("production", "supplied", "surplus")
    members = sorted({d for s in rows for d in (s.production if producer_side else s.consumption)})
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Horodate", *members])
    for s in rows:
        values = {
            "allocated": s.allocated,
            "consumption": s.consumption,
            "grid": {d: c - s.allocated[d] for d, c in s.consumption.items()},
            "production": s.production,
            "supplied": s.supplied,
            "surplus": s.surplus,
        }[quantity]
        writer.writerow([records.iso(s.start), *("" if d not in values else values[d] for d in members)])
    return out.getvalue()


# --- monthly settlement at cost ------------------------------------------------------------


def month_span(month: str) -> tuple[int, int]:
    """[start, end) of a calendar month YYYY-MM in UTC."""
    m = re.fullmatch(r"(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])", month)
    if m is None:
        raise ValueError(f"{month!r}: expected YYYY-MM, from 1970-01 to 2999-12")
    year, number = int(m[1]), int(m[2])
    first = datetime(year, number, 1, tzinfo=UTC)
    after = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return int(first.timestamp()), int(after.timestamp())


def _round_margins(exact: dict[tuple[str, str], Fraction], rows: dict[str, int], cols: dict[str, int]) -> dict[
        tuple[str, str], int]:  # fmt: skip
    """Integers for exact pair amounts whose row and column totals are the given integers:
    each pair its floor or its ceiling (a flow in the bipartite graph of the pairs with a
    fraction, which always exists when the totals are the exact sums' integers)."""
    out = {pair: int(v) for pair, v in exact.items()}  # floors (all are >= 0)
    need_row = {r: rows[r] - sum(v for (a, _), v in out.items() if a == r) for r in rows}
    need_col = {c: cols[c] - sum(v for (_, b), v in out.items() if b == c) for c in cols}
    up = {pair for pair, v in exact.items() if v.denominator != 1}
    by_row: dict[str, list[str]] = {}
    for a, b in sorted(up, key=lambda p: (-(exact[p] - int(exact[p])), p)):
        by_row.setdefault(a, []).append(b)
    matched: dict[tuple[str, str], bool] = {}

    def augment(row: str, seen: set[str]) -> bool:
        for col in by_row.get(row, []):
            if col in seen or matched.get((row, col)):
                continue
            seen.add(col)
            if need_col[col] > 0:
                need_col[col] -= 1
                matched[(row, col)] = True
                return True
            for other in [a for (a, b), on in matched.items() if on and b == col]:
                if augment(other, seen):
                    matched[(other, col)] = False
                    matched[(row, col)] = True
                    return True
        return False

    for row in sorted(need_row):
        for _ in range(need_row[row]):
            if not augment(row, set()):
                raise ArithmeticError("no rounding keeps the totals")  # cannot happen for exact totals
    for pair, on in matched.items():
        if on:
            out[pair] += 1
    return out


def _money(wh: int, price_per_kwh: Decimal) -> Decimal:
    return (Decimal(wh) * price_per_kwh / 1000).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def settlement(db: Connection, community_id: str, month: str) -> dict[str, Any]:
    """The month's statement: per member its energy (consumption, local, grid; production,
    supplied, surplus), and what each consumer owes each producer for the local energy at the
    community's price, energy and money side by side. The Wh a consumer received from a
    producer are its month's local energy in proportion to what each producer supplied that
    month (per price in force), rounded so that every consumer's and every producer's total
    is exact."""
    start, end = month_span(month)
    _require(db, community_id)
    info = describe(db, community_id)
    rows = steps(db, community_id, start, end)
    consumers: dict[str, dict[str, int]] = {}
    producers: dict[str, dict[str, int]] = {}
    by_price: dict[Decimal, tuple[dict[str, int], dict[str, int]]] = {}  # local Wh per consumer, per producer
    for s in rows:
        taken, given = by_price.setdefault(s.price_per_kwh, ({}, {}))
        for d, c in s.consumption.items():
            m = consumers.setdefault(d, {"consumption_wh": 0, "allocated_wh": 0, "grid_wh": 0})
            m["consumption_wh"] += c
            m["allocated_wh"] += s.allocated[d]
            m["grid_wh"] += c - s.allocated[d]
            if s.allocated[d]:
                taken[d] = taken.get(d, 0) + s.allocated[d]
        for d, g in s.production.items():
            m = producers.setdefault(d, {"production_wh": 0, "supplied_wh": 0, "surplus_wh": 0})
            m["production_wh"] += g
            m["supplied_wh"] += s.supplied[d]
            m["surplus_wh"] += g - s.supplied[d]
            if s.supplied[d]:
                given[d] = given.get(d, 0) + s.supplied[d]
    # Per price in force (settings may change within a month): each consumer's local energy
    # comes from the producers in proportion to what each supplied, pairs rounded to whole Wh
    # with every consumer's and every producer's total exact.
    flows: list[dict[str, Any]] = []
    for price in sorted(by_price):
        taken, given = by_price[price]
        total = sum(given.values())
        pairs = {(a, b): Fraction(x * y, total) for a, x in taken.items() for b, y in given.items()}
        for (a, b), wh in sorted(_round_margins(pairs, taken, given).items()):
            if wh:
                flows.append({"consumer": a, "producer": b, "energy_wh": wh, "price_per_kwh": str(price),
                              "amount": str(_money(wh, price))})  # fmt: skip
    owes: dict[str, Decimal] = {}
    receives: dict[str, Decimal] = {}
    for f in flows:
        owes[f["consumer"]] = owes.get(f["consumer"], Decimal(0)) + Decimal(f["amount"])
        receives[f["producer"]] = receives.get(f["producer"], Decimal(0)) + Decimal(f["amount"])
    for d, m in consumers.items():
        m["owes"] = str(owes.get(d, Decimal("0.00")))  # type: ignore[assignment]
    for d, m in producers.items():
        m["receives"] = str(receives.get(d, Decimal("0.00")))  # type: ignore[assignment]
    return {
        "community_id": community_id,
        "month": month,
        "from": start,
        "to": end,
        "from_time": records.iso(start),
        "to_time": records.iso(end),
        "currency": info["currency"],
        "steps": len(rows),
        "steps_not_measured": sum(1 for s in rows if s.quality != "measured"),
        "production_wh": sum(m["production_wh"] for m in producers.values()),
        "consumption_wh": sum(m["consumption_wh"] for m in consumers.values()),
        "allocated_wh": sum(m["allocated_wh"] for m in consumers.values()),
        "consumers": consumers,
        "producers": producers,
        "flows": flows,
        "total_amount": str(sum((Decimal(f["amount"]) for f in flows), Decimal("0.00"))),
    }


def communities_of(db: Connection, device_id: str, start: int, end: int) -> list[str]:
    """The communities a device is a member of at some time in [start, end)."""
    rows = db.execute(
        "SELECT DISTINCT community_id FROM community_members WHERE device_id = ? AND valid_from < ?"
        " AND (valid_until IS NULL OR valid_until > ?) ORDER BY community_id",
        (device_id, end, start),
    ).fetchall()
    return [str(r[0]) for r in rows]
