"""`wattproof demo`: a verifier and five virtual boards, end to end (wattproof/demo.py)."""

from __future__ import annotations

from pathlib import Path

import click

from wattproof.cli.options import FILE


@click.command()
@click.option("--hours", type=float, default=10, show_default=True, help="simulated hours to measure, up to 168")
@click.option("--speed", type=float, default=1800, show_default=True, help="simulated seconds per real second")
@click.option("--workdir", type=FILE, help="keep the database, keys and board flash here (a rerun continues)")
@click.option("--database", metavar="URL", help="a PostgreSQL database instead of SQLite: postgresql://...")
@click.option("--workers", type=int, default=1, show_default=True, help="verifier worker processes")
@click.option("--serve", is_flag=True, help="keep the verifier and its web pages up until Ctrl-C")
@click.option("--transport", type=click.Choice(["http", "mqtt"]), default="http", show_default=True,
              help="how the boards send packets: HTTP to the verifier, or MQTT through a local mosquitto")  # fmt: skip
def demo(hours: float, speed: float, workdir: Path | None, database: str | None, workers: int, serve: bool,
         transport: str) -> int:  # fmt: skip
    """A verifier and five virtual boards, end to end, then a summary."""
    from wattproof import demo as run

    if database and not database.startswith(("postgresql://", "postgres://")):
        raise SystemExit(f"wattproof: --database takes a postgresql:// URL, not {database!r}")
    if not 0 < hours <= run.MAX_HOURS:
        raise SystemExit(f"wattproof: --hours {hours:g}: from more than 0 to {run.MAX_HOURS} (a week)")
    return run.run(
        hours=hours, speed=speed, workdir=workdir, database=database, workers=workers, serve=serve, transport=transport
    )
