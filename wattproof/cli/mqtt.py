"""`wattproof mqtt`: a bridge from an MQTT broker to the verifier's ingest (verifier/mqtt/)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from wattproof.cli.options import FILE, Where, database_options


@click.command()
@database_options
@click.option("--broker", required=True, help="mqtt://host[:port] or mqtts://host[:port]")
@click.option("--user", help="the bridge's user name at the broker")
@click.option("--password-file", type=FILE, help="a file holding its password")
@click.option("--ca", type=FILE, help="mqtts: the broker's CA certificate (PEM)")
@click.option("--group", default="verifiers", show_default=True,
              help="the shared subscription's group: bridges of one group split the packets")  # fmt: skip
@click.option("--batch", type=int, default=64, show_default=True, help="packets checked and committed together")
@click.option("--client-id", default="", help="the bridge's MQTT client id (default: made up)")
def mqtt(where: Where, broker: str, user: str | None, password_file: Path | None, ca: Path | None, group: str,
         batch: int, client_id: str) -> int:  # fmt: skip
    """Take the boards' packets from an MQTT broker: the same ingest as HTTP, a receipt to each
    board after the commit (docs/operations.md)."""
    from verifier.mqtt import bridge

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    password = password_file.read_text().strip() if password_file else None
    try:
        target = bridge.Broker.parse(broker, user, password, str(ca) if ca else None)
    except ValueError as e:
        raise SystemExit(f"wattproof: --broker: {e}") from None
    running = bridge.Bridge(where.config(), target, group=group, batch=batch, client_id=client_id)
    signal.signal(signal.SIGTERM, lambda *_: running.stop())
    print(f"bridge from {broker} (group {group}) to {running.config['DATABASE']}", flush=True)
    try:
        running.run()
    except KeyboardInterrupt:
        pass
    return 0
