"""`wattproof certificates` (granular certificates: issue, list, transfer, claim, withdraw,
statement, match) and `wattproof accounts` (the registry's accounts), as the issuing body's
operator runs them (docs/certificates.md)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from wattproof.cli.options import Declared, Where, a_time, database_options, json_option


@click.group()
def certificates() -> None:
    """Granular certificates of renewable origin (docs/certificates.md)."""


@certificates.command()
@database_options
@click.option("--device", "devices", multiple=True, help="only this producer (repeat for several)")
@click.option("--verbose", is_flag=True, help="also each hour that was not issued, and why")
def issue(where: Where, devices: tuple[str, ...], verbose: bool) -> int:
    """Issue every complete, measured producer hour not decided yet."""
    from verifier import settings
    from verifier.certificates import issuance

    config, conn = where.existing()
    body = settings.log_signer(config, create=False).name
    issued, skipped = issuance.issue_all(
        conn, int(time.time()), body, int(str(config["CERTIFICATE_EXPIRY_S"])), device_ids=list(devices) or None
    )
    for bundle in issued:
        print(
            f"issued {bundle['issuance_id']}: {bundle['bundle_quantity']} Wh, certificates"
            f" {bundle['bundle_id_range_start']}..{bundle['bundle_id_range_end']}, ledger {bundle['ledger_index']}"
        )
    if verbose:
        for hour in skipped:
            print(f"not issued {issuance.hour_key(hour.device_id, hour.start)}: {hour.reason}")
    total = sum(b["bundle_quantity"] for b in issued)
    print(f"{len(issued)} bundles, {total} Wh issued; {len(skipped)} hours decided without a bundle")
    return 0


@certificates.command("list")
@database_options
@click.option("--device", help="only this device's bundles")
@click.option("--account", help="only bundles this account holds")
@click.option("--status", type=Declared("verifier.certificates.registry.STATUSES"))
@click.option("--from", "start", default="0", help="hours from (ISO 8601 or Unix seconds)")
@click.option("--to", "end", default="9999999999", help="hours before")
def list_bundles(where: Where, device: str | None, account: str | None, status: str | None, start: str,
                 end: str) -> int:  # fmt: skip
    """Bundles as they are now, as JSON lines."""
    from verifier.certificates import registry

    _, conn = where.existing()
    first, last = a_time(start, "--from"), a_time(end, "--to")
    cursor = None
    while True:
        page, cursor = registry.list_bundles(
            conn, first, last, cursor, 1000, device_id=device, account_id=account, status=status
        )
        for bundle in page:
            print(json.dumps(bundle, sort_keys=True))
        if cursor is None:
            return 0


def _ranges(texts: tuple[str, ...]) -> list[list[int]]:
    """--range 1-1000 (or 1..1000, or one id) as [start, end] pairs."""
    out = []
    for text in texts:
        parts = re.fullmatch(r"(\d+)(?:(?:-|\.\.)(\d+))?", text.strip())
        if parts is None:
            raise SystemExit(f"wattproof: --range {text}: expected START-END (certificate ids)")
        out.append([int(parts[1]), int(parts[2] or parts[1])])
    return out


def _action(where: Where, kind: str, body: dict[str, Any]) -> tuple[Any, int, list[Any]]:
    """Runs one registry action as the operator (admin) does; a refusal exits 1 saying why."""
    from verifier.certificates import registry

    conn, (index, named) = where.in_transaction(lambda c: registry.act(c, kind, body), f"{kind} refused")
    return conn, index, named


def _range_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--range", "ranges", multiple=True, help="certificate ids START-END (repeat for several)")(
        command
    )


@certificates.command()
@database_options
@_range_option
@click.option("--to", "to_account", required=True, help="the account that receives them")
@click.option("--from", "from_account", help="the holder (absent: the issuing body)")
def transfer(where: Where, ranges: tuple[str, ...], to_account: str, from_account: str | None) -> int:
    """Move certificate id ranges to another account (splits bundles)."""
    _, index, named = _action(
        where, "transfer", {"ranges": _ranges(ranges), "to_account": to_account, "from_account": from_account}
    )
    for b in named:
        print(f"transferred {b.start}..{b.end} ({b.quantity} Wh of {b.issuance_id}) to {b.holder}")
    print(f"{sum(b.quantity for b in named)} Wh transferred, ledger {index}")
    return 0


@certificates.command()
@database_options
@_range_option
@click.option("--beneficiary", required=True, help="the account the claim is for")
@click.option("--holder", help="the account that holds them (absent: the issuing body)")
@click.option("--consumer-device", help="the consumer device whose load they cover")
@click.option("--period-start", required=True, help="consumption period (ISO 8601 or Unix)")
@click.option("--period-end", required=True, help="its end (exclusive)")
def claim(where: Where, ranges: tuple[str, ...], beneficiary: str, holder: str | None, consumer_device: str | None,
          period_start: str, period_end: str) -> int:  # fmt: skip
    """Cancel id ranges for a beneficiary and a consumption period."""
    from verifier.certificates import registry

    body = {
        "ranges": _ranges(ranges),
        "beneficiary": beneficiary,
        "holder": holder,
        "consumer_device": consumer_device,
        "period_start": a_time(period_start, "--period-start"),
        "period_end": a_time(period_end, "--period-end"),
    }
    conn, index, _ = _action(where, "claim", body)
    print(json.dumps(registry.statement(conn, index), indent=2, sort_keys=True))
    return 0


@certificates.command()
@database_options
@_range_option
@click.option("--issuance", help="or every active bundle of this issuance (device/hour)")
@click.option("--reason", required=True, help="why, for the ledger entry")
def withdraw(where: Where, ranges: tuple[str, ...], issuance: str | None, reason: str) -> int:
    """Take back active or expired certificates (the issuing body)."""
    from verifier.certificates import registry

    pairs = _ranges(ranges)
    if bool(pairs) == bool(issuance):
        raise SystemExit("wattproof: name --range or --issuance (one of them)")
    if issuance:
        _, conn = where.existing()
        pairs = registry.issuance_ranges(conn, issuance)
        conn.close()
        if not pairs:
            raise SystemExit(f"wattproof: no active bundle of issuance {issuance}")
    _, index, named = _action(where, "withdraw", {"ranges": pairs, "reason": reason})
    print(f"{sum(b.quantity for b in named)} Wh withdrawn, ledger {index}")
    return 0


@certificates.command()
@database_options
@click.argument("claim_id", type=int, required=False)
@click.option("--beneficiary", help="without a claim id: only this beneficiary's claims")
def statement(where: Where, claim_id: int | None, beneficiary: str | None) -> int:
    """A claim's cancellation statement, or every claim as JSON lines."""
    from verifier.certificates import registry

    _, conn = where.existing()
    if claim_id is None:
        cursor = None
        while True:
            page, cursor = registry.claims(conn, beneficiary, cursor, 1000)
            for found in page:
                print(json.dumps(found, sort_keys=True))
            if cursor is None:
                return 0
    try:
        print(json.dumps(registry.statement(conn, claim_id), indent=2, sort_keys=True))
    except LookupError as e:
        raise SystemExit(f"wattproof: {e}") from None
    return 0


@certificates.command()
@database_options
@click.option("--device", help="a consumer device: the claims that name it")
@click.option("--account", help="or an account: its consumers' load, its claims as beneficiary")
@click.option("--all", "every", is_flag=True, help="or every consumer: a JSON line each")
@click.option("--from", "start", required=True, help="ISO 8601 or Unix seconds")
@click.option("--to", "end", required=True, help="ISO 8601 or Unix seconds")
@click.option("--jobs", type=int, default=1, show_default=True, help="--all: processes sharing the consumers")
@click.option("--csv", "as_csv", is_flag=True, help="hour by hour as CSV")
@click.option("--json", "as_json", is_flag=True, help="summary and hours as JSON")
def match(where: Where, device: str | None, account: str | None, every: bool, start: str, end: str, jobs: int,
          as_csv: bool, as_json: bool) -> int:  # fmt: skip
    """Hourly matching of a consumer device or account (docs/certificates.md)."""
    from verifier.certificates import matching

    if (device is not None) + (account is not None) + every != 1:
        raise SystemExit("wattproof: name --device, --account or --all (one of them)")
    first, last = a_time(start, "--from"), a_time(end, "--to")
    config, conn = where.existing()
    if every:  # every consumer, one JSON line each, computed by --jobs processes
        devices = matching.consumer_devices(conn)
        conn.close()
        for found, total in matching.summaries(str(config["DATABASE"]), devices, first, last, jobs):
            print(json.dumps({"device_id": found, **total}, sort_keys=True))
        return 0
    try:
        rows = matching.hours(conn, first, last, device_id=device, account_id=account)
    except (LookupError, ValueError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    if as_csv:
        sys.stdout.write(matching.to_csv(rows))
        return 0
    total = matching.summary(rows)
    if as_json:
        print(json.dumps({"summary": total, "hours": [matching.hour_json(h) for h in rows]}, indent=2))
        return 0
    percent = "{:.1%}".format
    hourly = "-" if total["hourly_match"] is None else percent(total["hourly_match"])
    volume = "-" if total["volume_match"] is None else percent(total["volume_match"])
    print(
        f"load {total['load_wh']} Wh, certificates claimed {total['claimed_wh']} Wh, matched {total['matched_wh']} Wh"
        f" over {total['hours']} hours: hourly match {hourly} (annual-volume match {volume});"
        f" {len(total['hours_not_covered'])} hours not covered"
    )
    return 0


@click.group()
def accounts() -> None:
    """Registry accounts that hold certificates (docs/certificates.md)."""


@accounts.command()
@database_options
@click.argument("account_id")
@click.option("--name", required=True, help="the holder's name")
@click.option("--kind", required=True, type=Declared("verifier.certificates.registry.ACCOUNT_KINDS"))
def create(where: Where, account_id: str, name: str, kind: str) -> int:
    """A new account (a ledger entry); its id is [a-z0-9][a-z0-9._-]{0,63}."""
    from verifier.certificates import registry

    index = where.entry(lambda c: registry.create_account(c, account_id, name, kind))
    print(f"account {account_id} ({kind}) created, ledger {index}")
    return 0


@accounts.command()
@database_options
@click.argument("account_id")
@click.argument("device_id")
def assign(where: Where, account_id: str, device_id: str) -> int:
    """The account owns this device from now on."""
    from verifier.certificates import registry

    index = where.entry(lambda c: registry.assign_device(c, account_id, device_id))
    print(f"{device_id} now belongs to {account_id}: its next hours are issued to it (ledger {index})")
    return 0


@accounts.command("list")
@database_options
@json_option
def list_accounts(where: Where, as_json: bool) -> int:
    """Every account with its devices and balances."""
    from verifier.certificates import registry

    _, conn = where.existing()
    rows = registry.accounts(conn)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'account':<20} {'kind':<10} {'active Wh':>10} {'claimed Wh':>11} {'withdrawn':>10} {'expired':>8}  devices"
    )
    for a in rows:
        b = a["balance_wh"]
        print(
            f"{a['account_id']:<20} {a['kind']:<10} {b['active']:>10} {b['claimed']:>11} {b['withdrawn']:>10}"
            f" {b['expired']:>8}  {', '.join(a['devices']) or '-'}"
        )
    return 0
