"""The pages. Views read the query, call the library (the same functions the API calls) and
render a template; sums and charts are computed here from what those functions return."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from verifier import auth, web
from verifier.certificates import matching, registry
from verifier.charging import green_share, sessions
from verifier.communities import operation
from verifier.devices import ingest, lifecycle, records
from verifier.http import ocpi as ocpi_views
from verifier.http.access import get_db
from verifier.log import checkpoints, cosigning, ledger, note
from verifier.provenance import build as pf
from verifier.provenance import checks
from verifier.web import bp, caller, charts, page, safe_next
from verifier.wire import merkle, ocmf, times
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem

DAY, HOUR = 86400, 3600
WINDOWS = {"1": 1, "7": 7, "31": 31, "365": 365}  # days a device page can show
MAX_UPLOAD = 2 * 1024 * 1024  # a provenance certificate of a packet of 256 readings is ~100 KB
PAGE = 50
LEDGER_PAGE = 15  # ledger entries a page lists
LAST_DAY = times.MAX_TIME + 1 - 400 * DAY  # the latest day a page starts from: a year of days after it fit


def _signer() -> note.Signer:
    signer: note.Signer = current_app.extensions["wattproof.log_signer"]
    return signer


def _day(ts: int) -> int:
    return ts - ts % DAY


def _date_arg(name: str, default: int) -> int:
    """A YYYY-MM-DD query argument as the Unix time of that UTC midnight."""
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        day = int(datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise Problem("bad-request", name, f"{name} is a date, YYYY-MM-DD, not {raw!r}") from None
    if day > LAST_DAY:  # a page shows the days after it too
        raise Problem("bad-request", name, f"{name} is a date before {times.strftime(LAST_DAY, '%Y-%m-%d')}")
    return day


def _int_query(name: str, default: int | None = None) -> int | None:
    """An integer query argument of ASCII digits that fits the database (0 to 2^63 - 1)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 19 or int(raw) >= 2**63:
        raise Problem("bad-request", name, f"{name} is a whole number from 0 to 2^63 - 1")
    return int(raw)


def _date(ts: int) -> str:
    return times.strftime(ts, "%Y-%m-%d")


def _first_data(db: Any) -> int:
    span = records.data_span(db)
    return span[0] if span else int(time.time())


def _latest_data(db: Any) -> int:
    """The time of the newest reading anywhere (the pages open on the days that have data)."""
    span = records.data_span(db)
    return span[1] if span else int(time.time())


# -- sign-in ------------------------------------------------------------------------------


@bp.get("/")
def home() -> BaseResponse:
    who = caller()
    if who is None:
        return redirect(url_for("web.signin"))
    if who.role == "account":
        return redirect(url_for("web.certificates"))
    return redirect(url_for("web.overview"))


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    error, status, wait = None, 200, 0.0
    if request.method == "POST":
        token = request.form.get("api_key", "").strip()
        wait = web.signin_wait(token)
        if wait:
            error, status = f"Too many sign-in attempts: try again in {max(1, round(wait))} s.", 429
        else:
            try:
                who = auth.identify(get_db(), f"Bearer {token}")
            except Problem as e:
                web.signin_failed(token)
                error, status = e.detail, 401
            else:
                web.start_session(who.key_id)
                return redirect(safe_next(request.form.get("next")))
    answer = render_template("signin.html", error=error, next=request.values.get("next", ""))
    headers = {"Retry-After": str(max(1, round(wait)))} if status == 429 else {}
    return answer, status, headers


@bp.post("/signout")
def signout() -> BaseResponse:
    web.end_session()
    return redirect(url_for("web.signin"))


# -- overview -----------------------------------------------------------------------------


def _energy_of_day(db: Any, day: int) -> dict[str, int]:
    """Generation (producers' generation registers) and consumption (consumers' and chargers'
    import) over one UTC day, from the register edges."""
    out = {"generation_wh": 0, "consumption_wh": 0, "devices": 0}
    rows, _ = lifecycle.page(db, None, 100_000)
    for d in rows:
        if d["status"] != "active" or d["role"] == "ocmf-charger":
            continue
        found = records.intervals(db, d["device_id"], day, day + DAY, DAY)
        imported, exported = (found[0].import_wh, found[0].export_wh) if found else (None, None)
        if imported is None or exported is None:
            continue
        out["devices"] += 1
        register = records.generation_register(d)
        if d["role"] == "producer" and register is not None:
            out["generation_wh"] += exported if register == "export_wh" else imported
        elif d["role"] in ("consumer", "charger"):
            out["consumption_wh"] += imported
    return out


@bp.get("/overview")
@page("utility", "auditor", "installer")
def overview() -> str:
    db = get_db()
    latest = _latest_data(db)
    today = _day(int(time.time()))
    day = today if latest >= today else _day(latest)
    cp = checkpoints.latest(db)
    return render_template(
        "overview.html",
        census=lifecycle.census(db),
        day=day,
        is_today=day == today,
        energy=_energy_of_day(db, day),
        inventory=registry.inventory(db),
        checkpoint=cp,
        cosigned=checkpoints.cosigned_by(db, cp.size) if cp else [],
        size=ledger.size(db),
        now=int(time.time()),
        anomalies=records.anomalies(db, limit=10),
        flagged=[d for d in lifecycle.page(db, None, 100_000)[0] if d["flagged"]],
    )


# -- devices ------------------------------------------------------------------------------


@bp.get("/devices", endpoint="devices")
@page("utility", "auditor", "installer")
def devices_list() -> str:
    after = request.args.get("after")
    if after is not None and not DEVICE_ID.fullmatch(after):
        raise Problem("bad-request", "after", "a device id")
    rows, next_cursor = lifecycle.page(get_db(), after, PAGE)
    return render_template("devices.html", devices=rows, next_cursor=next_cursor)


def _device_or_404(db: Any, device_id: str) -> dict[str, Any]:
    try:
        return lifecycle.describe(db, device_id)
    except LookupError:
        raise Problem("not-found", "device_id", f"no device {device_id}") from None


@bp.get("/devices/<device_id>")
@page("utility", "auditor", "installer")
def device(device_id: str) -> str:
    db = get_db()
    d = _device_or_404(db, device_id)
    who = caller()
    readings_allowed = who is not None and who.role != "installer"
    span = records.data_span(db, device_id)
    newest = None if span is None else span[1]
    # Opens on the device's data: the shortest window that holds the days it has readings on
    # (a device with a day of readings does not open on a week that is mostly empty).
    span_days = 1 if span is None else (_day(span[1]) - _day(span[0])) // DAY + 1
    fitting = next((k for k, n in WINDOWS.items() if n >= span_days), "365")
    window = request.args.get("days", fitting)
    if window not in WINDOWS:
        raise Problem("bad-request", "days", f"one of {', '.join(WINDOWS)}")
    days = WINDOWS[window]
    end = _date_arg("end", _day(int(newest if newest is not None else time.time())) + DAY)
    start = end - days * DAY
    chart, qualities, totals = "", dict[str, int](), dict[str, int]()
    if readings_allowed and d["role"] != "ocmf-charger":
        step = DAY if days > 31 else HOUR
        ivs = records.intervals(db, device_id, start, end, step)
        register = records.generation_register(d)
        gen = [None if iv.import_wh is None else (iv.export_wh if register == "export_wh" else iv.import_wh)
               for iv in ivs] if register else []  # fmt: skip
        use = [iv.import_wh for iv in ivs] if d["role"] != "producer" else []
        exported = [iv.export_wh for iv in ivs] if d["role"] == "consumer" else []
        series = []
        if gen:
            series.append(charts.Series("generation", gen, "gen"))
        if use:
            series.append(charts.Series("consumption", use, "use"))
        if exported and any(exported):
            series.append(charts.Series("export", exported, "exp"))
        if not series:  # a producer whose enrollment names no generation register: both registers
            series = [charts.Series("import", [iv.import_wh for iv in ivs], "use"),
                      charts.Series("export", [iv.export_wh for iv in ivs], "exp")]  # fmt: skip
        for iv in ivs:
            qualities[iv.quality] = qualities.get(iv.quality, 0) + 1
        totals = {s.name: sum(v or 0 for v in s.values) for s in series}
        chart = charts.bars(
            f"Energy of {device_id} per {'day' if step == DAY else 'hour'}",
            [iv.start for iv in ivs],
            step,
            series,
            hatched=[iv.quality not in ("measured", "missing") for iv in ivs],
            desc=f"{len(ivs)} {'days' if step == DAY else 'hours'} from {charts.utc_text(start)}; "
            + ", ".join(f"{k} {charts.wh_text(v)}" for k, v in totals.items()),
        )
    before = _int_query("before")
    return render_template(
        "device.html",
        d=d,
        window=window,
        windows=WINDOWS,
        start=start,
        end=end,
        prev_end=_date(end - days * DAY),
        next_end=_date(end + days * DAY),
        chart=chart,
        qualities=qualities,
        totals=totals,
        readings_allowed=readings_allowed,
        anomalies=records.anomalies(db, device_id, limit=20) if readings_allowed else [],
        packets=lifecycle.packets(db, device_id, before, 20),
        summary=lifecycle.packet_summary(db, device_id),
        history=lifecycle.history(db, device_id),
    )


# -- certificates -------------------------------------------------------------------------


def _account_scope() -> str | None:
    """An account key sees its own account only."""
    who = caller()
    return who.account if who is not None and who.role == "account" else None


@bp.get("/certificates")
@page("utility", "auditor", "account")
def certificates() -> str:
    db = get_db()
    own = _account_scope()
    account = own or request.args.get("account_id") or None
    if account is not None and not registry.ACCOUNT_ID.fullmatch(account):
        raise Problem("bad-request", "account_id", "an account id")
    status = request.args.get("status") or None
    if status is not None and status not in registry.STATUSES:
        raise Problem("bad-request", "status", f"one of {', '.join(registry.STATUSES)}")
    cursor = _int_query("cursor")
    bundles, next_cursor = registry.list_bundles(db, 0, 2**62, cursor, PAGE, account_id=account, status=status)
    claims, _ = registry.claims(db, account, None, PAGE) if account else registry.claims(db, None, None, PAGE)
    return render_template(
        "certificates.html",
        account=account,
        own=own,
        accounts=[] if own else registry.accounts(db),
        status=status,
        inventory=registry.inventory(db, account),
        bundles=bundles,
        next_cursor=next_cursor,
        transfers=registry.actions(db, "transfer", account, 20),
        withdrawals=[] if own else registry.actions(db, "withdraw", None, 20),
        claims=claims,
        issuances=[] if own else registry.recent_issuances(db, limit=10),
    )


@bp.get("/certificates/<index:index>")
@page("utility", "auditor", "account")
def issuance(index: int) -> str:
    db = get_db()
    try:
        found = registry.issuance(db, index)
    except LookupError as e:
        raise Problem("not-found", "index", str(e)) from None
    bundles = registry.issuance_bundles(db, found["issuance_id"])
    own = _account_scope()
    if own is not None and not any(b["account_id"] == own for b in bundles):
        abort(403)
    steps = []
    for b in bundles:
        entry = ledger.entry(db, b["ledger_index"]) if b["ledger_index"] != index else None
        steps.append((b, entry.kind if entry else "issuance", entry.body if entry else {}))
    return render_template("issuance.html", issuance=found, steps=steps, index=index)


@bp.get("/certificates/hour/<path:issuance_id>")
@page("utility", "auditor", "account")
def issuance_of(issuance_id: str) -> BaseResponse:
    index = registry.issuance_index(get_db(), issuance_id)
    if index is None:
        raise Problem("not-found", "issuance_id", f"no issuance {issuance_id}")
    return redirect(url_for("web.issuance", index=index))


@bp.get("/certificates/<index:index>/checks.json")
@page("utility", "auditor", "account")
def issuance_provenance(index: int) -> Response:
    db = get_db()
    own = _account_scope()
    if own is not None:
        try:
            held = registry.issuance_bundles(db, registry.issuance(db, index)["issuance_id"])
        except LookupError as e:
            raise Problem("not-found", "index", str(e)) from None
        if not any(b["account_id"] == own for b in held):
            abort(403)
    return _provenance(pf.for_certificate, "index", f"certificate-{index}.json", index)


@bp.get("/claims/<index:claim_id>")
@page("utility", "auditor", "account")
def claim(claim_id: int) -> str:
    try:
        found = registry.statement(get_db(), claim_id)
    except LookupError as e:
        raise Problem("not-found", "claim_id", str(e)) from None
    own = _account_scope()
    if own is not None and own not in (found["holder"], found["beneficiary"]):
        abort(403)
    return render_template("claim.html", claim=found)


# -- hourly matching ----------------------------------------------------------------------


@bp.get("/matching", endpoint="matching")
@page("utility", "auditor", "account")
def matching_page() -> str:
    db = get_db()
    own = _account_scope()
    device_id = request.args.get("device_id") or None
    account_id = request.args.get("account_id") or None
    if own is not None:
        if account_id not in (None, own):
            abort(403)
        if device_id is not None and registry.device_account(db, device_id) != own:
            abort(403)
        if device_id is None:
            account_id = own
    if device_id is not None and not DEVICE_ID.fullmatch(device_id):
        raise Problem("bad-request", "device_id", "a device id")
    if account_id is not None and not registry.ACCOUNT_ID.fullmatch(account_id):
        raise Problem("bad-request", "account_id", "an account id")
    consumers = matching.consumer_devices(db) if own is None else matching.consumers(db, own)
    accounts = [a for a in registry.accounts(db) if own is None or a["account_id"] == own]
    if device_id and account_id:
        account_id = None
    if not device_id and not account_id:
        return render_template("matching.html", consumers=consumers, accounts=accounts, chosen=None)
    latest = _latest_data(db)
    end = _date_arg("to", _day(latest) + DAY)
    start = _date_arg("from", max(end - 7 * DAY, _day(_first_data(db))))
    if not start < end or end - start > 366 * DAY:
        raise Problem("bad-request", "from", "from must be before to, at most a year apart")
    try:
        rows = matching.hours(db, start, end, device_id=device_id, account_id=account_id)
    except matching.NotAConsumer as e:
        raise Problem("not-found", "device_id" if device_id else "account_id", str(e)) from None
    summary = matching.summary(rows)
    chart = charts.bars(
        "Load per hour: matched by claimed certificates, and not",
        [h.start for h in rows],
        HOUR,
        [charts.Series("matched", [h.matched_wh for h in rows], "gen"),
         charts.Series("unmatched", [h.load_wh - h.matched_wh for h in rows], "use")],
        line=[charts.Series("load", [h.load_wh for h in rows], "load"),
              charts.Series("claimed", [h.claimed_wh for h in rows], "claimed")],
        hatched=[h.quality != "measured" for h in rows],
    )  # fmt: skip
    days = sorted({_day(h.start) for h in rows})
    grid: dict[int, list[float | None]] = {d: [None] * 24 for d in days}
    for h in rows:
        if h.load_wh:
            grid[_day(h.start)][(h.start % DAY) // HOUR] = h.matched_wh / h.load_wh
    heat = charts.heatmap("Match per hour of day", days, [grid[d] for d in days])
    return render_template(
        "matching.html",
        consumers=consumers,
        accounts=accounts,
        chosen=device_id or account_id,
        device_id=device_id,
        account_id=account_id,
        start=start,
        end=end,
        from_date=_date(start),
        to_date=_date(end),
        summary=summary,
        chart=chart,
        heat=heat,
        not_covered=summary["hours_not_covered"][:48],
    )


# -- communities --------------------------------------------------------------------------


@bp.get("/communities", endpoint="communities")
@page("utility", "auditor")
def communities_list() -> str:
    return render_template("communities.html", communities=operation.list_all(get_db()))


def _month_arg(default_ts: int) -> str:
    month = request.args.get("month") or times.strftime(default_ts, "%Y-%m")
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month):
        raise Problem("bad-request", "month", "a month, YYYY-MM")
    return month


@bp.get("/communities/<community_id>")
@page("utility", "auditor")
def community(community_id: str) -> str:
    db = get_db()
    try:
        info = operation.describe(db, community_id)
    except LookupError as e:
        raise Problem("not-found", "community_id", str(e)) from None
    latest = _latest_data(db)
    month = _month_arg(latest)
    try:
        start, end = operation.month_span(month)
    except ValueError as e:
        raise Problem("bad-request", "month", str(e)) from None
    day = _date_arg("day", _day(min(latest, end - 1)))
    steps = operation.steps(db, community_id, day, day + DAY)
    series = [
        charts.Series("local", [sum(s.allocated.values()) for s in steps], "gen"),
        charts.Series("grid", [sum(s.consumption.values()) - sum(s.allocated.values()) for s in steps], "use"),
    ]
    surplus = charts.Series("producers' surplus", [sum(s.surplus.values()) for s in steps], "claimed")
    step_s = steps[0].step_s if steps else 900
    chart = charts.bars(f"Consumption per step on {_date(day)}: local and from the grid", [s.start for s in steps],
                        step_s, series, line=surplus, hatched=[s.quality != "measured" for s in steps])  # fmt: skip
    members = sorted({d for s in steps for d in s.consumption})
    per_member = {
        d: charts.bars(f"{d}: local and grid per step", [s.start for s in steps], step_s,
                       [charts.Series("local", [s.allocated.get(d) for s in steps], "gen"),
                        charts.Series("grid", [None if d not in s.consumption else s.consumption[d] - s.allocated[d]
                                               for s in steps], "use")])
        for d in members
    }  # fmt: skip
    return render_template(
        "community.html",
        info=info,
        month=month,
        day=day,
        day_text=_date(day),
        chart=chart,
        per_member=per_member,
        prev_day=_date(day - DAY),
        next_day=_date(day + DAY),
        start=start,
        end=end,
    )


_statements: dict[tuple[str, str, str, int], dict[str, Any]] = {}


@bp.get("/communities/<community_id>/settlement")
@page("utility", "auditor")
def community_settlement(community_id: str) -> str:
    """The month's statement. A large community's month takes seconds to settle, so each
    worker keeps the statements it made until the ledger grows."""
    db = get_db()
    try:
        info = operation.describe(db, community_id)
        month = _month_arg(_latest_data(db))
        key = (current_app.config["DATABASE"], community_id, month, ledger.size(db))
        if key not in _statements:
            if len(_statements) > 64:
                _statements.clear()
            _statements[key] = operation.settlement(db, community_id, month)
    except LookupError as e:
        raise Problem("not-found", "community_id", str(e)) from None
    except ValueError as e:
        raise Problem("bad-request", "month", str(e)) from None
    return render_template("settlement.html", info=info, month=month, statement=_statements[key])


@bp.get("/communities/<community_id>/steps.csv")
@page("utility", "auditor")
def community_csv(community_id: str) -> Response:
    db = get_db()
    month = _month_arg(_latest_data(db))
    quantity = request.args.get("quantity", "allocated")
    if quantity not in operation.CSV_QUANTITIES:
        raise Problem("bad-request", "quantity", f"one of {', '.join(operation.CSV_QUANTITIES)}")
    try:
        start, end = operation.month_span(month)
        rows = operation.steps(db, community_id, start, end)
    except LookupError as e:
        raise Problem("not-found", "community_id", str(e)) from None
    except ValueError as e:
        raise Problem("bad-request", "month", str(e)) from None
    return _download(operation.to_csv(rows, quantity).encode(), f"{community_id}-{month}-{quantity}.csv", "text/csv")


# -- charging sessions --------------------------------------------------------------------


def _all_sessions(db: Any) -> list[tuple[dict[str, Any], bytes, sessions.Session]]:
    return [(attrs, point, s) for attrs, point, found in sessions.of_chargers(db) for s in found]


@bp.get("/sessions", endpoint="sessions")
@page("utility", "auditor")
def sessions_list() -> str:
    db = get_db()
    charger = request.args.get("charger") or None
    state = request.args.get("state") or None
    if state is not None and state not in sessions.STATES:
        raise Problem("bad-request", "state", f"one of {', '.join(sessions.STATES)}")
    start = _date_arg("from", 0)
    end = _date_arg("to", LAST_DAY) + DAY
    if start >= end:
        raise Problem("bad-request", "from", "from must be on or before to")
    every = _all_sessions(db)
    chargers = sorted({s.device_id for _, _, s in every})
    found = [
        s
        for _, _, s in every
        if (charger is None or s.device_id == charger) and (state is None or s.state == state)
        and start <= s.start.ts < end
    ]  # fmt: skip
    found.sort(key=lambda s: (-s.start.ts, s.device_id))
    offset = _int_query("offset", 0) or 0
    return render_template(
        "sessions.html",
        sessions=found[offset : offset + PAGE],
        total=len(found),
        offset=offset,
        page=PAGE,
        chargers=chargers,
        charger=charger,
        state=state,
        states=sessions.STATES,
        from_date=request.args.get("from", ""),
        to_date=request.args.get("to", ""),
    )


def _session(db: Any, device_id: str, session_id: str) -> tuple[dict[str, Any], bytes, sessions.Session]:
    for attrs, point, s in ((a, p, s) for a, p, found in sessions.of_chargers(db, device_id=device_id) for s in found):
        if s.device_id == device_id and s.session_id == session_id:
            return attrs, point, s
    raise Problem("not-found", "session_id", f"no session {session_id} on {device_id}")


@bp.get("/sessions/<device_id>/<session_id>")
@page("utility", "auditor")
def session_page(device_id: str, session_id: str) -> str:
    db = get_db()
    attrs, point, s = _session(db, device_id, session_id)
    shares = green_share.of_sessions(db, device_id, [s], sessions.for_device(db, device_id), hours=True)
    share = shares.get(s.session_id)
    points = [s.start, *s.samples, *([s.stop] if s.stop else [])]
    power = [
        (b.ts, (int(b.values["register_wh"]) - int(a.values["register_wh"])) * 3600 / (b.ts - a.ts))
        for a, b in zip(points, points[1:], strict=False)
        if b.ts > a.ts
    ]
    chart = charts.curve(f"Charging power of session {session_id[:12]}", power, "W",
                         desc=f"mean power between {len(points)} register readings") if power else ""  # fmt: skip
    try:
        ocpi_views.session_cdr(current_app.config, attrs, point, s)
        has_cdr = True
    except ValueError:
        has_cdr = False
    return render_template(
        "session.html",
        s=s,
        record=sessions.session_json(s, samples=True),
        green=None if share is None else share.as_json(True),
        chart=chart,
        has_ocmf=s.ocmf_record() is not None,
        has_cdr=has_cdr,
        has_certificate=s.record is None,
    )


@bp.get("/sessions/<device_id>/<session_id>/ocmf.txt")
@page("utility", "auditor")
def session_ocmf(device_id: str, session_id: str) -> Response:
    _, point, s = _session(get_db(), device_id, session_id)
    record = s.ocmf_record()
    if record is None:
        raise Problem("not-found", "session_id", f"session {session_id} has no OCMF record")
    return _download(ocmf.two_lines(record, s.public_key or point).encode(), f"ocmf-{session_id[:16]}.txt",
                     "text/plain")  # fmt: skip


@bp.get("/sessions/<device_id>/<session_id>/cdr.json")
@page("utility", "auditor")
def session_cdr(device_id: str, session_id: str) -> Response:
    attrs, point, s = _session(get_db(), device_id, session_id)
    try:
        cdr = ocpi_views.session_cdr(current_app.config, attrs, point, s)
    except ValueError as e:
        raise Problem("not-found", "session_id", str(e)) from None
    return _download(json.dumps(cdr, indent=1).encode(), f"cdr-{session_id[:16]}.json", "application/json")


def _provenance(make: Any, field: str, name: str, *args: Any) -> Response:
    """A provenance file made by make(db, signer, *args) as a download; 404 naming field."""
    try:
        data = make(get_db(), _signer(), *args)
    except LookupError as e:
        raise Problem("not-found", field, str(e)) from None
    return _download(data, name, "application/json")


@bp.get("/sessions/<device_id>/<session_id>/certificate.json")
@page("utility", "auditor")
def session_certificate(device_id: str, session_id: str) -> Response:
    return _provenance(pf.for_session, "session_id", f"session-{session_id[:16]}.json", device_id, session_id)


@bp.get("/devices/<device_id>/readings/<index:number>/certificate.json")
@page("utility", "auditor")
def reading_certificate(device_id: str, number: int) -> Response:
    return _provenance(pf.for_reading, "number", f"reading-{device_id}-{number}.json", device_id, number)


@bp.get("/devices/<device_id>/packets/<index:seq>/certificate.json")
@page("utility", "auditor")
def packet_certificate(device_id: str, seq: int) -> Response:
    return _provenance(pf.for_packet, "seq", f"packet-{device_id}-{seq}.json", device_id, seq)


def _download(data: bytes, name: str, mimetype: str) -> Response:
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- ledger (public) ----------------------------------------------------------------------


def _search(db: Any, q: str) -> int | None:
    """An entry index from a search: a number (the index), DEVICE/SEQ (a packet), or a leaf
    hash (64 hex digits)."""
    q = q.strip()
    if q.isascii() and q.isdecimal() and len(q) < 19:
        return int(q)
    if re.fullmatch(r"[0-9a-fA-F]{64}", q):
        return ledger.find_leaf(db, bytes.fromhex(q))
    device_id, _, seq = q.rpartition("/")
    if DEVICE_ID.fullmatch(device_id) and seq.isascii() and seq.isdecimal() and len(seq) < 19:
        try:
            return ingest.packet_entry(db, device_id, int(seq))
        except LookupError:
            return None
    raise Problem("bad-request", "q", "search by entry index, by DEVICE/SEQ (a packet) or by leaf hash (64 hex digits)")


@bp.get("/ledger", endpoint="ledger")
def ledger_page() -> Any:
    db = get_db()
    q = request.args.get("q", "").strip()
    not_found = None
    if q:
        index = _search(db, q)
        if index is not None and index < ledger.size(db):
            return redirect(url_for("web.ledger_entry", index=index))
        not_found = q
    cp = checkpoints.latest(db)
    size = ledger.size(db)
    # a page of entries, newest first, ending before `before` (default: the newest); pages go back to entry 0
    before = min(_int_query("before", size) or 0, size)
    recent = [ledger.entry(db, i) for i in range(max(0, before - LEDGER_PAGE), before)][::-1]
    configured = current_app.config.get("WITNESSES") or []
    return render_template(
        "ledger.html",
        q=q,
        not_found=not_found,
        checkpoint=cp,
        served=checkpoints.served(db, cp).decode() if cp else "",
        cosigned=checkpoints.cosigned_by(db, cp.size) if cp else [],
        size=size,
        recent=recent,
        before=before,
        older=recent[-1].index if recent and recent[-1].index > 0 else None,
        newer=min(size, before + LEDGER_PAGE) if before < size else None,
        configured=[w.split()[-1] for w in ([configured] if isinstance(configured, str) else configured)],
        witnesses=cosigning.known(db),
        log_key=str(_signer().verifier()),
        now=int(time.time()),
    )


def _entry_words(body: dict[str, Any]) -> list[tuple[str, str]]:
    """An entry's fields as text (byte strings as hex, long ones shortened)."""
    out = []
    for k, v in body.items():
        if isinstance(v, bytes):
            text = v.hex() if len(v) <= 40 else f"{v[:32].hex()}… ({len(v)} bytes)"
        elif isinstance(v, dict | list):
            text = json.dumps(_plain(v))[:400]
        else:
            text = str(v)
        out.append((str(k), text))
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


@bp.get("/ledger/entries/<index:index>")
def ledger_entry(index: int) -> str:
    db = get_db()
    size = ledger.size(db)
    if index >= size:
        raise Problem("not-found", "index", f"no ledger entry {index}: the ledger has {size} entries")
    e = ledger.entry(db, index)
    cp = checkpoints.covering(db, index, _signer())
    proof = ledger.inclusion_proof(db, index, cp.size)
    leaf = merkle.leaf_hash(e.raw)
    merkle.verify_inclusion(index, cp.size, leaf, proof, cp.root)  # what the page says, checked
    return render_template(
        "entry.html",
        e=e,
        fields=_entry_words(e.body),
        leaf=leaf.hex(),
        checkpoint=cp,
        proof=[h.hex() for h in proof],
        tlog_proof=checks.tlog_proof(index, proof, checkpoints.served(db, cp)),
        size=size,
    )


@bp.get("/ledger/consistency")
def ledger_consistency() -> str:
    db = get_db()
    size = ledger.size(db)
    first = _int_query("from")
    second = _int_query("to") or size
    result = None
    if first is not None:
        if not 0 < first <= second <= size:
            raise Problem("bad-request", "from", f"0 < from <= to <= {size} (the ledger's size)")
        old, new = checkpoints.at_size(db, first), checkpoints.at_size(db, second)
        proof = ledger.consistency_proof(db, first, second)
        root1, root2 = ledger.root(db, first), ledger.root(db, second)
        merkle.verify_consistency(first, second, root1, root2, proof)
        result = {"from": first, "to": second, "proof": [h.hex() for h in proof], "root1": root1.hex(),
                  "root2": root2.hex(), "signed1": old is not None, "signed2": new is not None}  # fmt: skip
    return render_template("consistency.html", size=size, first=first, second=second, result=result)


# -- verify (public) ----------------------------------------------------------------------


def _witness_keys(extra: str) -> list[note.Verifier]:
    configured = current_app.config.get("WITNESSES") or []
    texts = [w.split()[-1] for w in ([configured] if isinstance(configured, str) else configured)]
    texts += [line.strip() for line in extra.splitlines() if line.strip()]
    keys = []
    for text in texts:
        try:
            key = note.Verifier.parse(text)
        except note.NoteError as e:
            raise Problem("bad-request", "witnesses", f"{text[:60]!r}: {e}") from None
        if not key.cosigner:
            raise Problem("bad-request", "witnesses", f"{key.name} is not a witness's cosignature key")
        if key not in keys:
            keys.append(key)
    return keys


@bp.route("/verify", methods=["GET", "POST"])
def verify() -> Any:
    result, refused, name, status = None, None, None, 200
    extra = request.form.get("witnesses", "")
    if request.method == "POST":
        upload = request.files.get("certificate")
        if upload is None or not upload.filename:
            refused, status = checks.Refused("file", "choose a provenance certificate file to check"), 400
        else:
            name = upload.filename
            data = upload.read(MAX_UPLOAD + 1)
            if len(data) > MAX_UPLOAD:
                abort(413)
            keys = _witness_keys(extra)
            try:
                result = checks.verify(data, _signer().verifier(), keys, None)
            except checks.Refused as e:
                refused = e  # the check ran: its verdict is the page (200), not an error
    return render_template(
        "verify.html",
        result=result,
        refused=refused,
        name=name,
        extra=extra,
        log_key=str(_signer().verifier()),
        max_upload=MAX_UPLOAD,
    ), status
