"""The `wattproof` command as a user runs it: each subcommand that exists, end to end."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pyocmf
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from ocpi_types import v2_2_1

from tests.conftest import FIRST_RUN, DemoRuns
from tests.test_note_interop import go_verify
from verifier.charging import ocpi
from verifier.wire.packet import decode_packet, verify_packet

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


def test_sample_packet_writes_a_packet_and_pem_key(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    result = subprocess.run(
        [*WATTPROOF, "sim", "sample-packet", "--readings", "16", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    key = load_pem_public_key((out / "device-key.pub.pem").read_bytes())
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    packet = decode_packet((out / "packet.cbor").read_bytes())
    verify_packet(packet, point)
    assert packet.header.count == 16


def test_sample_packet_refuses_too_many_readings(tmp_path: Path) -> None:
    result = subprocess.run(
        [*WATTPROOF, "sim", "sample-packet", "--readings", "257", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "1..256" in result.stderr and "Traceback" not in result.stderr


def _summary(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    rows = lines[lines.index("summary") + 2 : lines.index("summary") + 7]
    return {row.split()[0]: row.split()[1:] for row in rows}


@pytest.mark.demo
def test_demo_runs_end_to_end(demo_runs: DemoRuns) -> None:
    """The suite's one demo (tests/conftest.py): its first run, then a second on the same
    boards and ledger that stays up for the pages."""
    out, work = demo_runs.first, demo_runs.work
    assert "replayed packet 1 of solar-roof-1: HTTP 200 duplicate" in out
    assert "1 kWh more export: HTTP 400 https://wattproof.org/problems/merkle-root-mismatch" in out
    first = _summary(out)
    context = out[-4000:]
    assert "refused not-found" not in out  # provisioning's existence checks are lookups, not refusals
    assert "the boards live in simulated time from" in out and "within --clock-tolerance" in out
    reports = re.findall(r"step 9/9 report: (\S+report\.txt)", out)
    assert len(reports) == 5 and all(Path(r.rstrip(",")).exists() for r in reports), reports
    assert set(first) == {"solar-roof-1", "solar-roof-2", "home-1", "home-2", "charger-1"}
    # packets, readings, import, export, generated (producers: their hours add up to their registers), chain
    assert all(int(row[0]) > 0 and row[5].startswith("unbroken") for row in first.values()), context
    assert all(float(first[d][4]) > 0 for d in ("solar-roof-1", "solar-roof-2")), context
    assert all(first[d][4] == "-" for d in ("home-1", "home-2", "charger-1")), context
    assert float(first["solar-roof-1"][3]) > 0 and float(first["home-1"][2]) > 0  # production and consumption
    # The second run continues every chain instead of restarting it.
    out = demo_runs.second
    second, context = _summary(out), out[-4000:]
    assert all(int(second[d][0]) > int(first[d][0]) and second[d][5].startswith("unbroken") for d in first), context
    # The registry and the community: a transfer that splits a bundle, a claim, its refusal
    # when repeated, home-1's hourly match, the street's allocation and settlement.
    assert re.search(r"sun-coop transferred \d+ Wh in \d+ ranges to green-supplier \(bundle \S+ split", out), context
    assert "cancellation statement" in out and "claiming them again: HTTP 409" in out, context
    assert re.search(r"home-1, \S+ to \S+ \(the matching page's window\): load \d+ Wh, claimed \d+ Wh, hourly"
                     r" match [\d.]+%", out), context  # fmt: skip
    assert re.search(r"street: \d+ steps of 15 minutes", out) and "receives" in out and "owes" in out, context
    # The charger's sessions (how many depends on how fast the boards ran): every OCMF record it
    # signed verifies, and the one written out verifies with pyocmf as a driver's copy would.
    charged = re.search(r"charger-1 .*, (\d+) sessions: .*OCMF verified (\d+) of (\d+)", out)
    assert charged is None or charged[2] == charged[3] == charged[1], context
    for pasted in work.glob("charger-1-session-*.ocmf.txt"):
        record, spki = pasted.read_text().splitlines()
        assert pyocmf.OCMF.from_string(record).verify_signature(spki)
    # Every stopped session has its OCPI CDR; the one written out is OCPI 2.2.1 by ocpi-types.
    # The operator bills each to its token (its secret and token list), the ledger holds none.
    cdrs = re.search(r"(\d+) CDRs over OCPI 2.2.1, (\d+) billed to a token", out)
    assert (cdrs is None and charged is None) or (cdrs and charged and cdrs[1] == cdrs[2] == charged[1]), context
    report = (work / "commissioning" / "charger-1" / "report.json").read_text()
    assert '"token_key": "set (secret: not in the report)"' in report, report  # the key stays on the board
    for written in work.glob("cdr-session-*.json"):
        cdr = json.loads(written.read_text())
        assert v2_2_1.Cdr.from_dict(cdr) and ocpi.field_errors(cdr) == []
    # Two witnesses cosigned the checkpoint the provenance files are to; each file verified.
    assert "2 of 2 witnesses cosigned the checkpoint" in out and out.count(": VERIFIED ") == 4, context
    # An auditor's view of the demo's ledger: the audit passes, and its latest checkpoint
    # verifies with the Go checksum database's note package.
    db = str(work / "verifier.sqlite")
    audit = subprocess.run([*WATTPROOF, "ledger", "audit", "--db", db], capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    vkey = subprocess.run([*WATTPROOF, "ledger", "key", "--db", db], capture_output=True, text=True, check=True)
    conn = sqlite3.connect(db)
    (latest,) = conn.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    conn.close()
    assert go_verify(vkey.stdout.strip(), bytes(latest), work).returncode == 0


def test_no_traceback_for_a_missing_or_wrong_database(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "wattproof.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTPROOF_")}
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database")
    mistyped = tmp_path / "verifer.sqlite"
    cases = [
        (["serve", "--port", "0"], "say which database"),
        (["serve", "--db", str(tmp_path / "no" / "such" / "v.sqlite"), "--port", "0"], "does not exist"),
        (["serve", "--db", str(not_a_db), "--port", "0"], "cannot be used as the verifier's database"),
        (["serve", "--db", str(tmp_path), "--port", "0"], "cannot be used as the verifier's database"),
        (["keys", "list", "--db", str(not_a_db)], "cannot be used as the verifier's database"),
    ]
    cases += [
        (command + ["--db", str(mistyped)], "no database at")
        for command in (
            ["ledger", "key"],
            ["ledger", "audit"],
            ["keys", "list"],
            ["installers", "register", "--name", "a", "--public-key", "x"],
        )
    ]
    for args, text in cases:
        result = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode != 0 and text in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
    assert not mistyped.exists() and not Path(f"{mistyped}.logkey").exists()  # read commands create nothing


@pytest.mark.demo
def test_the_demo_gives_the_same_counts_on_postgresql_with_two_workers(
    tmp_path: Path, pg_cluster: Any, demo_runs: DemoRuns
) -> None:
    """`wattproof serve --database postgresql://... --workers 2` takes the demo's boards, and
    the same run gives the same readings as the suite's demo on SQLite. (Not always the same
    packets: where a packet ends depends on when the board could close and deliver it, a
    question of the host's load.)"""
    result = subprocess.run(
        [*WATTPROOF, "demo", *FIRST_RUN, "--workdir", str(tmp_path), "--database", pg_cluster.new_database()]
        + ["--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "demo OK" in result.stdout, result.stdout[-4000:] + result.stderr
    assert "(2 workers), database postgresql://" in result.stdout
    rows, sqlite = _summary(result.stdout), _summary(demo_runs.first)
    assert all(row[5].startswith("unbroken") for row in rows.values()) and len(rows) == 5
    assert "audit: " in result.stdout and ": OK" in result.stdout
    assert {d: row[1] for d, row in rows.items()} == {d: row[1] for d, row in sqlite.items()}


def test_the_demos_simulated_time_always_ends_before_now() -> None:
    """`demo --hours 48` always failed (the boards' clocks ran past this computer's, and the
    verifier refuses readings from the future); a rerun in the same --workdir did at some hours,
    and fit no hour at others."""
    from wattproof import demo

    extra = 3600 + demo.HALT_AFTER_S
    for now in range(1_796_000_000, 1_796_000_000 + 86400, 3600 + 17):  # every hour of a day
        for hours in (0.5, 10, 48, 168):
            epoch, run, note = demo.plan_time(now, hours, None)
            assert run == hours and not note and epoch % 86400 == 6 * 3600  # a fresh run: all of it, from 06:00
            assert epoch + extra + round(hours * 3600) <= now - demo.CLOCK_MARGIN_S - 86400
            # a rerun of the same folder has a day to go on in, whatever the hour (the suite's
            # demo runs twice: it failed when the first ran late in the morning, UTC)
            assert demo.plan_time(now, 23, epoch + extra + round(hours * 3600))[1:] == (23, "")
            last = epoch + extra + round(hours * 3600)
            for _ in range(4):  # reruns in the same folder go on from where the last stopped
                epoch2, run2, note2 = demo.plan_time(now, hours, last)
                assert epoch2 > last and run2 <= hours
                assert run2 == hours or "fit before this computer's clock" in note2
                if run2:  # measured: the whole run before now
                    assert epoch2 + extra + round(run2 * 3600) <= now - demo.CLOCK_MARGIN_S
                    last = epoch2 + extra + round(run2 * 3600)
                else:  # nothing fits: the boards are only provisioned, at the end of the last run
                    assert epoch2 + 120 <= now
                    break


def test_db_upgrade_creates_a_new_database_on_both_engines(tmp_path: Path, pg_cluster: Any) -> None:
    """As docs/operations.md says: on PostgreSQL it answered "run `wattproof db upgrade` first",
    and on SQLite only `serve` created one."""
    fresh = tmp_path / "new.sqlite"
    for where in (["--db", str(fresh)], ["--database", pg_cluster.new_database(), "--log-key", str(tmp_path / "k")]):
        made = subprocess.run([*WATTPROOF, "db", "upgrade", *where], capture_output=True, text=True, timeout=120)
        assert made.returncode == 0 and "migrations applied" in made.stdout, made.stdout + made.stderr
        again = subprocess.run([*WATTPROOF, "db", "upgrade", *where], capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr
        status = subprocess.run([*WATTPROOF, "db", "status", *where], capture_output=True, text=True, timeout=120)
        assert status.returncode == 0 and "pending" not in status.stdout, status.stdout + status.stderr
    nowhere = subprocess.run([*WATTPROOF, "db", "upgrade", "--db", str(tmp_path / "no" / "v.sqlite")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert nowhere.returncode != 0 and "no folder" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_no_broken_pipe_traceback_under_head(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """`wattproof ... | head`: the reader leaves while the command writes. The command stops
    quietly (exit 141, as a shell reports SIGPIPE), no BrokenPipeError traceback."""
    import io

    from wattproof import cli

    db = tmp_path / "v.sqlite"
    subprocess.run([*WATTPROOF, "db", "upgrade", "--db", str(db)], capture_output=True, timeout=120, check=True)

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            raise io.UnsupportedOperation("no descriptor")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["db", "status", "--db", str(db)]) == 141
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["verify", str(db), "--log-key", "x+00000000+AQ"]) in (2, 141)  # the auditor's command too
    assert "Traceback" not in capsys.readouterr().err


def test_serve_reads_its_settings_once_from_the_file_the_environment_and_the_options(tmp_path: Path) -> None:
    """`serve --config FILE`: the file's settings, under the environment's, under --db; the
    app takes them as read (they are loaded once)."""
    from tests.conftest import serve

    config = tmp_path / "wattproof.toml"
    config.write_text('log_origin = "file.example/log"\ncertificate_interval_s = 0\n')
    proc, url = serve(tmp_path / "v.sqlite", 0, {"WATTPROOF_CHECKPOINT_INTERVAL_S": "0"}, "--config", str(config))
    try:
        key = subprocess.run([*WATTPROOF, "ledger", "key", "--db", str(tmp_path / "v.sqlite"), "--config",
                              str(config)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert key.returncode == 0 and key.stdout.startswith("file.example/log+"), key.stdout + key.stderr
        with urllib.request.urlopen(f"{url}/log/checkpoint", timeout=10) as answer:
            assert answer.read().decode().splitlines()[0] == "file.example/log"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
