"""`wattproof keys` (API keys for people and systems), `wattproof installers` (the installers
whose signatures enroll devices, registered by an operator) and `wattproof installer` (an
installer's own key)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import click

from wattproof.cli.options import FILE, Declared, Where, database_options, expiry, json_option, when


@click.group()
def keys() -> None:
    """API keys for people and systems."""


@keys.command()
@database_options
@click.option("--role", required=True, type=Declared("verifier.auth.ROLES"))
@click.option("--name", required=True, help="who or what uses the key")
@click.option("--installer", help="installer keys: the registered installer the key acts for")
@click.option("--account", help="account keys: the registry account the key acts for")
@click.option("--expires", help="a span (90d, 12h) or a time (ISO 8601 with Z, Unix seconds)")
def create(where: Where, role: str, name: str, installer: str | None, account: str | None,
           expires: str | None) -> int:  # fmt: skip
    """Create an API key and print its token once."""
    from verifier import auth
    from verifier.storage import transaction

    _, conn = where.existing()
    until = expiry(expires)
    try:
        with transaction(conn):
            token = auth.create_key(conn, name, role, until, installer, account)
    except ValueError as e:
        raise SystemExit(f"wattproof: {e}") from None
    print(token)
    shown = f", expires {when(until)}" if expires else ""
    print(f"# {role} key for {name}{shown}: shown once, keep it secret", file=sys.stderr)
    return 0


@keys.command("list")
@database_options
@json_option
def list_keys(where: Where, as_json: bool) -> int:
    """Every key: role, status, created, expires, last used (no secrets)."""
    from verifier import auth

    _, conn = where.existing()
    found = auth.list_keys(conn)
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'KEY ID':12}  {'ROLE':9}  {'STATUS':7}  {'CREATED':17}  {'EXPIRES':17}  {'LAST USED':17}  NAME")
    for k in found:
        who = k["name"] + (f" (installer {k['installer']})" if k["installer"] else "")
        print(
            f"{k['key_id']:12}  {k['role']:9}  {k['status']:7}  {when(k['created_at']):17}  "
            f"{when(k['expires_at']):17}  {when(k['last_used_at']):17}  {who}"
        )
    return 0


@keys.command()
@database_options
@click.argument("key_id")
def revoke(where: Where, key_id: str) -> int:
    """Revoke a key at once: KEY_ID is wp_<key id>_... or the id `keys list` shows."""
    from verifier import auth
    from verifier.storage import transaction

    _, conn = where.existing()
    key_id = key_id.split("_")[1] if key_id.startswith("wp_") else key_id
    try:
        with transaction(conn):
            auth.revoke_key(conn, key_id)
    except LookupError as e:
        raise SystemExit(f"wattproof: {e} (wattproof keys list shows them)") from None
    print(f"revoked API key {key_id}: it is refused from now on")
    return 0


@click.group()
def installers() -> None:
    """Installers whose signatures enroll devices (operators)."""


@installers.command()
@database_options
@click.option("--name", required=True, help="the installer's name, as in `installer keygen --name`")
@click.option("--public-key", help="the base64 public key `installer keygen` printed")
@click.option("--public-key-file", type=FILE, help="or the .pub file `installer keygen` wrote")
def register(where: Where, name: str, public_key: str | None, public_key_file: Path | None) -> int:
    """Register an installer's public signing key."""
    from verifier.devices import lifecycle
    from verifier.storage import transaction
    from verifier.wire.problems import Problem

    _, conn = where.existing()
    text = public_key
    if public_key_file:
        try:
            text = public_key_file.read_text().strip()
        except OSError as e:
            raise SystemExit(f"wattproof: cannot read {public_key_file}: {e.strerror}") from None
    if not text:
        raise SystemExit("wattproof: give the installer's public key: --public-key B64 or --public-key-file FILE")
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise SystemExit(
            "wattproof: the public key is not base64 (it is the line `installer keygen` printed)"
        ) from None
    try:
        with transaction(conn):
            index = lifecycle.register_installer(conn, name, key, "cli")
    except Problem as e:
        raise SystemExit(f"wattproof: {e.detail}") from None
    print(f"installer {name} registered (ledger entry {index})")
    print(f"next: wattproof keys create --role installer --installer {name} --name {name}")
    return 0


@click.group()
def installer() -> None:
    """Installer keys."""


@installer.command()
@click.option("--name", required=True, help="the installer's name")
@click.option("--out", type=FILE, required=True, help="the key file to write (PEM; its .pub beside it)")
def keygen(name: str, out: Path) -> int:
    """A new installer Ed25519 key, for an admin to register."""
    from provisioning import provision
    from provisioning.enrollment import Installer

    public_file = out.with_suffix(".pub")
    for path in (out, public_file):
        if path.exists():
            raise SystemExit(f"wattproof: {path} exists; not overwriting an installer key")
    made = Installer.generate(name)
    try:
        provision.write_installer_key(out, made)
    except OSError as e:
        raise SystemExit(f"wattproof: cannot write {out}: {e.strerror}") from None
    public = base64.b64encode(made.public_key).decode()
    public_file.write_text(public + "\n")
    print(f"installer  {name}")
    print(f"key file   {out} (keep it secret; mode 0600)")
    print(f"public key {public} (also in {public_file})")
    print(f"the operator registers it: wattproof installers register --name {name} --public-key {public}")
    return 0
