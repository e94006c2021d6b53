"""`wattproof community`: energy communities, collective self-consumption and its settlement
(docs/communities.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wattproof.cli.options import FILE, Declared, Where, a_time, database_options, json_option, when

OPERATION = "verifier.communities.operation"  # where the enumerations the options take are declared


@click.group()
def community() -> None:
    """Energy communities: collective self-consumption and its settlement (docs/communities.md)."""


def _coefficients(pairs: tuple[str, ...]) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        device, _, value = pair.partition("=")
        if not value:
            raise SystemExit(f"wattproof: --coefficient {pair}: expected DEVICE=DECIMAL")
        out[device] = value
    return out


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The settings a community takes from a step on: its first step, price, step, key."""
    for option in (
        click.option("--coefficient", "coefficients", multiple=True, help="static key: DEVICE=DECIMAL (repeat)"),
        click.option("--key", default="dynamic", show_default=True, type=Declared(f"{OPERATION}.KEYS")),
        click.option(
            "--step",
            type=Declared(f"{OPERATION}.STEPS"),
            help="seconds per step (default: 1800 before 2025, 900 since)",
        ),  # fmt: skip
        click.option("--price", default="0", show_default=True, help="price per kWh of local energy (decimal)"),
        click.option("--from", "start", required=True, help="the first step (ISO 8601 or Unix)"),
    ):
        command = option(command)
    return command


@community.command()
@database_options
@click.argument("community_id")
@_settings_options
@click.option("--name", required=True, help="the community's name")
@click.option("--grid-area", default="", help="the distribution grid area")
@click.option("--currency", default="EUR", show_default=True, help="ISO 4217")
def create(where: Where, community_id: str, start: str, price: str, step: int | None, key: str,
           coefficients: tuple[str, ...], name: str, grid_area: str, currency: str) -> int:  # fmt: skip
    """A community with its first settings (a ledger entry)."""
    from verifier.communities import operation

    first = a_time(start, "--from")
    where.entry(lambda c: operation.create(c, community_id, name, grid_area, currency, first, price,
                                           step, key, _coefficients(coefficients)))  # fmt: skip
    print(f"community {community_id} created from {when(first)}")
    return 0


@community.command()
@database_options
@click.argument("community_id")
@_settings_options
def settings(where: Where, community_id: str, start: str, price: str, step: int | None, key: str,
             coefficients: tuple[str, ...]) -> int:  # fmt: skip
    """Settings in force from a step on: step, key, price."""
    from verifier.communities import operation

    first = a_time(start, "--from")
    where.entry(lambda c: operation.change_settings(c, community_id, first, price, step,
                                                    key, _coefficients(coefficients)))  # fmt: skip
    print(f"settings of {community_id} from {when(first)}: {key} key, {price} per kWh")
    return 0


@community.command("add-member")
@database_options
@click.argument("community_id")
@click.argument("device_id")
@click.option("--from", "start", required=True, help="when the membership begins (ISO 8601 or Unix)")
@click.option("--until", help="the membership ends (exclusive)")
def add_member(where: Where, community_id: str, device_id: str, start: str, until: str | None) -> int:
    """A producer or consumer device joins."""
    from verifier.communities import operation

    first = a_time(start, "--from")
    end = None if until is None else a_time(until, "--until")
    where.entry(lambda c: operation.add_member(c, community_id, device_id, first, end))
    print(f"{device_id} is a member of {community_id} from {when(first)}")
    return 0


@community.command("end-member")
@database_options
@click.argument("community_id")
@click.argument("device_id")
@click.option("--from", "start", required=True, help="when the membership began")
@click.option("--until", required=True, help="when it ends (exclusive; = --from: never)")
def end_member(where: Where, community_id: str, device_id: str, start: str, until: str) -> int:
    """A membership ends (one community at a time)."""
    from verifier.communities import operation

    first, end = a_time(start, "--from"), a_time(until, "--until")
    where.entry(lambda c: operation.end_member(c, community_id, device_id, first, end))
    print(f"{device_id}'s membership of {community_id} from {when(first)} ends at {when(end)}")
    return 0


@community.command()
@database_options
@click.argument("community_id")
@click.argument("file", type=FILE)
def coefficients(where: Where, community_id: str, file: Path) -> int:
    """Per-step coefficients from a CSV file (Horodate;<member>...)."""
    from verifier.communities import operation

    text = file.read_text(encoding="utf-8-sig")
    steps: list[int] = []

    def upload(c: Any) -> int:
        index, count = operation.upload_coefficients(c, community_id, text)
        steps.append(count)
        return index

    where.entry(upload)
    print(f"coefficients of {steps[0]} steps recorded for {community_id}")
    return 0


@community.command("list")
@database_options
@json_option
def list_communities(where: Where, as_json: bool) -> int:
    """Every community, its settings and members (--json: JSON lines)."""
    from verifier.communities import operation

    _, conn = where.existing()
    for c in operation.list_all(conn):
        if as_json:
            print(json.dumps(c, sort_keys=True))
            continue
        latest = c["settings"][-1]
        members = ", ".join(f"{m['device_id']} ({m['role']})" for m in c["members"]) or "no members"
        minutes = latest["step_s"] // 60
        print(f"{c['community_id']}: {c['name']}, {c['grid_area']}; {latest['key']} key, {minutes}-minute"
              f" steps, {latest['price_per_kwh']} {c['currency']}/kWh; {members}")  # fmt: skip
    return 0


@community.command()
@database_options
@click.argument("community_id")
@click.option("--from", "start", required=True, help="the first step (ISO 8601 or Unix)")
@click.option("--to", "end", required=True, help="the end (exclusive)")
@click.option("--quantity", default="allocated", show_default=True,
              type=Declared(f"{OPERATION}.CSV_QUANTITIES"))  # fmt: skip
def export(where: Where, community_id: str, start: str, end: str, quantity: str) -> int:
    """One quantity per step and member as CSV (Horodate;<member>...)."""
    from verifier.communities import operation
    from verifier.devices import records

    first, last = a_time(start, "--from"), a_time(end, "--to")
    _, conn = where.existing()
    try:
        rows = operation.steps(conn, community_id, first, last)
    except (records.TooMuchWork, LookupError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    except Exception as e:  # a Problem: an unknown community
        raise SystemExit(f"wattproof: {getattr(e, 'detail', e)}") from None
    sys.stdout.write(operation.to_csv(rows, quantity))
    return 0


@community.command()
@database_options
@click.argument("community_id")
@click.option("--month", required=True, help="YYYY-MM (UTC)")
@click.option("--json", "as_json", is_flag=True, help="the statement as JSON")
def settlement(where: Where, community_id: str, month: str, as_json: bool) -> int:
    """The month's settlement statement at the community's price."""
    from verifier.communities import operation

    _, conn = where.existing()
    try:
        statement = operation.settlement(conn, community_id, month)
    except ValueError as e:
        raise SystemExit(f"wattproof: {e}") from None
    if as_json:
        print(json.dumps(statement, indent=2, sort_keys=True))
        return 0
    cur = statement["currency"]
    print(f"{community_id}, {month}: {statement['steps']} steps ({statement['steps_not_measured']} not all"
          f" measured); production {statement['production_wh']} Wh, consumption {statement['consumption_wh']} Wh,"
          f" shared locally {statement['allocated_wh']} Wh")  # fmt: skip
    for d, m in sorted(statement["consumers"].items()):
        print(f"  consumer {d}: used {m['consumption_wh']} Wh = local {m['allocated_wh']} + grid {m['grid_wh']};"
              f" owes {m['owes']} {cur}")  # fmt: skip
    for d, m in sorted(statement["producers"].items()):
        print(f"  producer {d}: made {m['production_wh']} Wh = supplied {m['supplied_wh']} + surplus"
              f" {m['surplus_wh']}; receives {m['receives']} {cur}")  # fmt: skip
    for f in statement["flows"]:
        print(
            f"  {f['consumer']} -> {f['producer']}: {f['energy_wh']} Wh at {f['price_per_kwh']} = {f['amount']} {cur}"
        )
    print(f"  total {statement['total_amount']} {cur}")
    return 0
