"""Hourly matching: consumption against claimed certificates, hour by hour."""

from __future__ import annotations

from flask import abort, render_template, request

from verifier.certificates import matching, registry
from verifier.http.access import get_db
from verifier.web import bp, charts, page
from verifier.web.common import DAY, HOUR, account_scope, date_arg, date_text, day_start, first_data, latest_data
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem


@bp.get("/matching", endpoint="matching")
@page("utility", "auditor", "account")
def matching_page() -> str:
    db = get_db()
    own = account_scope()
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
    latest = latest_data(db)
    end = date_arg("to", day_start(latest) + DAY)
    start = date_arg("from", max(end - 7 * DAY, day_start(first_data(db))))
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
    days = sorted({day_start(h.start) for h in rows})
    grid: dict[int, list[float | None]] = {d: [None] * 24 for d in days}
    for h in rows:
        if h.load_wh:
            grid[day_start(h.start)][(h.start % DAY) // HOUR] = h.matched_wh / h.load_wh
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
        from_date=date_text(start),
        to_date=date_text(end),
        summary=summary,
        chart=chart,
        heat=heat,
        not_covered=summary["hours_not_covered"][:48],
    )
