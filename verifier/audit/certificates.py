"""The audit of the certificates' entries: each issued bundle derived again from its hour's
readings, the accounts and device owners, every transfer, claim and withdrawal by the
registry's own rules (registry.plan), each registry-state root recomputed; then the
certificates and registry tables compared."""

from __future__ import annotations

import json
from typing import Any

from verifier.audit.state import Bad, Handler, Replay
from verifier.certificates import issuance, registry, registry_map
from verifier.wire.problems import Problem


def issuance_entry(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """An issued bundle: of an active producer, for an hour not issued before, with the next
    certificate ids, and exactly the Wh its readings support (derived again here)."""
    db, report = r.db, r.report
    fields = {k: v for k, v in body.items() if k != "kind"}
    dev = r.device(str(fields.get("device_id")), index)
    if device_id is None or device_id != fields["device_id"] or dev.role != "producer" or dev.status != "active":
        raise Bad(index, "a bundle issued for a device that is not an active producer")
    start, quantity = fields["production_starting_interval"], fields["bundle_quantity"]
    key = issuance.hour_key(device_id, start)
    if fields["issuance_id"] != key or key in report.bundles:
        raise Bad(index, f"hour {start} of {device_id} issued twice, or under another id")
    if fields["bundle_id_range_start"] != report.certified_wh + 1:
        raise Bad(index, "bundle ids do not follow the previous bundle's")
    owner = report.owners.get(device_id, (None, 0))[0]
    expected = issuance.bundle_fields(
        device_id,
        dev.attributes,
        start,
        quantity,
        report.certified_wh + 1,
        fields["issuance_date"],
        fields["issuing_body"],
        fields["expiry_date"] - fields["issuance_date"],
        owner,
    )
    if fields != expected:
        raise Bad(index, "the bundle's fields are not those its device and hour give")
    supported, why = issuance.hour_quantity(db, device_id, dev.attributes, start)
    if quantity != supported:
        raise Bad(index, f"{quantity} Wh issued for hour {start} of {device_id}; its readings support {supported}"
                   + (f" ({why})" if why else ""))  # fmt: skip
    report.bundles[key] = (fields, index)
    report.certificates += 1
    report.certified_wh += quantity
    first = fields["bundle_id_range_start"]
    report.holdings.replace(
        [],
        [
            registry.Bundle(first, first + quantity - 1, key, device_id, start, owner, registry.ACTIVE,
                            fields["expiry_date"], None, index)
        ],
    )  # fmt: skip


def action(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """A transfer, claim or withdrawal: the registry's own rules (registry.plan) applied to
    the bundles as the entries before it left them."""
    report, devs, kind = r.report, r.devs, str(body["kind"])
    fields = {k: v for k, v in body.items() if k != "kind"}
    try:
        removed, added = registry.plan(
            report.holdings.containing,
            kind,
            fields,
            index,
            lambda a: a in report.accounts,
            lambda d: devs[d].role if d in devs else None,
        )
    except (Problem, KeyError, TypeError) as e:
        raise Bad(index, f"{kind} the registry's rules refuse: {e}") from None
    report.holdings.replace(removed, added)
    report.actions += 1
    if kind == "claim":
        quantity = sum(e - s + 1 for s, e in fields["ranges"])
        report.claims[index] = (
            fields.get("holder"), fields["beneficiary"], fields.get("consumer_device"), fields["period_start"],
            fields["period_end"], quantity, fields["time"],
        )  # fmt: skip
        report.claimed_wh += quantity


def compare_registry(r: Replay) -> None:
    """The accounts, device owners, bundles and claims as the registry's entries leave them."""
    db, report = r.db, r.report
    stored_accounts = {
        a[0]: (a[1], a[2], int(a[3]), int(a[4]))
        for a in db.execute("SELECT account_id, name, kind, created_at, created_idx FROM accounts")
    }
    if stored_accounts != report.accounts:
        raise Bad(None, "accounts table differs from the ledger")
    owners = {
        o[0]: (o[1], int(o[2])) for o in db.execute("SELECT device_id, account_id, ledger_idx FROM device_accounts")
    }
    if owners != report.owners:
        raise Bad(None, "device_accounts table differs from the ledger")
    columns = ", ".join(registry.BUNDLE_COLUMNS)
    derived = report.holdings.by_start
    count = 0
    for row in db.execute(f"SELECT {columns} FROM bundles ORDER BY bundle_id_range_start"):
        stored = registry._bundle(row)
        if derived.get(stored.start) != stored:
            raise Bad(stored.ledger_idx, f"bundle {stored.start}..{stored.end} differs from the ledger")
        count += 1
    if count != len(derived):
        raise Bad(None, "a bundle the ledger leaves is missing from the bundles table")
    stored_claims = {
        int(c[0]): (c[1], c[2], c[3], int(c[4]), int(c[5]), int(c[6]), int(c[7]))
        for c in db.execute(
            "SELECT claim_id, holder, beneficiary, consumer_device, period_start, period_end, quantity, claimed_at"
            " FROM claims"
        )
    }
    if stored_claims != report.claims:
        raise Bad(None, "claims table differs from the ledger")


def account(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    if body["account_id"] in r.report.accounts or not registry.ACCOUNT_ID.fullmatch(body["account_id"]):
        raise Bad(index, f"account {body['account_id']!r} created twice, or with a malformed id")
    if body["account_kind"] not in registry.ACCOUNT_KINDS:
        raise Bad(index, "an account of an unknown kind")
    r.report.accounts[body["account_id"]] = (body["name"], body["account_kind"], body["time"], index)


def account_device(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    r.device(body["device_id"], index)
    if device_id != body["device_id"] or body["account_id"] not in r.report.accounts:
        raise Bad(index, "a device assigned to an account that does not exist")
    r.report.owners[body["device_id"]] = (body["account_id"], index)


def registry_state(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """The registry's state as committed: the root of every bundle as the entries before it
    leave them (a certificate file's status proof rests on it)."""
    leaves = [registry_map.leaf_of(b) for _, b in sorted(r.report.holdings.by_start.items())]
    if body.get("bundles") != len(leaves) or body.get("root") != registry_map.root(leaves):
        raise Bad(index, "a registry-state entry that is not the registry's state at that point of the log")
    r.report.registry_states += 1


HANDLERS: dict[str, Handler] = {
    "issuance": issuance_entry,
    "account": account,
    "account-device": account_device,
    **{kind: action for kind in registry.ACTIONS},
    registry_map.ENTRY_KIND: registry_state,
}


def compare_certificates(r: Replay) -> None:
    """The certificates table: one row per issued bundle, as its entry says."""
    db, report = r.db, r.report
    for issuance_id, raw, index, quantity, start, end in db.execute(
        "SELECT issuance_id, fields, ledger_idx, bundle_quantity, bundle_id_range_start, bundle_id_range_end"
        " FROM certificates"
    ):
        fields, entry = report.bundles.get(issuance_id, (None, None))
        kept = (json.loads(raw), int(index), int(quantity), int(start), int(end))
        if fields is None or kept != (
            fields,
            entry,
            fields["bundle_quantity"],
            fields["bundle_id_range_start"],
            fields["bundle_id_range_end"],
        ):
            raise Bad(entry, f"certificates row {issuance_id} differs from the ledger")
    if db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] != report.certificates:
        raise Bad(None, "a bundle issued in the ledger is missing from the certificates table")
