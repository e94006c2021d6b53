"""Hourly matching: a consumer's load, hour by hour, against the certificates claimed for it.

For a consumer device (the claims that name it) or an account (its consumer devices' load,
the claims for which it is the beneficiary) and a period of whole hours: per hour the load
L_h (import_wh, records.intervals), the certificates G_h claimed for it that were produced
in that hour, matched = min(L_h, G_h), unmatched = L_h - matched, excess = G_h - matched.
The period's hourly match is sum_h matched / sum_h L_h; beside it the annual-volume match
that most green tariffs still use, min(1, sum_h G_h / sum_h L_h), which counts a sunny
noon's surplus against the night. docs/certificates.md.
"""

from __future__ import annotations

import csv
import io
from typing import Any, NamedTuple

from verifier.certificates import registry
from verifier.devices import lifecycle, records
from verifier.storage import Connection

HOUR = 3600
MAX_HOURS = 8784  # a leap year


class NotAConsumer(LookupError):
    """The device is not an enrolled consumer, or the account has none."""


class Hour(NamedTuple):
    start: int
    load_wh: int
    claimed_wh: int
    quality: str  # of the load: measured, interpolated, partial, disputed, missing (worst of the devices)

    @property
    def matched_wh(self) -> int:
        return min(self.load_wh, self.claimed_wh)


def consumers(db: Connection, account_id: str) -> list[str]:
    """The consumer devices an account owns."""
    roles = lifecycle.roles_of(db, sorted(registry.account_devices(db, account_id)))
    return [d for d, role in sorted(roles.items()) if role in registry.CONSUMING_ROLES]


def hours(
    db: Connection, start: int, end: int, device_id: str | None = None, account_id: str | None = None
) -> list[Hour]:
    """Load and claimed certificates per hour over [start, end) (whole hours), for one
    consumer device or one account. Raises NotAConsumer, records.TooMuchWork."""
    if (device_id is None) == (account_id is None):
        raise ValueError("match a device or an account")
    start -= start % HOUR
    if -(-(end - start) // HOUR) > MAX_HOURS:
        raise records.TooMuchWork(f"at most {MAX_HOURS} hours per request: ask for a shorter period")
    if device_id is not None:
        if lifecycle.role_of(db, device_id) not in registry.CONSUMING_ROLES:
            raise NotAConsumer(f"{device_id} is not an enrolled consumer device")
        devices, column, key = [device_id], "consumer_device", device_id
    else:
        assert account_id is not None
        if not registry.account_exists(db, account_id):
            raise NotAConsumer(f"no account {account_id}")
        devices, column, key = consumers(db, account_id), "beneficiary", account_id
    claimed = {
        int(t): int(wh)
        for t, wh in db.execute(
            "SELECT b.production_start, SUM(b.bundle_id_range_end - b.bundle_id_range_start + 1) FROM claims c"
            f" JOIN bundles b ON b.claim_id = c.claim_id WHERE c.{column} = ? AND b.production_start >= ?"
            " AND b.production_start < ? GROUP BY b.production_start",
            (key, start, end),
        )
    }
    if len(devices) == 1:  # the usual case, without adding devices up
        new, get = tuple.__new__, claimed.get  # Hour(...) without its keyword handling: 8,760 a year
        return [
            new(Hour, (iv[0], iv[2] or 0, get(iv[0], 0), iv[4]))
            for iv in records.intervals(db, devices[0], start, end, HOUR)
        ]
    load: dict[int, int] = {}
    quality: dict[int, int] = {}
    for device in devices:
        for iv in records.intervals(db, device, start, end, HOUR):
            load[iv.start] = load.get(iv.start, 0) + (iv.import_wh or 0)
            quality[iv.start] = max(quality.get(iv.start, 0), records.QUALITY_RANK[iv.quality])
    missing = records.QUALITY_RANK["missing"]
    return [
        Hour(t, load.get(t, 0), claimed.get(t, 0), records.QUALITY_OF_RANK[quality.get(t, missing)])
        for t in range(start, end, HOUR)
    ]


def summary(rows: list[Hour]) -> dict[str, Any]:
    """The period's totals, its hourly match and its annual-volume match (fractions 0..1,
    None without load), and the hours with load that certificates did not cover."""
    load = sum(h.load_wh for h in rows)
    claimed = sum(h.claimed_wh for h in rows)
    matched = sum(h.matched_wh for h in rows)
    return {
        "load_wh": load,
        "claimed_wh": claimed,
        "matched_wh": matched,
        "unmatched_wh": load - matched,
        "excess_wh": claimed - matched,
        "hourly_match": None if not load else round(matched / load, 6),
        "volume_match": None if not load else round(min(1.0, claimed / load), 6),
        "hours": len(rows),
        "hours_with_load": sum(1 for h in rows if h.load_wh),
        "hours_not_covered": [h.start for h in rows if h.load_wh > h.claimed_wh],
        "hours_not_measured": sum(1 for h in rows if h.quality != "measured"),
    }


def hour_json(h: Hour) -> dict[str, Any]:
    return {
        "start": h.start,
        "start_time": records.iso(h.start),
        "load_wh": h.load_wh,
        "claimed_wh": h.claimed_wh,
        "matched_wh": h.matched_wh,
        "unmatched_wh": h.load_wh - h.matched_wh,
        "excess_wh": h.claimed_wh - h.matched_wh,
        "match": None if not h.load_wh else round(h.matched_wh / h.load_wh, 6),
        "load_quality": h.quality,
    }


CSV_COLUMNS = ("start", "start_time", "load_wh", "claimed_wh", "matched_wh", "unmatched_wh", "excess_wh", "match",
               "load_quality")  # fmt: skip


def to_csv(rows: list[Hour]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for h in rows:
        j = hour_json(h)
        writer.writerow(["" if j[c] is None else j[c] for c in CSV_COLUMNS])
    return out.getvalue()


def _summaries_of(target: str, devices: list[str], start: int, end: int) -> list[tuple[str, dict[str, Any]]]:
    from verifier import storage

    db = storage.connect(target, create=False, upgrade=False)
    try:
        out = []
        for device in devices:
            total = summary(hours(db, start, end, device_id=device))
            total["hours_not_covered"] = len(total["hours_not_covered"])  # a count: one line per consumer
            out.append((device, total))
        return out
    finally:
        db.close()


def consumer_devices(db: Connection) -> list[str]:
    return lifecycle.active_of_roles(db, ("consumer", "charger"))


def summaries(target: str, devices: list[str], start: int, end: int, jobs: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """Every consumer's summary over the period, as a utility's report wants them: jobs
    processes, each with its own connection to the database at target, a share of the
    devices each (matching is per device: the work divides)."""
    if jobs <= 1 or len(devices) < 2:
        return _summaries_of(target, devices, start, end)
    import concurrent.futures
    import multiprocessing

    shares = [devices[n::jobs] for n in range(jobs)]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no connection or thread inherited
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        parts = list(pool.map(_summaries_of, [target] * jobs, shares, [start] * jobs, [end] * jobs))
    order = {d: n for n, d in enumerate(devices)}
    return sorted((row for part in parts for row in part), key=lambda row: order[row[0]])
