"""`wattproof ledger` (the append-only ledger: audit, key, tiles) and `wattproof db` (the
database's schema: status, upgrade)."""

from __future__ import annotations

from pathlib import Path

import click

from wattproof.cli.options import FILE, Where, database_options, when


@click.group()
def ledger() -> None:
    """The append-only ledger."""


@ledger.command()
@database_options
@click.option("--witness", "witness_keys", multiple=True, metavar="VKEY",
              help="a witness's key whose stored cosignatures are checked (repeat; WITNESSES' are too)")  # fmt: skip
def audit(where: Where, witness_keys: tuple[str, ...]) -> int:
    """Re-derive every hash, signature, checkpoint and derived row from the ledger."""
    from verifier import settings
    from verifier.audit import replay
    from verifier.log import cosigning, note

    config, conn = where.existing()
    try:
        witnesses = [w.key for w in cosigning.parse_all(config["WITNESSES"])]  # type: ignore[arg-type]
        witnesses += [note.Verifier.parse(text) for text in witness_keys]
    except (ValueError, note.NoteError) as e:
        raise SystemExit(f"wattproof: a witness key: {e}") from None
    for key in witnesses:
        if not key.cosigner:
            raise SystemExit(f"wattproof: witness key {key.name} is not a cosignature/v1 key (type 0x04)")
    # The audit checks every stored checkpoint's signature itself and says which fails.
    report = replay.audit(conn, settings.log_signer(config, create=False, check_log=False).verifier(), witnesses)
    rate = report.entries / report.seconds if report.seconds else 0
    print(
        f"entries {report.entries}, packets {report.packets}, readings {report.readings}"
        f" ({report.anomalies} anomalies), "
        f"checkpoints {report.checkpoints}, certificate bundles {report.certificates} ({report.certified_wh} Wh),"
        f" registry actions {report.actions} ({report.claimed_wh} Wh claimed),"
        f" communities {len(report.community_rows.get('communities', {}))},"
        f" OCMF records {report.ocmf_records}, witness cosignatures {report.cosignatures}"
        + (f" (and {report.cosignatures_unchecked} by witnesses not named)" if report.cosignatures_unchecked else "")
        + ":"
        f" {report.seconds:.2f} s ({rate:,.0f} entries/s)"
    )
    if report.ok:
        print("audit OK: every hash, signature, checkpoint, cosignature and derived row matches the ledger")
        return 0
    at = f"entry {report.index}" if report.index is not None else "tables"
    print(f"audit FAILED at {at}: {report.problem}")
    return 1


@ledger.command()
@database_options
def key(where: Where) -> int:
    """Print the log's public key (C2SP verifier key)."""
    from verifier import settings

    config, conn = where.existing()
    conn.close()
    print(settings.log_signer(config, create=False).verifier())
    return 0


@ledger.command()
@database_options
@click.option("--out", type=FILE, required=True, help="the folder (made if missing)")
def tiles(where: Where, out: Path) -> int:
    """Write the log as static tiles (C2SP tlog-tiles) to a folder."""
    from verifier import settings
    from verifier.log import checkpoints, static_log

    config, conn = where.existing()
    latest = checkpoints.publish(conn, settings.log_signer(config, create=False))  # signs only if the log grew
    try:
        done = static_log.write(conn, out, latest, checkpoints.served(conn, latest))
    except OSError as e:
        raise SystemExit(f"wattproof: cannot write tiles under {out}: {e.strerror}") from None
    print(f"tiles of the checkpoint of size {done.size} under {out}: {done.tiles} written, {done.kept} kept")
    print(f"serve {out} as the log's prefix (checkpoint, tile/...): any static web server will do")
    return 0


@click.group()
def db() -> None:
    """The verifier database's schema: status and upgrade."""


@db.command()
@database_options
def status(where: Where) -> int:
    """Each schema migration, applied or pending (changes nothing)."""
    from verifier import storage

    _, conn = where.existing(upgrade=False)
    migrations = storage.schema(conn)
    print(f"{conn.engine} database {conn.location}")
    state = migrations.applied(conn)
    for m in migrations.MIGRATIONS:
        at = state[m.name]
        shown = "pending" if at is None else "applied" + (f" {when(at)}" if at else " (first release)")
        print(f"{m.name:28} {shown:28} {m.what}")
    waiting = sum(v is None for v in state.values())
    print(f"{waiting} pending: run `wattproof db upgrade`" if waiting else "up to date")
    return 0


@db.command()
@database_options
def upgrade(where: Where) -> int:
    """Run the pending migrations (the server also does at start). On a database that does not
    exist yet (a new SQLite file in an existing folder, an empty PostgreSQL database) it makes
    every table: a new verifier's first step (docs/operations.md)."""
    from verifier import storage

    target = str(where.config()["DATABASE"])
    if not storage.is_url(target) and not Path(target).parent.is_dir():
        raise SystemExit(f"wattproof: no folder {Path(target).parent} for the database {target}")
    try:
        conn = storage.connect(target, create=True, upgrade=False)
    except (FileNotFoundError, storage.Unavailable) as e:
        raise SystemExit(f"wattproof: {e}") from None
    ran = storage.schema(conn).upgrade(conn)
    for name in ran:
        print(f"applied {name}")
    print(f"{len(ran)} migrations applied" if ran else "up to date: nothing to do")
    return 0


@db.command()
@database_options
def rebuild(where: Where) -> int:
    """Write again the rows derived from the evidence: each device's chain head and register
    edges, from the packets' signed readings (the ledger and the packets are never touched).
    For a database whose derived rows were lost or doubted; `ledger audit` checks them after."""
    from verifier.devices import derived

    _, conn = where.existing()
    try:
        done = derived.rebuild(conn)
    finally:
        conn.close()
    print(
        f"rebuilt from {done.packets} packets ({done.readings} readings) of {done.devices} devices:"
        f" {done.devices} chain heads, {done.edges} register edges, {done.unordered} devices whose time went back"
    )
    return 0


@db.command()
@database_options
def partitions(where: Where) -> int:
    """PostgreSQL: the packets' monthly partitions, their rows and bytes (each month can be
    detached and archived: docs/operations.md); made where missing up to three months ahead."""
    from verifier.storage import migrations, tables

    _, conn = where.existing()
    try:
        if conn.engine == "sqlite":
            raise SystemExit("wattproof: a SQLite database has no partitions (PostgreSQL partitions its packets)")
        for name in migrations.keep_partitions(conn):
            print(f"made {name}")
        for name, rows, size in tables.partition_sizes(conn):
            print(f"{name:20} {rows:>12,} packets {size / 1e6:>12.1f} MB")
    finally:
        conn.close()
    return 0
