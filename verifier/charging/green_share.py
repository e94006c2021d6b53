"""The green share of charging sessions (docs/charging.md): hour by hour, how much of a
session's energy is covered by certificates claimed for the charger or by the local
production its energy community allocated to it.

Each completed session's energy is split into the hours it spans, along straight lines
between its readings (start, samples, stop), rounded down at the hour boundaries so the
hours add up to the session's register delta exactly. For the charger and hour h:

- L_h, the charger's load: its meter's import in h (records.intervals), or the sum of its
  sessions' Wh in h where that is more (a charger that is not ours has no meter readings);
- local_h, the Wh its communities allocated to it in the steps of h (operation.steps);
- certificates claimed in h: those whose claim names the charger as consumer device, and a
  share, in proportion to load, of those claimed for the charger's account without a device
  (GET /v1/matching matches them against the account's whole load). A certificate produced
  by a producer of the charger's community in h may certify the very Wh the community
  allocated: it adds only what exceeds local_h, so no Wh is counted twice;
- G_h = min(L_h, local_h + certificates that add), the charger's green Wh in h.

A session with s_h Wh in h gets floor(s_h * G_h / L_h) of it green, of which
floor(s_h * min(local_h, L_h) / L_h) from the community, the rest from certificates: the
sessions of an hour never get more than G_h together, and no session more than its energy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from verifier.certificates import matching, registry
from verifier.charging.sessions import Session
from verifier.communities import operation
from verifier.devices import lifecycle, records
from verifier.storage import Connection

HOUR = matching.HOUR
DAY = 86400
RUN_DAYS = 28  # a run of days asked at once: 2,688 quarter-hour steps, under operation.MAX_STEPS


def session_hours(s: Session) -> dict[int, int] | None:
    """The session's Wh per hour start, adding up to energy_wh; None while it is open or
    when it is disputed (its energy is not known)."""
    if s.stop is None or s.disputed:
        return None
    points = [(s.start.ts, int(s.start.values["register_wh"]))]
    points += [(x.ts, int(x.values["register_wh"])) for x in s.samples]
    points.append((s.stop.ts, int(s.stop.values["register_wh"])))
    out: dict[int, int] = {}
    hour, last = points[0][0] - points[0][0] % HOUR, points[0][1]
    for (t0, w0), (t1, w1) in zip(points, points[1:], strict=False):
        while hour + HOUR < t1:  # an hour boundary inside (t0, t1): the register there, by the line
            boundary = hour + HOUR
            at = w0 + (w1 - w0) * (boundary - t0) // (t1 - t0) if boundary > t0 else w0
            out[hour] = out.get(hour, 0) + at - last
            hour, last = boundary, at
    out[hour] = out.get(hour, 0) + points[-1][1] - last
    return {h: wh for h, wh in out.items() if wh}


@dataclass
class Hour:
    """The charger's green supply in one hour."""

    load_wh: int = 0  # L_h
    local_wh: int = 0  # community allocation
    certificates_wh: int = 0  # certificates that add to it (after the overlap with local)
    sessions_wh: int = 0

    @property
    def green_wh(self) -> int:
        return min(self.load_wh, self.local_wh + self.certificates_wh)


@dataclass
class Green:
    energy_wh: int
    certificates_wh: int = 0
    community_wh: int = 0
    hours: list[dict[str, Any]] = field(default_factory=list)

    @property
    def green_wh(self) -> int:
        return self.certificates_wh + self.community_wh

    def as_json(self, hours: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "energy_wh": self.energy_wh,
            "green_wh": self.green_wh,
            "certificates_wh": self.certificates_wh,
            "community_wh": self.community_wh,
            "share": None if not self.energy_wh else round(self.green_wh / self.energy_wh, 6),
        }
        if hours:
            out["hours"] = self.hours
        return out


def _runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """[start, end) spans of whole days that hold the hours: consecutive days together, at
    most RUN_DAYS a span."""
    days = sorted({h - h % DAY for h in hours})
    runs: list[tuple[int, int]] = []
    for d in days:
        if runs and runs[-1][1] == d and d - runs[-1][0] < RUN_DAYS * DAY:
            runs[-1] = (runs[-1][0], d + DAY)
        else:
            runs.append((d, d + DAY))
    return runs


def _local(db: Connection, device_id: str, start: int, end: int) -> tuple[dict[int, int], dict[int, set[str]]]:
    """The Wh the charger's communities allocated to it per hour, and their producers then."""
    local: dict[int, int] = {}
    producers: dict[int, set[str]] = {}
    for community_id in operation.communities_of(db, device_id, start, end):
        for step in operation.steps(db, community_id, start, end):
            if device_id not in step.allocated:
                continue
            h = step.start - step.start % HOUR
            local[h] = local.get(h, 0) + step.allocated[device_id]
            producers.setdefault(h, set()).update(step.production)
    return local, producers


def charger_hours(db: Connection, device_id: str, wanted: set[int], every: Sequence[Session]) -> dict[int, Hour]:
    """The charger's green supply in the wanted hours, every: all its sessions (their Wh in
    an hour add up to the charger's load at least)."""
    out = {h: Hour() for h in wanted}
    for s in every:
        for h, wh in (session_hours(s) or {}).items():
            if h in out:
                out[h].sessions_wh += wh
    if not out:
        return out
    consuming = lifecycle.role_of(db, device_id) in registry.CONSUMING_ROLES
    account = registry.device_account(db, device_id)
    for start, end in _runs(out):
        meter = {h.start: h.load_wh for h in matching.hours(db, start, end, device_id=device_id)} if consuming else {}
        named = registry.claimed_per_hour(db, start, end, consumer_device=device_id)
        unnamed = {} if account is None else registry.claimed_per_hour(db, start, end, beneficiary=account)
        account_load: dict[int, int] = {}
        if unnamed:
            account_load = {h.start: h.load_wh for h in matching.hours(db, start, end, account_id=account)}
        local, producers = _local(db, device_id, start, end)
        for h in range(start, end, HOUR):
            hour = out.get(h)
            if hour is None:
                continue
            hour.load_wh = max(meter.get(h, 0), hour.sessions_wh)
            hour.local_wh = min(local.get(h, 0), hour.load_wh)
            certificates = dict(named.get(h, {}))
            # The account's share: its load beside the charger's (which may have no meter).
            others = account_load.get(h, 0) - meter.get(h, 0)
            for producer, wh in unnamed.get(h, {}).items():
                share = wh * hour.load_wh // max(1, hour.load_wh + max(0, others))
                certificates[producer] = certificates.get(producer, 0) + share
            of_local = sum(wh for p, wh in certificates.items() if p in producers.get(h, ()))
            hour.certificates_wh = sum(certificates.values()) - min(of_local, hour.local_wh)
    return out


def of_sessions(db: Connection, device_id: str, found: Sequence[Session], every: Sequence[Session] | None = None,
                hours: bool = False) -> dict[str, Green | None]:  # fmt: skip
    """Each session's green share, by session id (None: open or disputed). every: all the
    charger's sessions, when found is a selection (the others share its hours' load)."""
    splits = {s.session_id: session_hours(s) for s in found}
    wanted = {h for split in splits.values() if split for h in split}
    supply = charger_hours(db, device_id, wanted, found if every is None else every)
    out: dict[str, Green | None] = {}
    for session_id, split in splits.items():
        if split is None:
            out[session_id] = None
            continue
        g = Green(sum(split.values()))
        for h in sorted(split):
            wh, hour = split[h], supply[h]
            green = wh * hour.green_wh // hour.load_wh
            local = wh * hour.local_wh // hour.load_wh
            g.community_wh += local
            g.certificates_wh += green - local
            if hours:
                g.hours.append({"start": h, "start_time": records.iso(h), "energy_wh": wh, "green_wh": green,
                                "certificates_wh": green - local, "community_wh": local,
                                "charger_load_wh": hour.load_wh, "charger_green_wh": hour.green_wh})  # fmt: skip
        out[session_id] = g
    return out
