"""The audit of the charging entries: third-party chargers' OCMF records (each verified with
the key the ledger enrolled, a session or a half that pairs, no register energy twice) and the
stored OCMF checks of our chargers' stops; then the ocmf_records table compared."""

from __future__ import annotations

import bisect
from typing import Any

from verifier.audit.state import Bad, Handler, Replay, Report
from verifier.charging import ocmf_chargers, sessions
from verifier.devices import identity
from verifier.storage import Connection
from verifier.wire import ocmf
from verifier.wire.problems import Problem


def record(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """A third-party charger's OCMF record: of an active OCMF charger, signed with its key,
    a session, not appended before, on register energy no earlier record counts."""
    report = r.report
    charger = str(body.get("device_id"))
    dev = r.device(charger, index)
    if dev.role != identity.OCMF_ROLE or dev.status != "active" or device_id != charger:
        raise Bad(index, "an OCMF record of a device that is not an active third-party charger")
    try:
        record = ocmf_chargers.check(body["record"], dev.key, "record", keep_identification=True)
    except Problem as e:
        raise Bad(index, f"OCMF record: {e.detail}") from None
    key = (charger, ocmf.digest(record))
    if key in report.ocmf_rows:
        raise Bad(index, "an OCMF record appended twice")
    kind, begin, end = ocmf.part(record)
    begin_idx = body.get("begin")
    if kind == ocmf.BEGIN:
        end = begin
        report.ocmf_open[index] = (charger, record)
    elif kind == ocmf.END:
        # closes the begin record it names: of the same charger, open until now, paired by
        # the rule the import applied (ocmf.pair)
        opened = report.ocmf_open.pop(begin_idx, None) if isinstance(begin_idx, int) else None
        if opened is None or opened[0] != charger:
            raise Bad(index, "an OCMF end record that names no open begin record of its charger")
        try:
            begin, end = ocmf.pair(opened[1], record)
        except ocmf.OcmfError as e:
            raise Bad(index, f"an OCMF end record that does not pair with its begin: {e}") from None
    if (kind == ocmf.END) != ("begin" in body):
        raise Bad(index, "only an OCMF end record names a begin record")
    spans = report.ocmf_spans.setdefault(charger, [])
    at = bisect.bisect_left(spans, (begin.mwh, end.mwh))
    neighbours = spans[max(0, at - 1) : at + 1]
    if end.mwh > begin.mwh and any(b < end.mwh and e > begin.mwh for b, e in neighbours):
        raise Bad(index, "an OCMF record counts register energy an earlier record counts")
    spans.insert(at, (begin.mwh, end.mwh))
    report.ocmf_rows[key] = (index, begin.ts, end.ts, begin.mwh, end.mwh, kind, begin_idx)
    report.ocmf_records += 1


def check_verdicts(db: Connection, report: Report) -> None:
    """Every stored OCMF check of a charger's stop is the one its readings and keys give."""
    stored: dict[str, list[tuple[int, bytes, bool]]] = {}
    for device_id, n, kid, verified in db.execute(
        "SELECT device_id, stop_number, key_id, verified FROM ocmf_verdicts ORDER BY device_id, stop_number"
    ).fetchall():
        stored.setdefault(str(device_id), []).append((int(n), bytes(kid), bool(verified)))
    for device_id, rows in stored.items():
        again = sessions.checked_again(db, device_id)
        for n, kid, verified in rows:
            if again.get(n) != (kid, verified):
                raise Bad(None, f"the stored OCMF check of {device_id}'s stop reading {n} is not what its readings"
                                 " and keys give")  # fmt: skip
            report.ocmf_checks += 1


HANDLERS: dict[str, Handler] = {"ocmf": record}


def compare(r: Replay) -> None:
    """The ocmf_records table as the OCMF entries leave it."""
    stored = {
        (row[0], bytes(row[1])): (*map(int, row[2:7]), str(row[7]), None if row[8] is None else int(row[8]))
        for row in r.db.execute(f"SELECT {', '.join(ocmf_chargers.ROW_COLUMNS)} FROM ocmf_records")
    }
    if stored != r.report.ocmf_rows:
        raise Bad(None, "the ocmf_records table differs from the ledger's OCMF records")
