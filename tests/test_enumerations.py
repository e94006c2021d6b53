"""Enumerations exist once, in their areas: API key roles and statuses, account kinds,
bundle statuses, device roles and statuses, reading qualities, intervals, community steps,
keys and CSV quantities. The OpenAPI document and the command line read them from there:
every enum in the document that shares a value with one of them is that one exactly (a copy
that drifted fails), and the CLI's choices are the same objects' values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tests.conftest import Database
from verifier import auth
from verifier.app import create_app
from verifier.certificates import registry
from verifier.charging import sessions
from verifier.communities import operation
from verifier.devices import identity, lifecycle, records
from verifier.http import openapi
from wattproof import cli

DECLARED: dict[str, tuple[Any, ...]] = {
    "API key roles": tuple(auth.ROLES),
    "API key statuses": tuple(auth.KEY_STATUSES),
    "account kinds": tuple(registry.ACCOUNT_KINDS),
    "bundle statuses": tuple(registry.STATUSES),
    "device roles": (*identity.ROLES, identity.OCMF_ROLE),
    "board device roles": tuple(identity.ROLES),
    "device statuses": tuple(lifecycle.STATUSES),
    "time qualities": tuple(records.QUALITIES.values()),
    "energy qualities": tuple(records.QUALITY_RANK),
    "intervals": tuple(records.INTERVALS),
    "community steps": tuple(operation.STEPS),
    "allocation keys": tuple(operation.KEYS),
    "CSV quantities": tuple(operation.CSV_QUANTITIES),
    "session states": tuple(sessions.STATES),
}


def _enums(node: Any) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        found = [tuple(node["enum"])] if isinstance(node.get("enum"), list) else []
        return found + [e for v in node.values() for e in _enums(v)]
    if isinstance(node, list):
        return [e for v in node for e in _enums(v)]
    return []


def test_the_documents_enums_are_the_declared_ones(tmp_path: Path) -> None:
    app = create_app(Database("sqlite", str(tmp_path / "v.sqlite"), tmp_path / "log.key").config())
    values = {v for declared in DECLARED.values() for v in declared}
    by_value = {declared: name for name, declared in DECLARED.items()}
    seen = set()
    for enum in _enums(openapi.document(app)):
        if set(enum) & values:
            assert enum in by_value, f"{enum} copies an enumeration its area declares: read it from there"
            seen.add(by_value[enum])
    # the comparison sees them: each of these is an enum of the document
    assert {"API key roles", "account kinds", "bundle statuses", "intervals", "allocation keys"} <= seen, seen


def _choices(path: list[str], option: str) -> tuple[Any, ...]:
    command: click.Command = cli.cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    param = next(p for p in command.params if option in p.opts)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def test_the_command_line_offers_the_declared_ones() -> None:
    assert _choices(["keys", "create"], "--role") == DECLARED["API key roles"]
    assert _choices(["accounts", "create"], "--kind") == DECLARED["account kinds"]
    assert _choices(["certificates", "list"], "--status") == DECLARED["bundle statuses"]
    assert _choices(["provision"], "--role") == tuple(identity.ROLES)
    assert _choices(["community", "export"], "--quantity") == DECLARED["CSV quantities"]
    assert _choices(["community", "create"], "--step") == tuple(operation.STEPS)
    assert _choices(["community", "settings"], "--key") == tuple(operation.KEYS)
