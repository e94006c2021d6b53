"""Energy communities: the list, a community's steps, its month's settlement, the CSV."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, render_template, request

from verifier.communities import operation
from verifier.http.access import get_db
from verifier.log import ledger
from verifier.web import bp, charts, page
from verifier.web.common import DAY, date_arg, date_text, day_start, download, latest_data
from verifier.wire import times
from verifier.wire.problems import Problem


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
    latest = latest_data(db)
    month = _month_arg(latest)
    try:
        start, end = operation.month_span(month)
    except ValueError as e:
        raise Problem("bad-request", "month", str(e)) from None
    day = date_arg("day", day_start(min(latest, end - 1)))
    steps = operation.steps(db, community_id, day, day + DAY)
    series = [
        charts.Series("local", [sum(s.allocated.values()) for s in steps], "gen"),
        charts.Series("grid", [sum(s.consumption.values()) - sum(s.allocated.values()) for s in steps], "use"),
    ]
    surplus = charts.Series("producers' surplus", [sum(s.surplus.values()) for s in steps], "claimed")
    step_s = steps[0].step_s if steps else 900
    chart = charts.bars(f"Consumption per step on {date_text(day)}: local and from the grid", [s.start for s in steps],
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
        day_text=date_text(day),
        chart=chart,
        per_member=per_member,
        prev_day=date_text(day - DAY),
        next_day=date_text(day + DAY),
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
        month = _month_arg(latest_data(db))
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
    month = _month_arg(latest_data(db))
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
    return download(operation.to_csv(rows, quantity).encode(), f"{community_id}-{month}-{quantity}.csv", "text/csv")
