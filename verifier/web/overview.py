"""The overview: today's energy, the devices at a glance, the latest anomalies."""

from __future__ import annotations

import time
from typing import Any

from flask import render_template

from verifier.certificates import registry
from verifier.devices import lifecycle, records
from verifier.http.access import get_db
from verifier.log import checkpoints, ledger
from verifier.web import bp, page
from verifier.web.common import DAY, day_start, latest_data


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
    latest = latest_data(db)
    today = day_start(int(time.time()))
    day = today if latest >= today else day_start(latest)
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
