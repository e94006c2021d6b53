"""`wattproof certificate`: provenance certificates, one file an auditor checks offline with
`wattproof verify` (docs/provenance.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wattproof.cli.options import FILE, Where, database_options


@click.group()
def certificate() -> None:
    """Provenance certificates: one file an auditor checks offline with wattproof verify."""


def _write(where: Where, out: Path, make: Callable[[Any, Any], bytes]) -> int:
    from verifier import settings

    config, conn = where.existing()
    signer = settings.log_signer(config, create=False)
    try:
        data = make(conn, signer)
    except LookupError as e:
        raise SystemExit(f"wattproof: {e.args[0] if e.args else e}") from None
    out.write_bytes(data)
    print(f"{out} ({len(data):,} bytes): check it with wattproof verify {out} --log-key {signer.verifier()}")
    return 0


def _file_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return database_options(click.option("--out", type=FILE, required=True, help="the file to write")(command))


@certificate.command()
@_file_options
@click.option("--device", required=True, help="the device id")
@click.option("--number", type=int, required=True, help="the reading's number")
def reading(where: Where, out: Path, device: str, number: int) -> int:
    """A reading: --device ID --number N."""
    from verifier.provenance import build

    return _write(where, out, lambda conn, signer: build.for_reading(conn, signer, device, number))


@certificate.command()
@_file_options
@click.option("--device", required=True, help="the device id")
@click.option("--seq", type=int, required=True, help="the packet's number in the device's chain")
def packet(where: Where, out: Path, device: str, seq: int) -> int:
    """A packet: --device ID --seq N."""
    from verifier.provenance import build

    return _write(where, out, lambda conn, signer: build.for_packet(conn, signer, device, seq))


@certificate.command()
@_file_options
@click.option("--device", required=True, help="the charger's device id")
@click.option("--session", required=True, help="the session's id (hex)")
def session(where: Where, out: Path, device: str, session: str) -> int:
    """A charging session: --device ID --session HEX."""
    from verifier.provenance import build

    return _write(where, out, lambda conn, signer: build.for_session(conn, signer, device, session))


@certificate.command()
@_file_options
@click.option("--issuance", type=int, required=True, help="the ledger index of the issuance")
def granular(where: Where, out: Path, issuance: int) -> int:
    """A granular certificate: --issuance LEDGER_INDEX."""
    from verifier.provenance import build

    return _write(where, out, lambda conn, signer: build.for_certificate(conn, signer, issuance))
