"""`wattproof`: one command line for every job, on click (Flask's own CLI library). The group
is here; each command group lives in a module of its own in this package, and what several
share (where the database is, times, keys' expiry) is declared once in options.py. Commands
import the verifier, the boards' tools or the server only when they run, so that `wattproof
verify` works where only the auditor's part is installed (docs/provenance.md)."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Sequence

import click

from wattproof.cli import boards, certificates, communities, demo, keys, ledger, mqtt, provenance, serve, witness
from wattproof.verify import verify


class PipeClosed(Exception):
    """The reader of stdout left (`wattproof ... | head`)."""


class Wattproof(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:  # not click's to answer: it would exit 1 and say nothing
            raise PipeClosed from e


@click.group(cls=Wattproof, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """Trusted energy data from small devices: the verifier, its ledger and what it derives
    (certificates, communities, charging), the boards and an auditor's offline check."""


for command in (
    serve.serve,
    mqtt.mqtt,
    demo.demo,
    ledger.ledger,
    ledger.db,
    certificates.certificates,
    certificates.accounts,
    communities.community,
    keys.keys,
    keys.installers,
    keys.installer,
    boards.sim,
    boards.provision,
    boards.field_board,
    provenance.certificate,
    witness.witness,
    verify,
):
    cli.add_command(command)

SERVER_MODULES = {"flask", "werkzeug", "waitress", "psycopg", "mpremote", "serial", "pymodbus", "segno", "defusedxml",
                  "paho", "pydantic"}  # fmt: skip


def _quiet_stdout() -> None:
    """After a broken pipe, what is still buffered for stdout goes nowhere (Python's docs'
    recipe): no second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        pass


def _said_by_us(e: Exception) -> bool:
    """A refusal of the boards' tools or of the settings: said in a line, exit 2."""
    try:
        from hardware.sim import SimError
        from verifier.settings import SettingsError
    except ImportError:
        return False
    return isinstance(e, SimError | SettingsError)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args, prog_name="wattproof", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        return 130
    except (PipeClosed, BrokenPipeError):  # `wattproof ... | head`: the reader left; say nothing more
        _quiet_stdout()
        return 141
    except ModuleNotFoundError as e:
        if e.name not in SERVER_MODULES:
            raise
        print(f"wattproof: this command needs the server extra ({e.name} is not installed):"
              " pip install 'wattproof[server]'", file=sys.stderr)  # fmt: skip
        return 2
    except sqlite3.DatabaseError as e:
        where = _option(args, "--db") or os.environ.get("WATTPROOF_DATABASE") or "the database"
        print(
            f"wattproof: {where} cannot be used as the verifier's database ({e}): check the path"
            " (a file, not a folder; readable and writable by this user)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if not _said_by_us(e):
            raise
        print(f"wattproof: {e}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def _option(args: list[str], name: str) -> str | None:
    for n, arg in enumerate(args):
        if arg == name and n + 1 < len(args):
            return args[n + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
