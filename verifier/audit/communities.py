"""The audit of the communities' entries: creation, settings, members and their ends,
coefficients, each valid by the rules the live path applies (communities/operation.py) and
its rows as operation.entry_rows makes them; then the communities' tables compared."""

from __future__ import annotations

from typing import Any

from verifier.audit.state import Bad, Handler, Replay
from verifier.communities import operation
from verifier.wire.problems import Problem


def entry(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """A community's creation, settings, member or coefficients: valid by the rules the
    verifier applied (communities/operation.py), its rows as operation.entry_rows makes them."""
    kind = str(body["kind"])
    fields = {k: v for k, v in body.items() if k != "kind"}
    tables = r.report.community_rows
    for name in operation.TABLES:
        tables.setdefault(name, {})
    exists = (fields.get("community_id"),) in tables["communities"]
    try:
        if kind == "community":
            if exists or not operation.COMMUNITY_ID.fullmatch(fields["community_id"]):
                raise Bad(index, f"community {fields['community_id']!r} created twice, or with a malformed id")
        elif not exists:
            raise Bad(index, f"{kind} of a community that does not exist")
        elif kind == "community-settings":
            again = operation._settings_fields(
                fields["community_id"], fields["from"], fields["step_s"], fields["key"], fields.get("coefficients"),
                fields["price_per_kwh"],
            )  # fmt: skip
            if again != fields:
                raise Bad(index, "community settings not as the verifier records them")
        elif kind == "community-member":
            dev = r.device(fields["device_id"], index)
            if dev.role not in ("producer", "consumer", "charger") or operation.member_role(dev.role) != fields["role"]:
                raise Bad(index, "a community member whose role is not its device's")
            # the live path's rule (operation.check_one_community) within this community; a
            # ledger written before the rule may overlap across communities (_compare_communities)
            same = [
                (c, start, row[4])
                for (c, d, start), row in tables["community_members"].items()
                if (c, d) == (fields["community_id"], fields["device_id"])
            ]
            operation.check_one_community(
                same, fields["community_id"], fields["device_id"], (fields["from"], fields.get("until"))
            )
        elif kind == "community-member-end":
            ended = tables["community_members"].get(
                (fields["community_id"], fields["device_id"], operation._bounded(fields["from"]))
            )
            if ended is None or ended[3] != fields["role"]:
                raise Bad(index, "the end of a membership that does not exist")
            operation.check_end(int(ended[2]), ended[4], int(fields["until"]))
        rows = operation.entry_rows(kind, fields, index)
    except (Problem, KeyError, TypeError) as e:
        raise Bad(index, f"{kind} the community rules refuse: {e}") from None
    for table, new in rows.items():
        width = len(operation.TABLES[table][0])
        if table == "community_coefficients":
            steps = {(r[0], r[1]) for r in new}
            for key in [k for k in tables[table] if k[:2] in steps]:
                del tables[table][key]
        for row in new:
            tables[table][tuple(row[:width])] = tuple(row)


def compare(r: Replay) -> None:
    """The communities' tables as their entries leave them, with no device in two at once."""
    db, report = r.db, r.report
    # One community at a time: the memberships as the entries leave them never share time
    # across communities (a ledger written before the rule may: named until one is ended).
    members = report.community_rows.get("community_members", {})
    found = operation.overlaps((row[0], row[1], int(row[2]), row[4]) for row in members.values())
    if found:
        raise Bad(None, operation.overlap_text(found[0]) + (f" (and {len(found) - 1} more)" if found[1:] else ""))
    for table, (keys, values) in operation.TABLES.items():
        derived = report.community_rows.get(table, {})
        stored = {}
        for row in db.execute(f"SELECT {', '.join((*keys, *values))} FROM {table}"):
            stored[tuple(row[: len(keys)])] = tuple(row)
        if stored != derived:
            raise Bad(None, f"{table} table differs from the ledger")


HANDLERS: dict[str, Handler] = {kind: entry for kind in operation.ENTRY_KINDS}
