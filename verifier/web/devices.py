"""The devices: the list, a device's page (its chart, readings and packets) and their provenance files."""

from __future__ import annotations

import time
from typing import Any

from flask import render_template, request

from verifier.devices import lifecycle, records
from verifier.http.access import get_db
from verifier.web import bp, caller, charts, page
from verifier.web.common import DAY, HOUR, PAGE, WINDOWS, date_arg, date_text, day_start, int_query
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem


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
    span_days = 1 if span is None else (day_start(span[1]) - day_start(span[0])) // DAY + 1
    fitting = next((k for k, n in WINDOWS.items() if n >= span_days), "365")
    window = request.args.get("days", fitting)
    if window not in WINDOWS:
        raise Problem("bad-request", "days", f"one of {', '.join(WINDOWS)}")
    days = WINDOWS[window]
    end = date_arg("end", day_start(int(newest if newest is not None else time.time())) + DAY)
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
    before = int_query("before")
    return render_template(
        "device.html",
        d=d,
        window=window,
        windows=WINDOWS,
        start=start,
        end=end,
        prev_end=date_text(end - days * DAY),
        next_end=date_text(end + days * DAY),
        chart=chart,
        qualities=qualities,
        totals=totals,
        readings_allowed=readings_allowed,
        anomalies=records.anomalies(db, device_id, limit=20) if readings_allowed else [],
        packets=lifecycle.packets(db, device_id, before, 20),
        summary=lifecycle.packet_summary(db, device_id),
        history=lifecycle.history(db, device_id),
    )
