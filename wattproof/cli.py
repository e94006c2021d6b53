"""`wattproof`: serve, demo and sim subcommands (docs list an example for each)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verifier.wire import times


def _serve(args: argparse.Namespace) -> int:
    from verifier.app import create_app
    from verifier.http import server

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    config = _verifier_config(args)  # the settings, read once: the app takes them whole
    _database_folder_exists(config)
    app = create_app(loaded=config)
    listener = _listen(args.host, args.port)
    # The first line names the real port (useful with --port 0).
    print(f"verifier listening on http://{args.host}:{listener.getsockname()[1]}", flush=True)
    server.serve(app, listener, args.threads, args.workers)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port))
    except OSError as e:
        raise SystemExit(f"wattproof: cannot listen on {host}:{port}: {e.strerror}") from None


def _database_folder_exists(config: dict[str, object]) -> None:
    if str(config["DATABASE"]).startswith(("postgresql://", "postgres://")):
        return
    folder = Path(str(config["DATABASE"])).parent
    if not folder.is_dir():
        raise SystemExit(f"wattproof: the folder {folder} does not exist; create it first (mkdir -p {folder})")


def _verifier_config(args: argparse.Namespace) -> dict[str, object]:
    """Settings as the server reads them (verifier.settings.load), with --config and --db on top."""
    from verifier import settings

    url = getattr(args, "database", None)
    if url and args.db:
        raise SystemExit("wattproof: give --db FILE (SQLite) or --database postgresql://... (PostgreSQL), not both")
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise SystemExit(f"wattproof: --database takes a postgresql:// URL, not {url!r} (a SQLite file is --db FILE)")
    overrides = {"DATABASE": url or (str(args.db) if args.db else None)}
    if getattr(args, "log_key", None):
        overrides["LOG_KEY_FILE"] = str(args.log_key)
    config = settings.load(getattr(args, "config", None), overrides)
    if not config["DATABASE"]:
        raise SystemExit(
            "wattproof: say which database: --db FILE or --database postgresql://... (or DATABASE in --config FILE,"
            " or WATTPROOF_DATABASE)"
        )
    return config


def _existing_database(args: argparse.Namespace, upgrade: bool = True) -> tuple[dict[str, object], Any]:
    """For commands that only read or add to an existing verifier: its settings and a connection.
    A mistyped path is an error, never a new empty database."""
    from verifier import storage

    config = _verifier_config(args)
    target = str(config["DATABASE"])
    if storage.is_url(target):
        try:
            return config, storage.connect(target, create=False, upgrade=upgrade)
        except (FileNotFoundError, storage.Unavailable) as e:
            raise SystemExit(f"wattproof: {e}") from None
    path = Path(target)
    if not path.is_file():
        raise SystemExit(
            f"wattproof: no database at {path} (check the path; `wattproof serve --db {path}` creates one)"
        )
    return config, storage.connect(path, create=False, upgrade=upgrade)


def _db_status(args: argparse.Namespace) -> int:
    from verifier import storage

    _, conn = _existing_database(args, upgrade=False)
    migrations = storage.schema(conn)
    print(f"{conn.engine} database {conn.location}")
    state = migrations.applied(conn)
    for m in migrations.MIGRATIONS:
        when = state[m.name]
        shown = "pending" if when is None else "applied" + (f" {_when(when)}" if when else " (first release)")
        print(f"{m.name:28} {shown:28} {m.what}")
    waiting = sum(v is None for v in state.values())
    print(f"{waiting} pending: run `wattproof db upgrade`" if waiting else "up to date")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    """Runs the pending migrations; on a database that does not exist yet (a new SQLite file in
    an existing folder, an empty PostgreSQL database) it makes every table: a new verifier's
    first step, as docs/operations.md says."""
    from verifier import storage

    config = _verifier_config(args)
    target = str(config["DATABASE"])
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


def _ledger_key(args: argparse.Namespace) -> int:
    from verifier import settings

    config, conn = _existing_database(args)
    conn.close()
    print(settings.log_signer(config, create=False).verifier())
    return 0


def _ledger_audit(args: argparse.Namespace) -> int:
    from verifier import settings
    from verifier.audit import replay
    from verifier.log import cosigning, note

    config, conn = _existing_database(args)
    try:
        witnesses = [w.key for w in cosigning.parse_all(config["WITNESSES"])]  # type: ignore[arg-type]
        witnesses += [note.Verifier.parse(text) for text in args.witness]
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
    where = f"entry {report.index}" if report.index is not None else "tables"
    print(f"audit FAILED at {where}: {report.problem}")
    return 1


def _ledger_tiles(args: argparse.Namespace) -> int:
    from verifier import settings
    from verifier.log import checkpoints, static_log

    config, conn = _existing_database(args)
    latest = checkpoints.publish(conn, settings.log_signer(config, create=False))  # signs only if the log grew
    try:
        done = static_log.write(conn, args.out, latest, checkpoints.served(conn, latest))
    except OSError as e:
        raise SystemExit(f"wattproof: cannot write tiles under {args.out}: {e.strerror}") from None
    print(f"tiles of the checkpoint of size {done.size} under {args.out}: {done.tiles} written, {done.kept} kept")
    print(f"serve {args.out} as the log's prefix (checkpoint, tile/...): any static web server will do")
    return 0


def _certificate_of(args: argparse.Namespace) -> int:
    from verifier import settings
    from verifier.provenance import build as pf

    config, conn = _existing_database(args)
    signer = settings.log_signer(config, create=False)
    kind = args.certificate_command
    try:
        if kind == "reading":
            data = pf.for_reading(conn, signer, args.device, args.number)
        elif kind == "packet":
            data = pf.for_packet(conn, signer, args.device, args.seq)
        elif kind == "session":
            data = pf.for_session(conn, signer, args.device, args.session)
        else:
            data = pf.for_certificate(conn, signer, args.issuance)
    except LookupError as e:
        raise SystemExit(f"wattproof: {e.args[0] if e.args else e}") from None
    args.out.write_bytes(data)
    print(f"{args.out} ({len(data):,} bytes): check it with wattproof verify {args.out} --log-key {signer.verifier()}")
    return 0


def _witness_keygen(args: argparse.Namespace) -> int:
    from verifier.log import note

    if args.out.exists():
        raise SystemExit(f"wattproof: {args.out} exists; not overwriting a witness key")
    try:
        signer = note.Signer.generate(args.name, note.ALG_COSIGNATURE_V1)
    except note.NoteError as e:
        raise SystemExit(f"wattproof: {e}") from None
    args.out.touch(mode=0o600)
    args.out.write_text(str(signer) + "\n")
    print(signer.verifier())
    return 0


def _witness_serve(args: argparse.Namespace) -> int:
    from verifier.http import server
    from verifier.http.witness import create_witness_app
    from verifier.log import note

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    try:
        signer = note.Signer.parse(args.key.read_text().strip())
        logs: dict[str, list[note.Verifier]] = {}
        for text in args.log:
            v = note.Verifier.parse(text)
            logs.setdefault(v.name, []).append(v)
    except OSError as e:
        raise SystemExit(f"wattproof: cannot read the witness key {args.key}: {e.strerror}") from None
    except note.NoteError as e:
        raise SystemExit(f"wattproof: {e}") from None
    if signer.alg != note.ALG_COSIGNATURE_V1:
        raise SystemExit("wattproof: the witness key is not a cosignature/v1 key (make one: wattproof witness keygen)")
    app = create_witness_app(args.state, signer, logs)
    listener = _listen(args.host, args.port)
    print(f"witness {signer.verifier()} listening on http://{args.host}:{listener.getsockname()[1]}", flush=True)
    server.serve(app, listener, args.threads)
    return 0


def _certificates_issue(args: argparse.Namespace) -> int:
    import time

    from verifier import settings
    from verifier.certificates import issuance

    config, conn = _existing_database(args)
    body = settings.log_signer(config, create=False).name
    issued, skipped = issuance.issue_all(
        conn, int(time.time()), body, int(str(config["CERTIFICATE_EXPIRY_S"])), device_ids=args.device
    )
    for bundle in issued:
        print(
            f"issued {bundle['issuance_id']}: {bundle['bundle_quantity']} Wh, certificates"
            f" {bundle['bundle_id_range_start']}..{bundle['bundle_id_range_end']}, ledger {bundle['ledger_index']}"
        )
    if args.verbose:
        for hour in skipped:
            print(f"not issued {issuance.hour_key(hour.device_id, hour.start)}: {hour.reason}")
    total = sum(b["bundle_quantity"] for b in issued)
    print(f"{len(issued)} bundles, {total} Wh issued; {len(skipped)} hours decided without a bundle")
    return 0


def _certificates_list(args: argparse.Namespace) -> int:
    import json

    from verifier.certificates import registry
    from verifier.http import parse_time

    _, conn = _existing_database(args)
    try:
        start, end = parse_time(args.start), parse_time(args.end)
    except ValueError as e:
        raise SystemExit(f"wattproof: --from/--to: {e}") from None
    cursor = None
    while True:
        page, cursor = registry.list_bundles(
            conn, start, end, cursor, 1000, device_id=args.device, account_id=args.account, status=args.status
        )
        for bundle in page:
            print(json.dumps(bundle, sort_keys=True))
        if cursor is None:
            return 0


def _registry_action(args: argparse.Namespace, kind: str, body: dict[str, Any]) -> tuple[Any, int, list[Any]]:
    """Runs one registry action as the operator (admin) does; a refusal exits 1 saying why."""
    from verifier.certificates import registry

    conn, (index, named) = _in_transaction(args, lambda c: registry.act(c, kind, body), f"{kind} refused")
    return conn, index, named


def _ranges(texts: list[str] | None) -> list[list[int]]:
    """--range 1-1000 (or 1..1000, or one id) as [start, end] pairs."""
    out = []
    for text in texts or []:
        parts = re.fullmatch(r"(\d+)(?:(?:-|\.\.)(\d+))?", text.strip())
        if parts is None:
            raise SystemExit(f"wattproof: --range {text}: expected START-END (certificate ids)")
        out.append([int(parts[1]), int(parts[2] or parts[1])])
    return out


def _certificates_transfer(args: argparse.Namespace) -> int:
    conn, index, named = _registry_action(
        args, "transfer", {"ranges": _ranges(args.range), "to_account": args.to, "from_account": args.from_account}
    )
    for b in named:
        print(f"transferred {b.start}..{b.end} ({b.quantity} Wh of {b.issuance_id}) to {b.holder}")
    print(f"{sum(b.quantity for b in named)} Wh transferred, ledger {index}")
    return 0


def _certificates_claim(args: argparse.Namespace) -> int:
    import json

    from verifier.certificates import registry
    from verifier.http import parse_time

    try:
        period = parse_time(args.period_start), parse_time(args.period_end)
    except ValueError as e:
        raise SystemExit(f"wattproof: --period-start/--period-end: {e}") from None
    body = {
        "ranges": _ranges(args.range),
        "beneficiary": args.beneficiary,
        "holder": args.holder,
        "consumer_device": args.consumer_device,
        "period_start": period[0],
        "period_end": period[1],
    }
    conn, index, _ = _registry_action(args, "claim", body)
    print(json.dumps(registry.statement(conn, index), indent=2, sort_keys=True))
    return 0


def _certificates_withdraw(args: argparse.Namespace) -> int:
    from verifier.certificates import registry

    ranges = _ranges(args.range)
    if bool(ranges) == bool(args.issuance):
        raise SystemExit("wattproof: name --range or --issuance (one of them)")
    if args.issuance:
        _, conn = _existing_database(args)
        ranges = registry.issuance_ranges(conn, args.issuance)
        conn.close()
        if not ranges:
            raise SystemExit(f"wattproof: no active bundle of issuance {args.issuance}")
    _, index, named = _registry_action(args, "withdraw", {"ranges": ranges, "reason": args.reason})
    print(f"{sum(b.quantity for b in named)} Wh withdrawn, ledger {index}")
    return 0


def _certificates_statement(args: argparse.Namespace) -> int:
    import json

    from verifier.certificates import registry

    _, conn = _existing_database(args)
    if args.claim_id is None:
        cursor = None
        while True:
            page, cursor = registry.claims(conn, args.beneficiary, cursor, 1000)
            for claim in page:
                print(json.dumps(claim, sort_keys=True))
            if cursor is None:
                return 0
    try:
        print(json.dumps(registry.statement(conn, args.claim_id), indent=2, sort_keys=True))
    except LookupError as e:
        raise SystemExit(f"wattproof: {e}") from None
    return 0


def _in_transaction(args: argparse.Namespace, make: Any, refused: str = "") -> tuple[Any, Any]:
    """make(conn) in one write transaction on the existing database: (conn, its result); a
    refusal (a Problem) exits 1 saying why."""
    from verifier.storage import transaction
    from verifier.wire.problems import Problem

    _, conn = _existing_database(args)
    try:
        with transaction(conn):
            return conn, make(conn)
    except Problem as e:
        why = f"{refused} ({e.kind}): " if refused else ""
        raise SystemExit(f"wattproof: {why}{e.field}: {e.detail}") from None


def _registry_entry(args: argparse.Namespace, make: Any) -> int:
    """make(conn) in one write transaction: the new entry's ledger index; a refusal exits 1."""
    return int(_in_transaction(args, make)[1])


def _certificates_match(args: argparse.Namespace) -> int:
    import json

    from verifier.certificates import matching
    from verifier.http import parse_time

    if (args.device is not None) + (args.account is not None) + args.all != 1:
        raise SystemExit("wattproof: name --device, --account or --all (one of them)")
    try:
        start, end = parse_time(args.start), parse_time(args.end)
    except ValueError as e:
        raise SystemExit(f"wattproof: --from/--to: {e}") from None
    config, conn = _existing_database(args)
    if args.all:  # every consumer, one JSON line each, computed by --jobs processes
        devices = matching.consumer_devices(conn)
        conn.close()
        for device, total in matching.summaries(str(config["DATABASE"]), devices, start, end, args.jobs):
            print(json.dumps({"device_id": device, **total}, sort_keys=True))
        return 0
    try:
        rows = matching.hours(conn, start, end, device_id=args.device, account_id=args.account)
    except (LookupError, ValueError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    if args.csv:
        sys.stdout.write(matching.to_csv(rows))
        return 0
    total = matching.summary(rows)
    if args.json:
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


def _community_time(text: str | None, what: str) -> int | None:
    from verifier.devices.records import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise SystemExit(f"wattproof: {what} {text}: {e}") from None


def _coefficients(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        device, _, value = pair.partition("=")
        if not value:
            raise SystemExit(f"wattproof: --coefficient {pair}: expected DEVICE=DECIMAL")
        out[device] = value
    return out


def _community_create(args: argparse.Namespace) -> int:
    from verifier.communities import operation

    start = _community_time(args.start, "--from")
    assert start is not None
    _registry_entry(
        args,
        lambda c: operation.create(
            c, args.community_id, args.name, args.grid_area, args.currency, start, args.price, args.step, args.key,
            _coefficients(args.coefficient),
        ),
    )  # fmt: skip
    print(f"community {args.community_id} created from {_when(start)}")
    return 0


def _community_settings(args: argparse.Namespace) -> int:
    from verifier.communities import operation

    start = _community_time(args.start, "--from")
    assert start is not None
    _registry_entry(
        args,
        lambda c: operation.change_settings(
            c, args.community_id, start, args.price, args.step, args.key, _coefficients(args.coefficient)
        ),
    )
    print(f"settings of {args.community_id} from {_when(start)}: {args.key} key, {args.price} per kWh")
    return 0


def _community_end_member(args: argparse.Namespace) -> int:
    from verifier.communities import operation

    start = _community_time(args.start, "--from")
    until = _community_time(args.until, "--until")
    assert start is not None and until is not None
    _registry_entry(args, lambda c: operation.end_member(c, args.community_id, args.device_id, start, until))
    print(f"{args.device_id}'s membership of {args.community_id} from {_when(start)} ends at {_when(until)}")
    return 0


def _community_member(args: argparse.Namespace) -> int:
    from verifier.communities import operation

    start = _community_time(args.start, "--from")
    assert start is not None
    until = _community_time(args.until, "--until")
    _registry_entry(args, lambda c: operation.add_member(c, args.community_id, args.device_id, start, until))
    print(f"{args.device_id} is a member of {args.community_id} from {_when(start)}")
    return 0


def _community_coefficients(args: argparse.Namespace) -> int:
    from verifier.communities import operation

    text = args.file.read_text(encoding="utf-8-sig")
    steps: list[int] = []

    def upload(c: Any) -> int:
        index, count = operation.upload_coefficients(c, args.community_id, text)
        steps.append(count)
        return index

    _registry_entry(args, upload)
    print(f"coefficients of {steps[0]} steps recorded for {args.community_id}")
    return 0


def _community_list(args: argparse.Namespace) -> int:
    import json

    from verifier.communities import operation

    _, conn = _existing_database(args)
    for c in operation.list_all(conn):
        if args.json:
            print(json.dumps(c, sort_keys=True))
            continue
        latest = c["settings"][-1]
        members = ", ".join(f"{m['device_id']} ({m['role']})" for m in c["members"]) or "no members"
        minutes = latest["step_s"] // 60
        print(f"{c['community_id']}: {c['name']}, {c['grid_area']}; {latest['key']} key, {minutes}-minute"
              f" steps, {latest['price_per_kwh']} {c['currency']}/kWh; {members}")  # fmt: skip
    return 0


def _community_export(args: argparse.Namespace) -> int:
    from verifier.communities import operation
    from verifier.devices import records

    start, end = _community_time(args.start, "--from"), _community_time(args.end, "--to")
    assert start is not None and end is not None
    _, conn = _existing_database(args)
    try:
        rows = operation.steps(conn, args.community_id, start, end)
    except (records.TooMuchWork, LookupError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    except Exception as e:  # a Problem: an unknown community
        raise SystemExit(f"wattproof: {getattr(e, 'detail', e)}") from None
    sys.stdout.write(operation.to_csv(rows, args.quantity))
    return 0


def _community_settlement(args: argparse.Namespace) -> int:
    import json

    from verifier.communities import operation

    _, conn = _existing_database(args)
    try:
        statement = operation.settlement(conn, args.community_id, args.month)
    except ValueError as e:
        raise SystemExit(f"wattproof: {e}") from None
    if args.json:
        print(json.dumps(statement, indent=2, sort_keys=True))
        return 0
    cur = statement["currency"]
    print(f"{args.community_id}, {args.month}: {statement['steps']} steps ({statement['steps_not_measured']} not all"
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


def _accounts_create(args: argparse.Namespace) -> int:
    from verifier.certificates import registry

    index = _registry_entry(args, lambda c: registry.create_account(c, args.account_id, args.name, args.kind))
    print(f"account {args.account_id} ({args.kind}) created, ledger {index}")
    return 0


def _accounts_assign(args: argparse.Namespace) -> int:
    from verifier.certificates import registry

    index = _registry_entry(args, lambda c: registry.assign_device(c, args.account_id, args.device_id))
    print(f"{args.device_id} now belongs to {args.account_id}: its next hours are issued to it (ledger {index})")
    return 0


def _accounts_list(args: argparse.Namespace) -> int:
    import json

    from verifier.certificates import registry

    _, conn = _existing_database(args)
    rows = registry.accounts(conn)
    if args.json:
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


def _expiry(text: str | None) -> int | None:
    """--expires: a span from now (90d, 12h, 30m) or a time (Unix seconds, ISO 8601 with Z)."""
    import re
    import time

    from verifier.http import parse_time

    if text is None:
        return None
    span = re.fullmatch(r"([0-9]{1,9})([dhm])", text)
    if span:
        at = int(time.time()) + int(span[1]) * {"d": 86400, "h": 3600, "m": 60}[span[2]]
        if not times.in_range(at):
            raise SystemExit(f"wattproof: --expires {text}: expected {times.BOUND_TEXT}")
        return at
    try:
        return parse_time(text)
    except ValueError as e:
        raise SystemExit(f"wattproof: --expires {text}: {e}; or a span such as 90d, 12h") from None


def _keys_create(args: argparse.Namespace) -> int:
    from verifier import auth
    from verifier.storage import transaction

    _, conn = _existing_database(args)
    try:
        with transaction(conn):
            token = auth.create_key(conn, args.name, args.role, _expiry(args.expires), args.installer, args.account)
    except ValueError as e:
        raise SystemExit(f"wattproof: {e}") from None
    print(token)
    until = f", expires {_when(_expiry(args.expires))}" if args.expires else ""
    print(f"# {args.role} key for {args.name}{until}: shown once, keep it secret", file=sys.stderr)
    return 0


def _when(ts: int | None) -> str:

    return "-" if ts is None else times.strftime(ts, "%Y-%m-%d %H:%MZ")


def _keys_list(args: argparse.Namespace) -> int:
    from verifier import auth

    _, conn = _existing_database(args)
    keys = auth.list_keys(conn)
    if args.json:
        import json

        print(json.dumps(keys, indent=2))
        return 0
    print(f"{'KEY ID':12}  {'ROLE':9}  {'STATUS':7}  {'CREATED':17}  {'EXPIRES':17}  {'LAST USED':17}  NAME")
    for k in keys:
        who = k["name"] + (f" (installer {k['installer']})" if k["installer"] else "")
        print(
            f"{k['key_id']:12}  {k['role']:9}  {k['status']:7}  {_when(k['created_at']):17}  "
            f"{_when(k['expires_at']):17}  {_when(k['last_used_at']):17}  {who}"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from verifier import auth
    from verifier.storage import transaction

    _, conn = _existing_database(args)
    key_id = args.key_id.split("_")[1] if args.key_id.startswith("wp_") else args.key_id
    try:
        with transaction(conn):
            auth.revoke_key(conn, key_id)
    except LookupError as e:
        raise SystemExit(f"wattproof: {e} (wattproof keys list shows them)") from None
    print(f"revoked API key {key_id}: it is refused from now on")
    return 0


def _installers_register(args: argparse.Namespace) -> int:
    import base64

    from verifier.devices import lifecycle
    from verifier.storage import transaction
    from verifier.wire.problems import Problem

    _, conn = _existing_database(args)
    text = args.public_key
    if args.public_key_file:
        try:
            text = args.public_key_file.read_text().strip()
        except OSError as e:
            raise SystemExit(f"wattproof: cannot read {args.public_key_file}: {e.strerror}") from None
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
            index = lifecycle.register_installer(conn, args.name, key, "cli")
    except Problem as e:
        raise SystemExit(f"wattproof: {e.detail}") from None
    print(f"installer {args.name} registered (ledger entry {index})")
    print(f"next: wattproof keys create --role installer --installer {args.name} --name {args.name}")
    return 0


def _sample_packet(args: argparse.Namespace) -> int:
    from hardware import sim

    packet_path, key_path = sim.sample_packet(args.readings, args.out)
    print(f"{packet_path} ({packet_path.stat().st_size} bytes, {args.readings} readings)")
    print(key_path)
    return 0


def _sim_board(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from hardware import sim
    from hardware.flash import files

    profile = sim.load_profile(args.profile)
    root = args.dir or Path(tempfile.mkdtemp(prefix=f"wattproof-{args.profile}-"))
    if args.blank:
        return _blank_board(profile, root, args.speed, args.start)
    device_id = args.device_id or f"virtual-{args.profile}"
    held = root / "flash" / files.CONFIG
    if held.exists():
        try:
            existing = json.loads(held.read_text()).get("device_id")
        except (ValueError, AttributeError):
            existing = None
        if existing != device_id:
            raise SystemExit(
                f"wattproof: {root} holds board {existing!r}, provisioned with its own key and config:"
                f" start it as it is with `wattproof sim board --blank --dir {root} --profile {args.profile}`,"
                " or give another --dir"
            )
    # Faster than real time, the board's clock starts in the past so that its readings stay
    # behind the verifier's clock (which refuses the future) for a long while.
    start = args.start if args.start is not None else int(time.time()) - (30 * 86400 if args.speed > 1 else 0)
    site = sim.Site(profile, root, device_id, args.verifier, speed=args.speed, console=True, virtual_epoch=start)
    site.start()
    assert site.console is not None
    print(f"profile    {args.profile}: {profile['description']}")
    print(f"device id  {device_id}")
    print(f"flash      {site.board.flash}")
    print(f"verifier   {args.verifier}")
    print(f"speed      {args.speed:g}x (one reading every {profile.get('interval_s', 60) / args.speed:g} s)")
    print(f"console    {site.console.meter_port}")
    print(f'try        mpremote connect {site.console.meter_port} resume exec "import wattproof; wattproof.status()"')
    print("Ctrl-C stops the board.", flush=True)
    return _until_interrupted(site, site.board.running)


def _until_interrupted(site: Any, alive: Any) -> int:
    """Keeps a virtual board's site up while alive() holds, until Ctrl-C; then closes it."""
    import signal
    import time

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # `kill`, or the terminal closing, ends it as Ctrl-C does

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        while alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the board is closed whole, not half
        site.close()
    return 0


def _blank_board(profile: dict[str, Any], root: Path, speed: float, start: int | None) -> int:
    """A board as it leaves the bench: MicroPython and nothing else, its console on a
    pseudo-terminal, until `wattproof provision` gives it firmware, a key and a config."""
    from hardware import sim

    site = sim.Site(profile, root, "", "", speed=speed, virtual_epoch=start, blank=True)
    site.start()
    assert site.console is not None
    print(f"profile    {profile['name']}: {profile['description']}")
    print(f"serial     {site.serial}")
    print(f"flash      {site.board.flash}")
    print(f"console    {site.console.meter_port}")
    print(f"try        wattproof provision --port {site.console.meter_port} --profile {profile['name']} ...")
    print("Ctrl-C powers the board off.", flush=True)
    return _until_interrupted(site, lambda: True)


def _provision(args: argparse.Namespace) -> int:
    import os

    from hardware import sim
    from provisioning import provision as pv
    from provisioning.client import ProvisionError, VerifierClient
    from provisioning.link import BoardError, resolve_ports

    try:
        profile = sim.load_profile(args.profile)
    except sim.SimError as e:
        raise SystemExit(f"wattproof: {e}") from None
    api_key = args.api_key or os.environ.get("WATTPROOF_API_KEY")
    if not api_key:
        raise SystemExit("wattproof: an installer API key is needed (--api-key, or WATTPROOF_API_KEY)")
    try:
        installer = pv.load_installer(args.installer, args.installer_key)
        ports = resolve_ports(args.port)
    except (ProvisionError, BoardError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    if len(ports) > 1 and "{n}" not in args.device_id and "{serial}" not in args.device_id:
        raise SystemExit("wattproof: several boards need a --device-id with {n} or {serial} in it")
    location = None
    if args.location:
        lat, lon = (float(x) for x in args.location.split(","))
        location = (round(lat * 1e6), round(lon * 1e6))
    from verifier.charging import tokens
    from verifier.devices.charge_point import check_charge_point

    charge_point = None
    if args.charge_point:
        try:
            charge_point = check_charge_point(json.loads(args.charge_point.read_text()))
        except (OSError, ValueError) as e:  # a Problem is a ValueError: it names the field
            raise SystemExit(f"wattproof: charge point {args.charge_point}: {e}") from None
    secret = None
    if args.token_secret:
        try:
            secret = tokens.load_secret(args.token_secret)
        except (OSError, ValueError) as e:
            raise SystemExit(f"wattproof: {e}") from None
        if args.role != "charger":
            raise SystemExit("wattproof: --token-secret is for chargers (--role charger)")
    verifier = VerifierClient(args.verifier, api_key)
    planned: list[tuple[str, str, str | None, str]] = [
        (port, serial_number, args.device_id.format(n=n, serial=serial_number.lower() or n), "")
        for n, (port, serial_number) in enumerate(ports, 1)
    ]
    if len(ports) > 1 or "auto" in args.port:
        # A bulk run: boards set up before keep their ids, boards of other devices are skipped,
        # blank ones get the next free number (provisioning/provision.py plan_ids).
        def current(port: str) -> str | None:
            try:
                return pv.configured_id(port)
            except BoardError:
                return None  # its own run says what is wrong with it

        boards = [(port, serial_number, current(port)) for port, serial_number in ports]
        try:
            planned = pv.plan_ids(boards, args.device_id, lambda d: (verifier.device(d) or {}).get("status"))
        except ProvisionError as e:
            raise SystemExit(f"wattproof: {e}") from None
    jobs = []
    for port, serial_number, planned_id, note in planned:
        if planned_id is None:
            print(f"[{port}] {note}", flush=True)
            continue
        if note:
            print(f"[{planned_id}] {note}", flush=True)
        device_id = planned_id
        identity = pv.Identity(
            device_id=device_id,
            role=args.role,
            capacity_w=args.capacity_w,
            grid_area=args.grid_area,
            technology=args.technology,
            location=location,
            meter_serial=args.meter_serial,
            charge_point=charge_point,
            token_key=None if secret is None else tokens.charger_key(secret, device_id),
        )
        jobs.append(
            pv.Job(
                port,
                serial_number,
                identity,
                profile,
                verifier,
                installer,
                args.out,
                reflash=args.reflash,
                rotate_key=args.rotate_key,
                clock_tolerance_s=args.clock_tolerance,
            )
        )
    if not jobs:
        print("no board to provision: every attached board is set up as another device", file=sys.stderr)
        return 1
    return pv.main_exit(pv.provision_all(jobs))


def _board_command(args: argparse.Namespace) -> int:
    import os

    from provisioning import field
    from provisioning.client import ProvisionError, VerifierClient
    from provisioning.link import BoardError, BoardLink, resolve_ports
    from verifier.wire.packet import DEVICE_EVENTS

    try:
        ports = resolve_ports([args.port])
        if len(ports) != 1:
            listed = "; ".join(f"{path} (id:{serial})" if serial else path for path, serial in ports)
            raise BoardError(f"{len(ports)} boards match {args.port}: {listed}; name one (--port PATH or id:SERIAL)")
        with BoardLink(ports[0][0]) as link:
            if args.board_command == "status":
                print(field.status(link))
            elif args.board_command == "logs":
                for e in field.logs(link):
                    name = DEVICE_EVENTS.get(e["event"], str(e["event"]))
                    when = times.strftime(e["ts"], "%Y-%m-%d %H:%M:%SZ")
                    value = "" if e["value"] is None else e["value"]
                    print(f"#{e['number']:<8} {when}  {name:13s} {e['detail'] or ''} {value}".rstrip())
            else:
                link.restart_clean()  # the gateway stays stopped, and the heap is whole for the last packet
                verifier = VerifierClient(args.verifier, args.api_key or os.environ.get("WATTPROOF_API_KEY"))
                if args.board_command == "rotate-key":
                    done = field.rotate_key(link, verifier, args.force)
                    print(f"{done['device_id']}: new key, fingerprint {done['fingerprint']}")
                else:
                    done = field.decommission(link, verifier, args.reason, args.force)
                    verdict = {
                        "now": "revoked in the verifier",
                        "already revoked": "was revoked in the verifier already",
                        "never enrolled": "was never enrolled with the verifier (nothing to revoke)",
                    }[done["revoked"]]
                    print(f"{done['device_id']}: {verdict}; key, journal and config wiped from the board")
                    return 0  # no reset: the board waits at its REPL
            if not args.no_reset:
                link.reset()
    except (BoardError, ProvisionError) as e:
        raise SystemExit(f"wattproof: {e}") from None
    return 0


def _installer_keygen(args: argparse.Namespace) -> int:
    import base64

    from provisioning import provision as pv
    from provisioning.enrollment import Installer

    public_file = args.out.with_suffix(".pub")
    for path in (args.out, public_file):
        if path.exists():
            raise SystemExit(f"wattproof: {path} exists; not overwriting an installer key")
    installer = Installer.generate(args.name)
    try:
        pv.write_installer_key(args.out, installer)
    except OSError as e:
        raise SystemExit(f"wattproof: cannot write {args.out}: {e.strerror}") from None
    public = base64.b64encode(installer.public_key).decode()
    public_file.write_text(public + "\n")
    print(f"installer  {args.name}")
    print(f"key file   {args.out} (keep it secret; mode 0600)")
    print(f"public key {public} (also in {public_file})")
    print(f"the operator registers it: wattproof installers register --name {args.name} --public-key {public}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from wattproof import demo

    if args.database and not args.database.startswith(("postgresql://", "postgres://")):
        raise SystemExit(f"wattproof: --database takes a postgresql:// URL, not {args.database!r}")
    if not 0 < args.hours <= demo.MAX_HOURS:
        raise SystemExit(f"wattproof: --hours {args.hours:g}: from more than 0 to {demo.MAX_HOURS} (a week)")
    return demo.run(
        hours=args.hours,
        speed=args.speed,
        workdir=args.workdir,
        database=args.database,
        workers=args.workers,
        serve=args.serve,
    )


def build_parser() -> argparse.ArgumentParser:
    # The enumerations the options take are the areas' own (declared once there).
    from verifier import auth
    from verifier.certificates import registry
    from verifier.communities import operation
    from verifier.devices import identity

    parser = argparse.ArgumentParser(prog="wattproof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the verifier under a production WSGI server")
    serve.add_argument("--db", type=Path, help="SQLite database file (created if missing)")
    serve.add_argument("--database", metavar="URL", help="a PostgreSQL database instead: postgresql://user@host/name")
    serve.add_argument("--log-key", type=Path, help="the log's key file (required with PostgreSQL; LOG_KEY_FILE)")
    serve.add_argument("--config", type=Path, help="TOML settings file (docs/operations.md)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker process")
    serve.add_argument("--workers", type=int, default=1, help="worker processes on one socket (default 1)")
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="a verifier and five virtual boards, end to end, then a summary")
    demo.add_argument("--hours", type=float, default=10, help="simulated hours to measure, up to 168 (default 10)")
    demo.add_argument("--speed", type=float, default=1800, help="simulated seconds per real second (default 1800)")
    demo.add_argument("--workdir", type=Path, help="keep the database and board flash here")
    demo.add_argument("--database", metavar="URL", help="an empty PostgreSQL database instead of SQLite")
    demo.add_argument("--workers", type=int, default=1, help="verifier worker processes (default 1)")
    demo.add_argument("--serve", action="store_true", help="keep the verifier and its web pages up until Ctrl-C")
    demo.set_defaults(func=_demo)

    ledger_cmds = _database_commands(
        sub,
        "ledger",
        "the append-only ledger",
        [
            ("audit", _ledger_audit, "re-derive every hash, signature and checkpoint"),
            ("key", _ledger_key, "print the log's public key (C2SP verifier key)"),
            ("tiles", _ledger_tiles, "write the log as static tiles (C2SP tlog-tiles) to a folder"),
        ],
    )
    ledger_cmds["tiles"].add_argument("--out", type=Path, required=True, help="the folder (made if missing)")
    ledger_cmds["audit"].add_argument(
        "--witness", action="append", default=[], metavar="VKEY",
        help="a witness's key whose stored cosignatures are checked (repeat; WITNESSES' keys are too)",
    )  # fmt: skip
    _database_commands(
        sub,
        "db",
        "the verifier database's schema: status and upgrade",
        [
            ("status", _db_status, "each schema migration, applied or pending (changes nothing)"),
            ("upgrade", _db_upgrade, "run the pending migrations (the server also does at start)"),
        ],
    )

    certs = _database_commands(
        sub,
        "certificates",
        "granular certificates of renewable origin (docs/certificates.md)",
        [
            ("issue", _certificates_issue, "issue every complete, measured producer hour not decided yet"),
            ("list", _certificates_list, "bundles as they are now, as JSON lines"),
            ("transfer", _certificates_transfer, "move certificate id ranges to another account (splits bundles)"),
            ("claim", _certificates_claim, "cancel id ranges for a beneficiary and a consumption period"),
            ("withdraw", _certificates_withdraw, "take back active or expired certificates (the issuing body)"),
            ("statement", _certificates_statement, "a claim's cancellation statement, or every claim as JSON lines"),
            ("match", _certificates_match, "hourly matching of a consumer device or account (docs/certificates.md)"),
        ],
    )
    for name in ("transfer", "claim", "withdraw"):
        certs[name].add_argument("--range", action="append", help="certificate ids START-END (repeat for several)")
    certs["transfer"].add_argument("--to", required=True, help="the account that receives them")
    certs["transfer"].add_argument("--from", dest="from_account", help="the holder (absent: the issuing body)")
    certs["claim"].add_argument("--beneficiary", required=True, help="the account the claim is for")
    certs["claim"].add_argument("--holder", help="the account that holds them (absent: the issuing body)")
    certs["claim"].add_argument("--consumer-device", help="the consumer device whose load they cover")
    certs["claim"].add_argument("--period-start", required=True, help="consumption period (ISO 8601 or Unix)")
    certs["claim"].add_argument("--period-end", required=True, help="its end (exclusive)")
    certs["withdraw"].add_argument("--issuance", help="or every active bundle of this issuance (device/hour)")
    certs["withdraw"].add_argument("--reason", required=True, help="why, for the ledger entry")
    certs["statement"].add_argument("claim_id", type=int, nargs="?", help="the claim (its ledger index)")
    certs["statement"].add_argument("--beneficiary", help="without a claim id: only this beneficiary's claims")
    certs["match"].add_argument("--device", help="a consumer device: the claims that name it")
    certs["match"].add_argument("--account", help="or an account: its consumers' load, its claims as beneficiary")
    certs["match"].add_argument("--from", dest="start", required=True, help="ISO 8601 or Unix seconds")
    certs["match"].add_argument("--to", dest="end", required=True, help="ISO 8601 or Unix seconds")
    certs["match"].add_argument("--all", action="store_true", help="or every consumer: a JSON line each")
    certs["match"].add_argument("--jobs", type=int, default=1, help="--all: processes sharing the consumers")
    certs["match"].add_argument("--csv", action="store_true", help="hour by hour as CSV")
    certs["match"].add_argument("--json", action="store_true", help="summary and hours as JSON")

    community = _database_commands(
        sub,
        "community",
        "energy communities: collective self-consumption and its settlement (docs/communities.md)",
        [
            ("create", _community_create, "a community with its first settings (a ledger entry)"),
            ("settings", _community_settings, "settings in force from a step on: step, key, price"),
            ("add-member", _community_member, "a producer or consumer device joins"),
            ("end-member", _community_end_member, "a membership ends (one community at a time)"),
            ("coefficients", _community_coefficients, "per-step coefficients from a CSV file (Horodate;<member>...)"),
            ("list", _community_list, "every community, its settings and members"),
            ("export", _community_export, "one quantity per step and member as CSV (Horodate;<member>...)"),
            ("settlement", _community_settlement, "the month's settlement statement at the community's price"),
        ],
    )
    for name in ("create", "settings", "add-member", "end-member", "coefficients", "export", "settlement"):
        community[name].add_argument("community_id")
    for name in ("create", "settings"):
        community[name].add_argument("--from", dest="start", required=True, help="the first step (ISO 8601 or Unix)")
        community[name].add_argument("--price", default="0", help="price per kWh of local energy (decimal)")
        community[name].add_argument(
            "--step", type=int, choices=operation.STEPS, help="default: 1800 before 2025, 900 since"
        )
        community[name].add_argument("--key", default="dynamic", choices=operation.KEYS)
        community[name].add_argument("--coefficient", action="append", help="static key: DEVICE=DECIMAL (repeat)")
    community["create"].add_argument("--name", required=True)
    community["create"].add_argument("--grid-area", default="", help="the distribution grid area")
    community["create"].add_argument("--currency", default="EUR")
    community["end-member"].add_argument("device_id")
    community["end-member"].add_argument("--from", dest="start", required=True, help="when the membership began")
    community["end-member"].add_argument("--until", required=True, help="when it ends (exclusive; = --from: never)")
    community["add-member"].add_argument("device_id")
    community["add-member"].add_argument("--from", dest="start", required=True)
    community["add-member"].add_argument("--until", help="the membership ends (exclusive)")
    community["coefficients"].add_argument("file", type=Path)
    community["list"].add_argument("--json", action="store_true", help="as JSON lines")
    community["export"].add_argument("--from", dest="start", required=True)
    community["export"].add_argument("--to", dest="end", required=True)
    community["export"].add_argument(
        "--quantity",
        default="allocated",
        choices=operation.CSV_QUANTITIES,
    )
    community["settlement"].add_argument("--month", required=True, help="YYYY-MM (UTC)")
    community["settlement"].add_argument("--json", action="store_true")

    accounts = _database_commands(
        sub,
        "accounts",
        "registry accounts that hold certificates (docs/certificates.md)",
        [
            ("create", _accounts_create, "a new account (a ledger entry)"),
            ("list", _accounts_list, "every account with its devices and balances"),
            ("assign", _accounts_assign, "the account owns this device from now on"),
        ],
    )
    accounts["create"].add_argument("account_id", help="[a-z0-9][a-z0-9._-]{0,63}")
    accounts["create"].add_argument("--name", required=True, help="the holder's name")
    accounts["create"].add_argument("--kind", required=True, choices=registry.ACCOUNT_KINDS)
    accounts["list"].add_argument("--json", action="store_true", help="as JSON")
    accounts["assign"].add_argument("account_id")
    accounts["assign"].add_argument("device_id")
    certs["issue"].add_argument("--device", action="append", help="only this producer (repeat for several)")
    certs["issue"].add_argument("--verbose", action="store_true", help="also each hour that was not issued, and why")
    certs["list"].add_argument("--device", help="only this device's bundles")
    certs["list"].add_argument("--account", help="only bundles this account holds")
    certs["list"].add_argument("--status", choices=registry.STATUSES)
    certs["list"].add_argument("--from", dest="start", default="0", help="hours from (ISO 8601 or Unix seconds)")
    certs["list"].add_argument("--to", dest="end", default="9999999999", help="hours before")

    keys = sub.add_parser("keys", help="API keys for people and systems")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    create = keys_sub.add_parser("create", help="create an API key and print its token once")
    create.add_argument("--role", required=True, choices=auth.ROLES)
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--installer", help="installer keys: the registered installer the key acts for")
    create.add_argument("--account", help="account keys: the registry account the key acts for")
    create.add_argument("--expires", help="a span (90d, 12h) or a time (ISO 8601 with Z, Unix seconds)")
    listing = keys_sub.add_parser("list", help="every key: role, status, created, expires, last used (no secrets)")
    listing.add_argument("--json", action="store_true", help="as JSON")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", help="the key id (wp_<key id>_... or the id keys list shows)")
    for cmd, func in ((create, _keys_create), (listing, _keys_list), (revoke, _keys_revoke)):
        cmd.add_argument("--db", type=Path, help="the verifier's SQLite database")
        cmd.add_argument("--config", type=Path, help="TOML settings file")
        cmd.add_argument("--database", metavar="URL", help="or its PostgreSQL database (postgresql://...)")
        cmd.add_argument("--log-key", type=Path, help="the log's key file (LOG_KEY_FILE)")
        cmd.set_defaults(func=func)

    installers = sub.add_parser("installers", help="installers whose signatures enroll devices (operators)")
    installers_sub = installers.add_subparsers(dest="installers_command", required=True, metavar="COMMAND")
    register = installers_sub.add_parser("register", help="register an installer's public signing key")
    register.add_argument("--name", required=True, help="the installer's name, as in `installer keygen --name`")
    register.add_argument("--public-key", help="the base64 public key `installer keygen` printed")
    register.add_argument("--public-key-file", type=Path, help="or the .pub file `installer keygen` wrote")
    register.add_argument("--db", type=Path, help="the verifier's SQLite database")
    register.add_argument("--config", type=Path, help="TOML settings file")
    register.add_argument("--database", metavar="URL", help="or its PostgreSQL database (postgresql://...)")
    register.add_argument("--log-key", type=Path, help="the log's key file (LOG_KEY_FILE)")
    register.set_defaults(func=_installers_register)

    sim = sub.add_parser("sim", help="virtual boards")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    sample = sim_sub.add_parser("sample-packet", help="build one real packet under MicroPython")
    sample.add_argument("--readings", type=int, default=16, help="readings in the packet (1..256)")
    sample.add_argument("--out", type=Path, required=True, help="folder for packet.cbor and device-key.pub.pem")
    sample.set_defaults(func=_sample_packet)
    board = sim_sub.add_parser("board", help="run the firmware on a virtual board with simulated peripherals")
    board.add_argument("--profile", required=True, help="a board profile from hardware/profiles")
    board.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    board.add_argument("--verifier", default="http://127.0.0.1:8080", help="verifier URL")
    board.add_argument("--dir", type=Path, help="folder for the board's flash and peripherals (kept)")
    board.add_argument("--device-id", help="device id (default virtual-PROFILE)")
    board.add_argument(
        "--start",
        type=int,
        help="Unix time the board's clock starts at (default: now, or 30 days ago when --speed is above 1)",
    )
    board.add_argument(
        "--blank", action="store_true", help="a board with MicroPython only, to provision (wattproof provision)"
    )
    board.set_defaults(func=_sim_board)

    prov = sub.add_parser("provision", help="flash, key, enroll and commission boards (docs/technician.md)")
    prov.add_argument(
        "--port", action="append", required=True, help="a serial port, `auto`, or id:SERIAL; repeat for several boards"
    )
    prov.add_argument("--profile", required=True, help="a board profile from hardware/profiles, or a JSON file")
    prov.add_argument("--device-id", required=True, help="the device id; {n} or {serial} for several boards")
    prov.add_argument("--role", required=True, choices=identity.ROLES)
    prov.add_argument("--capacity-w", type=int, required=True, help="nameplate, main fuse or charging power (W)")
    prov.add_argument("--grid-area", required=True)
    prov.add_argument("--technology", help="producers: solar-pv, wind, hydro, chp, battery ...")
    prov.add_argument("--location", help="LAT,LON in degrees")
    prov.add_argument(
        "--token-secret",
        type=Path,
        metavar="FILE",
        help="chargers: the operator's token secret (64 hex digits); the board gets its own token key"
        " derived from it, so that sessions can be billed to tokens (docs/charging.md)",
    )
    prov.add_argument(
        "--charge-point",
        type=Path,
        metavar="FILE",
        help="chargers: a JSON file of the OCPI charge point (location_id, address, city, country,"
        " evse_uid, evse_id, connector_id, connector_standard, connector_format, power_type; docs/charging.md)",
    )
    prov.add_argument("--meter-serial", help="default: the serial number the meter reports")
    prov.add_argument("--verifier", required=True, help="verifier URL, as the board will reach it")
    prov.add_argument("--api-key", help="an installer API key (default: WATTPROOF_API_KEY)")
    prov.add_argument("--installer", required=True, help="the installer's name, as registered with the verifier")
    prov.add_argument("--installer-key", type=Path, required=True, help="the installer's Ed25519 key (PEM)")
    prov.add_argument("--out", type=Path, default=Path("commissioning"), help="reports and labels go here")
    prov.add_argument("--reflash", action="store_true", help="copy every firmware file, changed or not")
    prov.add_argument("--rotate-key", action="store_true", help="give an enrolled board a new key")
    prov.add_argument(
        "--clock-tolerance", type=float, default=120, help="seconds the board's clock may differ from this computer's"
    )
    prov.set_defaults(func=_provision)

    board_cmd = sub.add_parser("board", help="field commands on a provisioned board")
    board_sub = board_cmd.add_subparsers(dest="board_command", required=True, metavar="BOARD_COMMAND")
    for name, text in (
        ("status", "identity, journal depth, last upload"),
        ("logs", "the device events the board holds"),
        ("rotate-key", "a new key made on the board, signed by the old one"),
        ("decommission", "revoke the device in the verifier and wipe its key from the board"),
    ):
        cmd = board_sub.add_parser(name, help=text)
        cmd.add_argument("--port", default="auto", help="a serial port, `auto` or id:SERIAL")
        cmd.add_argument("--no-reset", action="store_true", help="leave the board at its REPL afterwards")
        if name in ("rotate-key", "decommission"):
            cmd.add_argument("--verifier", required=True)
            cmd.add_argument("--api-key", help="an installer API key (default: WATTPROOF_API_KEY)")
            cmd.add_argument("--force", action="store_true", help="go on even if packets cannot be sent first")
        if name == "decommission":
            cmd.add_argument("--reason", default="decommissioned", help="recorded in the ledger")
        cmd.set_defaults(func=_board_command)

    sub.add_parser("verify", help="check a provenance certificate offline (wattproof verify --help)", add_help=False)
    cert = _database_commands(
        sub,
        "certificate",
        "provenance certificates: one file an auditor checks offline with wattproof verify",
        [
            ("reading", _certificate_of, "a reading: --device ID --number N"),
            ("packet", _certificate_of, "a packet: --device ID --seq N"),
            ("session", _certificate_of, "a charging session: --device ID --session HEX"),
            ("granular", _certificate_of, "a granular certificate: --issuance LEDGER_INDEX"),
        ],
    )
    for name, cmd in cert.items():
        cmd.add_argument("--out", type=Path, required=True, help="the file to write")
        if name != "granular":
            cmd.add_argument("--device", required=True)
        if name == "reading":
            cmd.add_argument("--number", type=int, required=True)
        if name == "packet":
            cmd.add_argument("--seq", type=int, required=True)
        if name == "session":
            cmd.add_argument("--session", required=True)
        if name == "granular":
            cmd.add_argument("--issuance", type=int, required=True)

    wit = sub.add_parser("witness", help="a witness that cosigns a log's checkpoints (C2SP tlog-witness)")
    wit_sub = wit.add_subparsers(dest="witness_command", required=True, metavar="WITNESS_COMMAND")
    wkey = wit_sub.add_parser("keygen", help="a new cosignature/v1 key; prints its verifier key")
    wkey.add_argument("--name", required=True, help="the witness's name, a schema-less URL (witness.example/w1)")
    wkey.add_argument("--out", type=Path, required=True, help="the key file to write (kept secret)")
    wkey.set_defaults(func=_witness_keygen)
    wserve = wit_sub.add_parser("serve", help="serve POST /add-checkpoint")
    wserve.add_argument("--key", type=Path, required=True, help="the witness's key file (wattproof witness keygen)")
    wserve.add_argument("--state", type=Path, required=True, help="its SQLite state file (created if missing)")
    wserve.add_argument("--log", action="append", required=True, metavar="VKEY",
                        help="a log's verifier key to follow (repeat for more logs)")  # fmt: skip
    wserve.add_argument("--host", default="127.0.0.1")
    wserve.add_argument("--port", type=int, default=8101, help="port (0 picks a free one)")
    wserve.add_argument("--threads", type=int, default=4)
    wserve.set_defaults(func=_witness_serve)

    inst = sub.add_parser("installer", help="installer keys")
    inst_sub = inst.add_subparsers(dest="installer_command", required=True, metavar="INSTALLER_COMMAND")
    keygen = inst_sub.add_parser("keygen", help="a new installer Ed25519 key, for an admin to register")
    keygen.add_argument("--name", required=True)
    keygen.add_argument("--out", type=Path, required=True)
    keygen.set_defaults(func=_installer_keygen)
    return parser


def _database_commands(sub: Any, group: str, text: str, commands: list[tuple[str, Any, str]]) -> dict[str, Any]:
    """A command group whose commands work on an existing database (--db, --config); its
    commands' parsers by name, for options of their own."""
    parsers = {}
    parser = sub.add_parser(group, help=text)
    group_sub = parser.add_subparsers(dest=f"{group}_command", required=True, metavar=f"{group.upper()}_COMMAND")
    for name, func, help_text in commands:
        cmd = group_sub.add_parser(name, help=help_text)
        cmd.add_argument("--db", type=Path, help="the verifier's SQLite database")
        cmd.add_argument("--config", type=Path, help="TOML settings file")
        cmd.add_argument("--database", metavar="URL", help="or its PostgreSQL database (postgresql://...)")
        cmd.add_argument("--log-key", type=Path, help="the log's key file (LOG_KEY_FILE)")
        cmd.set_defaults(func=func)
        parsers[name] = cmd
    return parsers


SERVER_MODULES = {"flask", "werkzeug", "waitress", "psycopg", "mpremote", "serial", "pymodbus", "segno", "defusedxml"}


def _quiet_stdout() -> None:
    """After a broken pipe, what is still buffered for stdout goes nowhere (Python's docs'
    recipe): no second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:  # an auditor's command: nothing of the server is imported
        from wattproof import verify

        try:
            return verify.main(argv[1:])
        except BrokenPipeError:
            _quiet_stdout()
            return 141
    from hardware.sim import SimError
    from verifier.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `wattproof ... | head`: the reader left; say nothing more
        _quiet_stdout()
        return 141
    except ModuleNotFoundError as e:
        if e.name not in SERVER_MODULES:
            raise
        print(f"wattproof: this command needs the server extra ({e.name} is not installed):"
              " pip install 'wattproof[server]'", file=sys.stderr)  # fmt: skip
        return 2
    except (SimError, SettingsError) as e:
        print(f"wattproof: {e}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as e:
        where = getattr(args, "db", None) or os.environ.get("WATTPROOF_DATABASE") or "the database"
        print(
            f"wattproof: {where} cannot be used as the verifier's database ({e}): check the path"
            " (a file, not a folder; readable and writable by this user)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
