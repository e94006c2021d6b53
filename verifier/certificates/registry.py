"""Accounts and the registry's actions on granular certificates: transfer, claim, withdraw.

An account (a producer, a consumer, a community, a supplier) holds certificates; a producer
device assigned to an account has its hours issued to it. A *bundle* is a range of
consecutive certificate ids (1 Wh each) of one issuance with one holder and one status; an
action names id ranges, and a range inside a larger bundle splits it: the part named
changes, the parts before and after keep their holder, status and history.

Statuses (EnergyTag registry): Active (held, may move), Claimed (cancelled for a
beneficiary and a consumption period: it never moves again), Withdrawn (taken back by the
issuing body, for example when readings of the hour were later disputed) and Expired (an
Active bundle past its expiry date: derived from the time, no entry needed).

Every action is a ledger entry. The rules an entry must satisfy are `plan`, a pure
function of the bundles it touches: the live path (`act`, under the database's write lock)
and `wattproof ledger audit` (replaying the entries in memory) both call it, so what the
registry accepted and what the audit accepts are one definition. Under the write lock no
two actions see one bundle's state: of two claims on one bundle exactly one succeeds.
"""

from __future__ import annotations

import bisect
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from verifier.certificates import registry_map
from verifier.devices import lifecycle, records
from verifier.log import ledger
from verifier.storage import Connection
from verifier.wire.problems import Problem

ACTIVE, CLAIMED, WITHDRAWN, EXPIRED = "Active", "Claimed", "Withdrawn", "Expired"
STATUSES = (ACTIVE, CLAIMED, WITHDRAWN, EXPIRED)
ACCOUNT_KINDS = ("producer", "consumer", "community", "supplier")
ACCOUNT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_RANGES = 1000  # id ranges in one action
ACTIONS = ("transfer", "claim", "withdraw")
CONSUMING_ROLES = ("consumer", "charger")  # devices whose load certificates may be claimed for
HOUR = 3600


@dataclass(frozen=True, slots=True)
class Bundle:
    start: int  # bundle_id_range_start
    end: int  # bundle_id_range_end, inclusive
    issuance_id: str
    device_id: str
    production_start: int
    holder: str | None  # the account; None: held by the issuing body (no account yet)
    status: str  # Active, Claimed or Withdrawn as stored; Expired is derived
    expires_at: int
    claim_id: int | None  # the claim entry's ledger index
    ledger_idx: int  # the entry that last changed this range

    @property
    def quantity(self) -> int:
        return self.end - self.start + 1

    def status_at(self, now: int) -> str:
        return EXPIRED if self.status == ACTIVE and self.expires_at <= now else self.status


def refuse(field: str, detail: str) -> Problem:
    return Problem("certificates-unavailable", field, detail)


def _ranges(body: dict[str, Any]) -> list[tuple[int, int]]:
    raw = body.get("ranges")
    if not isinstance(raw, list) or not raw:
        raise Problem("bad-request", "ranges", "name at least one certificate id range [start, end]")
    if len(raw) > MAX_RANGES:
        raise Problem("bad-request", "ranges", f"at most {MAX_RANGES} ranges in one action")
    out = []
    for i, r in enumerate(raw):
        if isinstance(r, (list, tuple)):  # 560.0 is an integer to JSON Schema
            r = [int(v) if type(v) is float and v.is_integer() else v for v in r]
        if (
            not isinstance(r, (list, tuple))
            or len(r) != 2
            or not all(type(v) is int and 1 <= v <= 2**63 - 1 for v in r)
        ):
            raise Problem("bad-request", f"ranges[{i}]", "expected [start, end]: certificate ids from 1")
        if r[0] > r[1]:
            raise Problem("unprocessable", f"ranges[{i}]", "a range starts at or before its end")
        out.append((int(r[0]), int(r[1])))
    return out


def plan(
    containing: Callable[[int], Bundle | None],
    kind: str,
    body: dict[str, Any],
    index: int,
    account_exists: Callable[[str], bool],
    device_role: Callable[[str], str | None],
) -> tuple[list[int], list[Bundle]]:
    """The bundles an action removes (by start) and the bundles it puts in their place, or a
    Problem naming the first rule it breaks. containing(id) is the bundle holding that id now.

    transfer {ranges, to_account, time, from_account?}: every range Active, not expired at
    time, held by from_account (absent: the issuing body), to another existing account.
    claim {ranges, beneficiary, period_start, period_end, time, holder?, consumer_device?}:
    every range Active, unexpired, held by holder, produced within the consumption period
    (its hour inside [period_start, period_end)); the beneficiary an account, the consumer
    device (if named) an enrolled consumer. withdraw {ranges, reason, time}: every range
    Active or expired (a claimed certificate stays claimed)."""
    if kind not in ACTIONS:
        raise ValueError(f"not a registry action: {kind}")
    ranges = _ranges(body)
    at = body["time"]
    if kind == "transfer":
        holder, to = body.get("from_account"), body["to_account"]
        if not account_exists(to):
            raise Problem("unknown-account", "to_account", f"no account {to!r}")
        if to == holder:
            raise Problem("unprocessable", "to_account", "the certificates are held by this account already")
    elif kind == "claim":
        holder = body.get("holder")
        if not account_exists(body["beneficiary"]):
            raise Problem("unknown-account", "beneficiary", f"no account {body['beneficiary']!r}")
        if not body["period_start"] < body["period_end"]:
            raise Problem("unprocessable", "period_start", "the consumption period must start before it ends")
        device = body.get("consumer_device")
        if device is not None and device_role(device) not in CONSUMING_ROLES:
            raise Problem("unprocessable", "consumer_device", f"{device} is not an enrolled consumer device")
    changed: dict[int, Bundle] = {}  # this action's bundles so far, by start
    removed: list[int] = []

    def now_holding(i: int) -> Bundle | None:
        starts = sorted(changed)
        k = bisect.bisect_right(starts, i) - 1
        if k >= 0 and changed[starts[k]].end >= i:
            return changed[starts[k]]
        return containing(i)

    for n, (s, e) in enumerate(ranges):
        where = f"ranges[{n}]"
        b = now_holding(s)
        if b is None or b.end < e:
            raise refuse(where, f"certificates {s}..{e} are not within one bundle")
        status = b.status_at(at)
        if kind == "withdraw":
            if status not in (ACTIVE, EXPIRED):
                raise refuse(where, f"certificates {s}..{e} are {status}: only active or expired ones are withdrawn")
        else:
            if status != ACTIVE:
                raise refuse(where, f"certificates {s}..{e} are {status}")
            if b.holder != holder:
                raise refuse(where, f"certificates {s}..{e} are not held by {holder or 'the issuing body'}")
        if kind == "claim" and not (
            body["period_start"] <= b.production_start and b.production_start + HOUR <= body["period_end"]
        ):
            raise refuse(where, f"certificates {s}..{e} were produced outside the consumption period")
        if b.start in changed:
            del changed[b.start]
        else:
            removed.append(b.start)
        if b.start < s:
            changed[b.start] = replace(b, end=s - 1)
        if e < b.end:
            changed[e + 1] = replace(b, start=e + 1)
        if kind == "transfer":
            changed[s] = replace(b, start=s, end=e, holder=body["to_account"], ledger_idx=index)
        elif kind == "claim":
            changed[s] = replace(b, start=s, end=e, status=CLAIMED, claim_id=index, ledger_idx=index)
        else:
            changed[s] = replace(b, start=s, end=e, status=WITHDRAWN, ledger_idx=index)
    return removed, [changed[k] for k in sorted(changed)]


# --- accounts ---------------------------------------------------------------------------


def create_account(db: Connection, account_id: str, name: str, kind: str, now: int | None = None) -> int:
    """Inside a write transaction: a new account, as a ledger entry; returns its index."""
    if not ACCOUNT_ID.fullmatch(account_id):
        raise Problem("bad-request", "account_id", "expected [a-z0-9][a-z0-9._-]{0,63}")
    if kind not in ACCOUNT_KINDS:
        raise Problem("bad-request", "kind", f"expected one of {', '.join(ACCOUNT_KINDS)}")
    if not name or len(name) > 200:
        raise Problem("bad-request", "name", "name the account's holder (1 to 200 characters)")
    if account_exists(db, account_id):
        raise Problem("already-exists", "account_id", f"account {account_id} exists already")
    at = int(time.time()) if now is None else now
    fields = {"account_id": account_id, "name": name, "account_kind": kind, "time": at}
    index = ledger.append(db, "account", None, fields)
    db.execute(
        "INSERT INTO accounts (account_id, name, kind, created_at, created_idx) VALUES (?, ?, ?, ?, ?)",
        (account_id, name, kind, at, index),
    )
    return index


def assign_device(db: Connection, account_id: str, device_id: str, now: int | None = None) -> int:
    """Inside a write transaction: the account now owns the device (its later hours are issued
    to it; certificates issued before stay where they are). A ledger entry."""
    if not account_exists(db, account_id):
        raise Problem("unknown-account", "account_id", f"no account {account_id!r}")
    if lifecycle.role_and_status(db, device_id) is None:
        raise Problem("not-found", "device_id", f"no device {device_id}")
    current = device_account(db, device_id)
    if current == account_id:
        raise Problem("already-exists", "device_id", f"{device_id} belongs to {account_id} already")
    at = int(time.time()) if now is None else now
    fields = {"account_id": account_id, "device_id": device_id, "time": at}
    index = ledger.append(db, "account-device", device_id, fields)
    db.execute(
        "INSERT INTO device_accounts (device_id, account_id, ledger_idx) VALUES (?, ?, ?) ON CONFLICT (device_id)"
        " DO UPDATE SET account_id = excluded.account_id, ledger_idx = excluded.ledger_idx",
        (device_id, account_id, index),
    )
    return index


def account_exists(db: Connection, account_id: str) -> bool:
    return db.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone() is not None


def device_account(db: Connection, device_id: str) -> str | None:
    row = db.execute("SELECT account_id FROM device_accounts WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else str(row[0])


def account_devices(db: Connection, account_id: str) -> set[str]:
    """The devices assigned to an account."""
    rows = db.execute("SELECT device_id FROM device_accounts WHERE account_id = ?", (account_id,)).fetchall()
    return {str(r[0]) for r in rows}


def holds_any(db: Connection, account_id: str, issuance_id: str) -> bool:
    """Whether the account holds a bundle of the issuance (claimed ones too), or is the
    beneficiary of a claim that cancelled one."""
    row = db.execute(
        "SELECT 1 FROM bundles b LEFT JOIN claims c ON c.claim_id = b.claim_id"
        " WHERE b.issuance_id = ? AND (b.account_id = ? OR c.beneficiary = ?) LIMIT 1",
        (issuance_id, account_id, account_id),
    ).fetchone()
    return row is not None


def accounts(db: Connection) -> list[dict[str, Any]]:
    """Every account with its devices and its balance of active certificates in Wh."""
    now = int(time.time())
    devices: dict[str, list[str]] = {}
    for device_id, account_id in db.execute("SELECT device_id, account_id FROM device_accounts ORDER BY device_id"):
        devices.setdefault(str(account_id), []).append(str(device_id))
    balances: dict[str, dict[str, int]] = {}
    for holder, status, expired, quantity in db.execute(
        "SELECT account_id, status, expired, SUM(quantity) FROM (SELECT account_id, status,"
        " CASE WHEN expires_at <= ? THEN 1 ELSE 0 END AS expired,"
        " bundle_id_range_end - bundle_id_range_start + 1 AS quantity FROM bundles WHERE account_id IS NOT NULL) b"
        " GROUP BY account_id, status, expired",
        (now,),
    ):
        shown = EXPIRED if status == ACTIVE and expired else str(status)
        per = balances.setdefault(str(holder), {})
        per[shown] = per.get(shown, 0) + int(quantity)
    return [
        {
            "account_id": r[0],
            "name": r[1],
            "kind": r[2],
            "created_at": int(r[3]),
            "created_time": records.iso(int(r[3])),
            "ledger_index": int(r[4]),
            "devices": devices.get(str(r[0]), []),
            "balance_wh": {s.lower(): balances.get(str(r[0]), {}).get(s, 0) for s in STATUSES},
        }
        for r in db.execute("SELECT account_id, name, kind, created_at, created_idx FROM accounts ORDER BY account_id")
    ]


# --- bundles in the database -------------------------------------------------------------

_COLUMNS = (
    "bundle_id_range_start, bundle_id_range_end, issuance_id, device_id, production_start, account_id, status,"
    " expires_at, claim_id, ledger_idx"
)
BUNDLE_COLUMNS = tuple(c.strip() for c in _COLUMNS.split(","))


def _bundle(row: Sequence[Any]) -> Bundle:
    return Bundle(
        int(row[0]), int(row[1]), str(row[2]), str(row[3]), int(row[4]), row[5], str(row[6]), int(row[7]),
        None if row[8] is None else int(row[8]), int(row[9]),
    )  # fmt: skip


def bundle_row(b: Bundle) -> tuple[Any, ...]:
    return (b.start, b.end, b.issuance_id, b.device_id, b.production_start, b.holder, b.status, b.expires_at,
            b.claim_id, b.ledger_idx)  # fmt: skip


def containing(db: Connection, certificate_id: int) -> Bundle | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM bundles WHERE bundle_id_range_start <= ? ORDER BY bundle_id_range_start DESC LIMIT 1",
        (certificate_id,),
    ).fetchone()
    if row is None:
        return None
    b = _bundle(row)
    return b if b.end >= certificate_id else None


def act(db: Connection, kind: str, body: dict[str, Any]) -> tuple[int, list[Bundle]]:
    """Inside a write transaction: checks the action (plan), appends its ledger entry and
    stores the bundles it leaves; returns the entry's index and the ranges it named, as
    they now are. body as plan() takes it, without `time` (now) unless given."""
    if not db.in_transaction:
        raise RuntimeError("registry.act outside a write transaction")
    body = {k: v for k, v in body.items() if v is not None}
    body.setdefault("time", int(time.time()))
    index = ledger.size(db) if db.scratch.get("ledger") is None else int(db.scratch["ledger"][0])

    removed, added = plan(
        lambda i: containing(db, i),
        kind,
        body,
        index,
        lambda a: account_exists(db, a),
        lambda d: lifecycle.role_of(db, d),
    )
    body["ranges"] = [list(r) for r in _ranges(body)]
    appended = ledger.append(db, kind, None, body)
    assert appended == index
    db.executemany("DELETE FROM bundles WHERE bundle_id_range_start = ?", [(s,) for s in removed])
    db.insert_rows("bundles", BUNDLE_COLUMNS, [bundle_row(b) for b in added])
    if kind == "claim":
        db.execute(
            "INSERT INTO claims (claim_id, holder, beneficiary, consumer_device, period_start, period_end, quantity,"
            " claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (index, body.get("holder"), body["beneficiary"], body.get("consumer_device"), body["period_start"],
             body["period_end"], sum(e - s + 1 for s, e in body["ranges"]), body["time"]),
        )  # fmt: skip
    named = [b for b in added if b.ledger_idx == index]
    return index, named


def bundle_json(b: Bundle, fields: dict[str, Any], now: int, issued_by: int) -> dict[str, Any]:
    """A bundle as the API shows it: its issuance's fields (issued_by: the issuance's ledger
    entry, the one its provenance file is named by) with its own range and state."""
    out = dict(fields)
    out.update(
        issuance_ledger_index=issued_by,
        country=fields.get("country") or None,  # never an empty string: unknown is null
        bundle_id_range_start=b.start,
        bundle_id_range_end=b.end,
        bundle_quantity=b.quantity,
        account_id=b.holder,
        status=b.status_at(now),
        claim_id=b.claim_id,
        ledger_index=b.ledger_idx,
        production_starting_interval_time=records.iso(fields["production_starting_interval"]),
        production_ending_interval_time=records.iso(fields["production_ending_interval"]),
        issuance_date_time=records.iso(fields["issuance_date"]),
        expiry_date_time=records.iso(fields["expiry_date"]),
    )
    return out


def list_bundles(
    db: Connection,
    start: int,
    end: int,
    cursor: int | None,
    limit: int,
    device_id: str | None = None,
    account_id: str | None = None,
    status: str | None = None,
    claim_id: int | None = None,
    now: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Bundles produced in [start, end), in id order after the cursor (the last
    bundle_id_range_start of a page), filtered; and the next cursor."""
    at = int(time.time()) if now is None else now
    where = ["b.production_start >= ?", "b.production_start < ?"]
    params: list[Any] = [start, end]
    for column, value in (("b.device_id", device_id), ("b.account_id", account_id), ("b.claim_id", claim_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if status == EXPIRED:
        where.append("b.status = ? AND b.expires_at <= ?")
        params += [ACTIVE, at]
    elif status == ACTIVE:
        where.append("b.status = ? AND b.expires_at > ?")
        params += [ACTIVE, at]
    elif status is not None:
        where.append("b.status = ?")
        params.append(status)
    if cursor is not None:
        where.append("b.bundle_id_range_start > ?")
        params.append(cursor)
    columns = ", ".join(f"b.{c}" for c in BUNDLE_COLUMNS)
    rows = db.execute(
        f"SELECT {columns}, c.fields, c.ledger_idx FROM bundles b JOIN certificates c ON c.issuance_id = b.issuance_id"
        f" WHERE {' AND '.join(where)} ORDER BY b.bundle_id_range_start LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    n = len(BUNDLE_COLUMNS)
    out = [bundle_json(_bundle(r), json.loads(r[n]), at, int(r[n + 1])) for r in rows[:limit]]
    return out, (out[-1]["bundle_id_range_start"] if len(rows) > limit else None)


# --- cancellation statements ---------------------------------------------------------------


_CLAIM_COLUMNS = "claim_id, holder, beneficiary, consumer_device, period_start, period_end, quantity, claimed_at"


def _claim_json(row: Sequence[Any]) -> dict[str, Any]:
    """A claim batch as answers show it (a claims row, _CLAIM_COLUMNS), times also as ISO 8601."""
    return {
        "claim_id": int(row[0]),
        "ledger_index": int(row[0]),
        "holder": row[1],
        "beneficiary": row[2],
        "consumer_device": row[3],
        "consumption_period_start": int(row[4]),
        "consumption_period_end": int(row[5]),
        "consumption_period_start_time": records.iso(int(row[4])),
        "consumption_period_end_time": records.iso(int(row[5])),
        "quantity_wh": int(row[6]),
        "claimed_at": int(row[7]),
        "claimed_time": records.iso(int(row[7])),
    }


def issuance_ranges(db: Connection, issuance_id: str) -> list[list[int]]:
    """The id ranges of an issuance's active bundles (what withdrawing the hour names)."""
    return [
        [int(r[0]), int(r[1])]
        for r in db.execute(
            "SELECT bundle_id_range_start, bundle_id_range_end FROM bundles WHERE issuance_id = ? AND status = ?"
            " ORDER BY bundle_id_range_start",
            (issuance_id, ACTIVE),
        )
    ]


def bundles_json(db: Connection, bundles: Sequence[Bundle], now: int | None = None) -> list[dict[str, Any]]:
    """Bundles as the API shows them, their issuances' fields read in one query per 500."""
    at = int(time.time()) if now is None else now
    ids = sorted({b.issuance_id for b in bundles})
    fields: dict[str, tuple[dict[str, Any], int]] = {}
    for n in range(0, len(ids), 500):
        part = ids[n : n + 500]
        marks = ", ".join("?" * len(part))
        for issuance_id, raw, index in db.execute(
            f"SELECT issuance_id, fields, ledger_idx FROM certificates WHERE issuance_id IN ({marks})", part
        ):
            fields[str(issuance_id)] = json.loads(raw), int(index)
    return [bundle_json(b, fields[b.issuance_id][0], at, fields[b.issuance_id][1]) for b in bundles]


def statement(db: Connection, claim_id: int) -> dict[str, Any]:
    """The cancellation statement of one claim batch: when, by whom, for whom, how much, for
    which consumption period, and the bundles (hour, device, source) it cancelled."""
    row = db.execute(f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = ?", (claim_id,)).fetchone()
    if row is None:
        raise LookupError(f"no claim {claim_id}")
    bundles, _ = list_bundles(db, 0, 2**62, None, 100_000, claim_id=claim_id)
    by_source: dict[str, int] = {}
    for b in bundles:
        by_source[b["energy_source"]] = by_source.get(b["energy_source"], 0) + b["bundle_quantity"]
    return {
        **_claim_json(row),
        "by_energy_source_wh": by_source,
        "bundles": [
            {
                k: b[k]
                for k in (
                    "bundle_id_range_start",
                    "bundle_id_range_end",
                    "bundle_quantity",
                    "issuance_id",
                    "device_id",
                    "energy_source",
                    "technology",
                    "country",
                    "grid_area",
                    "production_starting_interval",
                    "production_starting_interval_time",
                )
            }
            for b in bundles
        ],  # fmt: skip
    }


def claims(
    db: Connection, beneficiary: str | None, cursor: int | None, limit: int, party: str | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Claim batches (without their bundles), in ledger order after the cursor; next cursor.
    party: only the claims that account made (holder) or that were made for it (beneficiary)."""
    where, params = ["claim_id > ?"], [-1 if cursor is None else cursor]
    if beneficiary is not None:
        where.append("beneficiary = ?")
        params.append(beneficiary)  # type: ignore[arg-type]
    if party is not None:
        where.append("(holder = ? OR beneficiary = ?)")
        params += [party, party]  # type: ignore[list-item]
    rows = db.execute(
        f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE {' AND '.join(where)} ORDER BY claim_id LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    out = [_claim_json(r) for r in rows[:limit]]
    return out, (out[-1]["claim_id"] if len(rows) > limit else None)


# --- the replay's view (verifier/audit/replay.py) ---------------------------------------------------


class Holdings:
    """Every bundle in memory, by start: what the audit's replay derives from the entries."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.by_start: dict[int, Bundle] = {}

    def containing(self, i: int) -> Bundle | None:
        k = bisect.bisect_right(self.starts, i) - 1
        if k < 0:
            return None
        b = self.by_start[self.starts[k]]
        return b if b.end >= i else None

    def replace(self, removed: Iterable[int], added: Iterable[Bundle]) -> None:
        for s in removed:
            del self.by_start[s]
            del self.starts[bisect.bisect_left(self.starts, s)]
        for b in added:
            self.by_start[b.start] = b
            bisect.insort(self.starts, b.start)


# --- what the pages show of the registry -----------------------------------------------------

EXPIRING_S = 30 * 86400  # "expiring": Active bundles whose expiry is this close


def inventory(db: Connection, account_id: str | None = None, now: int | None = None) -> dict[str, dict[str, int]]:
    """Bundles and Wh by state: Active (held by the producer's own account or the issuing
    body), Transferred (Active, held by another account), Claimed, Withdrawn, Expired, and
    Expiring (Active, expiring within EXPIRING_S; also counted as Active or Transferred).
    With account_id, only what that account holds."""
    at = int(time.time()) if now is None else now
    where, params = ("WHERE b.account_id = ?", [account_id]) if account_id else ("", [])
    out = {k: {"bundles": 0, "wh": 0} for k in (ACTIVE, "Transferred", CLAIMED, WITHDRAWN, EXPIRED, "Expiring")}
    for status, moved, expired, expiring, n, wh in db.execute(
        "SELECT b.status, CASE WHEN b.account_id IS NOT NULL AND b.account_id <> COALESCE(d.account_id, '') THEN 1"
        " ELSE 0 END, CASE WHEN b.expires_at <= ? THEN 1 ELSE 0 END, CASE WHEN b.expires_at <= ? THEN 1 ELSE 0 END,"
        " COUNT(*), SUM(b.bundle_id_range_end - b.bundle_id_range_start + 1) FROM bundles b"
        f" LEFT JOIN device_accounts d ON d.device_id = b.device_id {where} GROUP BY 1, 2, 3, 4",
        (at, at + EXPIRING_S, *params),
    ):
        keys = [str(status)]
        if status == ACTIVE:
            keys = [EXPIRED] if expired else ["Transferred" if moved else ACTIVE] + (["Expiring"] if expiring else [])
        for k in keys:
            out[k]["bundles"] += int(n)
            out[k]["wh"] += int(wh)
    return out


def issuance_bundles(db: Connection, issuance_id: str, now: int | None = None) -> list[dict[str, Any]]:
    """Every bundle an issuance's Wh are in now (its lifecycle: each names the entry that last
    changed it), in id order."""
    columns = ", ".join(BUNDLE_COLUMNS)
    rows = db.execute(
        f"SELECT {columns} FROM bundles WHERE issuance_id = ? ORDER BY bundle_id_range_start", (issuance_id,)
    ).fetchall()
    return bundles_json(db, [_bundle(r) for r in rows], now)


def actions(db: Connection, kind: str, account_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest registry actions of a kind (transfer, claim, withdraw), newest first, as
    their ledger entries say them; with account_id, those it sent or received (of the
    latest 20 x limit)."""
    out = []
    for found in ledger.newest(db, kind, limit * 20 if account_id else limit):
        idx, body = found.index, found.body
        parties = {body.get("from_account"), body.get("to_account"), body.get("holder"), body.get("beneficiary")}
        if account_id and account_id not in parties:
            continue
        wh = sum(int(e) - int(s) + 1 for s, e in body.get("ranges", []))
        out.append({"ledger_index": int(idx), "time": int(body.get("time", 0)), "wh": wh, **{
            k: body.get(k) for k in ("from_account", "to_account", "holder", "beneficiary", "reason")}})  # fmt: skip
        if len(out) == limit:
            break
    return out


def issuance_index(db: Connection, issuance_id: str) -> int | None:
    """The ledger entry that issued issuance_id, or None."""
    row = db.execute("SELECT ledger_idx FROM certificates WHERE issuance_id = ?", (issuance_id,)).fetchone()
    return None if row is None else int(row[0])


def issuance(db: Connection, ledger_index: int) -> dict[str, Any]:
    """An issuance (by its ledger entry) with its fields; LookupError if there is none."""
    row = db.execute(
        "SELECT issuance_id, device_id, production_start, bundle_quantity, fields FROM certificates"
        " WHERE ledger_idx = ?",
        (ledger_index,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no issuance at ledger entry {ledger_index}")
    return {"issuance_id": str(row[0]), "device_id": str(row[1]), "production_start": int(row[2]),
            "bundle_quantity": int(row[3]), "ledger_index": ledger_index, **json.loads(row[4])}  # fmt: skip


def recent_issuances(db: Connection, device_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest issuances (newest hour first), optionally of one producer."""
    where, params = ("WHERE device_id = ?", (device_id,)) if device_id else ("", ())
    return [
        {"ledger_index": int(r[0]), "device_id": str(r[1]), "production_start": int(r[2]), "wh": int(r[3])}
        for r in db.execute(
            f"SELECT ledger_idx, device_id, production_start, bundle_quantity FROM certificates {where}"
            " ORDER BY production_start DESC, device_id LIMIT ?",
            (*params, limit),
        )
    ]


# --- the registry's state, committed to the log (verifier/certificates/registry_map.py) ---------------------


def state_leaves(db: Connection) -> list[registry_map.Leaf]:
    """Every bundle as a leaf of the registry's map, in id order."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM bundles ORDER BY bundle_id_range_start").fetchall()
    return [registry_map.leaf_of(_bundle(r)) for r in rows]


def latest_state_entry(db: Connection) -> int | None:
    return ledger.last_index(db, (registry_map.ENTRY_KIND,))


def _changed_since(db: Connection, index: int) -> bool:
    """Whether an issuance, transfer, claim or withdrawal came after entry index (each leaves
    its index on the bundles it changed)."""
    row = db.execute("SELECT MAX(ledger_idx) FROM bundles").fetchone()
    return row is not None and row[0] is not None and int(row[0]) > index


def state_checkpoint(db: Connection, signer: Any, now: int | None = None) -> tuple[int, Any]:
    """(index, checkpoint): a registry-state entry committing to the registry as it is now,
    and the stored checkpoint whose last entry it is. The latest one is reused while no
    registry action came after it; otherwise a new one is appended and the checkpoint of
    exactly that size signed in the same transaction (so the state is provably current at it)."""
    from verifier import storage
    from verifier.log import checkpoints

    def current() -> tuple[int, Any] | None:
        index = latest_state_entry(db)
        if index is None or _changed_since(db, index):
            return None
        cp = checkpoints.at_size(db, index + 1)
        return None if cp is None else (index, cp)

    found = current()  # no lock taken while nothing changed
    if found is not None:
        return found
    with storage.transaction(db):
        found = current()  # again, under the write lock: another worker may have committed it
        if found is None:
            fields = registry_map.entry_fields(state_leaves(db), int(time.time()) if now is None else now)
            index = ledger.append(db, registry_map.ENTRY_KIND, None, fields)
            found = index, checkpoints.sign_current(db, signer)
    return found


# --- a registry action's answer by its Idempotency-Key (verifier/http/certificates.py) -----------

IDEMPOTENCY_S = 24 * 3600  # how long an answer is kept


def kept_answer(db: Connection, key_id: str, idem_key: str) -> tuple[bytes, int, str] | None:
    """Inside the action's write transaction: (request hash, status, answer JSON) stored under the
    API key's Idempotency-Key in the last 24 hours, or None (older answers are forgotten here)."""
    db.execute("DELETE FROM idempotency WHERE created_at < ?", (int(time.time()) - IDEMPOTENCY_S,))
    row = db.execute(
        "SELECT request, status, answer FROM idempotency WHERE key_id = ? AND idem_key = ?", (key_id, idem_key)
    ).fetchone()
    return None if row is None else (bytes(row[0]), int(row[1]), str(row[2]))


def keep_answer(db: Connection, key_id: str, idem_key: str, request: bytes, status: int, answer: str) -> None:
    """Inside the action's write transaction: its answer, kept under the Idempotency-Key."""
    db.execute(
        "INSERT INTO idempotency (key_id, idem_key, request, status, answer, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (key_id, idem_key, request, status, answer, int(time.time())),
    )


def claim_party(db: Connection, claim_id: int, account_id: str) -> bool:
    """Whether the account made the claim (holder) or it was made for it (beneficiary)."""
    row = db.execute("SELECT holder, beneficiary FROM claims WHERE claim_id = ?", (claim_id,)).fetchone()
    return row is not None and account_id in (row[0], row[1])


def claimed_per_hour(
    db: Connection, start: int, end: int, consumer_device: str | None = None, beneficiary: str | None = None
) -> dict[int, dict[str, int]]:
    """Claimed Wh per production hour in [start, end) and producing device: of the claims
    naming consumer_device, or (beneficiary) of those for that account naming no device."""
    if (consumer_device is None) == (beneficiary is None):
        raise ValueError("name a consumer device or a beneficiary")
    where, key = ("c.consumer_device = ?", consumer_device) if consumer_device is not None else (
        "c.consumer_device IS NULL AND c.beneficiary = ?", beneficiary)  # fmt: skip
    out: dict[int, dict[str, int]] = {}
    for t, device, wh in db.execute(
        "SELECT b.production_start, b.device_id, SUM(b.bundle_id_range_end - b.bundle_id_range_start + 1)"
        f" FROM claims c JOIN bundles b ON b.claim_id = c.claim_id WHERE {where} AND b.production_start >= ?"
        " AND b.production_start < ? GROUP BY b.production_start, b.device_id",
        (key, start, end),
    ):
        out.setdefault(int(t), {})[str(device)] = int(wh)
    return out
