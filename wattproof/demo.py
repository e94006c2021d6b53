"""`wattproof demo`: the whole system as it stands, end to end, on the embedded defaults.

A verifier (its own process, SQLite) on 127.0.0.1 and a virtual board (the firmware
under MicroPython with a 96 KB heap) that is given a key, registered, then measures,
signs and posts packets. The demo then replays one packet (idempotent) and sends a
tampered copy (refused), checks the stored chain, prints a summary, and exits non-zero
if anything it showed failed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from hardware import micropython
from verifier import db as verifier_db
from verifier import devices, strict_cbor
from verifier.packet import GENESIS, decode_header, decode_packet

DEMO_BOARD = micropython.VIRTUAL / "demo_board.py"
DEVICE_ID = "demo-meter-1"
DEADLINE_S = 110  # the demo ends by itself within two minutes


class DemoFailure(RuntimeError):
    pass


def _say(who: str, line: str) -> None:
    print(f"[{who:8}] {line}", flush=True)


def _start_verifier(db_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattproof.cli", "serve", "--db", str(db_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first.startswith("verifier listening on "):
        proc.kill()
        raise DemoFailure(f"verifier did not start: {first}")
    threading.Thread(target=_relay, args=(proc.stdout,), daemon=True).start()
    return proc, first.rsplit(" ", 1)[1]


def _relay(stream: IO[str]) -> None:
    for line in stream:
        _say("verifier", line.rstrip())


def _board(flash: Path, *args: str) -> list[str]:
    """Runs the virtual board to completion, echoing its lines as they come."""
    proc = subprocess.Popen(
        micropython.command(DEMO_BOARD, str(flash), *args),
        env=micropython.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        _say("board", lines[-1])
    if proc.wait(timeout=DEADLINE_S) != 0:
        raise DemoFailure(f"board exited with {proc.returncode}")
    return lines


def _post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url + "/v1/packets", data=body, headers={"Content-Type": "application/cbor"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def run(packets: int = 5, readings: int = 64, workdir: Path | None = None) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wattproof-demo-") as tmp:
        work = workdir or Path(tmp)
        flash = work / "board-flash"
        flash.mkdir(parents=True, exist_ok=True)
        db_path = work / "verifier.sqlite"
        proc, url = _start_verifier(db_path)
        _say("verifier", f"listening on {url}, database {db_path.name} (SQLite, WAL)")
        failures: list[str] = []
        replay_ok = tamper_refused = chain_ok = False
        stored = {"packets": 0, "readings": 0}
        accepted = 0
        try:
            pub_line = next(x for x in _board(flash, "keygen", DEVICE_ID) if x.startswith("PUBKEY "))
            public_key = bytes.fromhex(pub_line.split()[1])
            conn = verifier_db.connect(db_path)
            if devices.public_key(conn, DEVICE_ID) is None:
                devices.register(conn, DEVICE_ID, public_key)
            _say("demo", f"registered {DEVICE_ID}, key born on the board (private key stayed in its flash)")
            start_ts = int(time.time()) // 60 * 60 - 60 * packets * readings
            sent = _board(flash, "run", url, str(packets), str(readings), str(start_ts))
            accepted = sum(1 for line in sent if line.startswith("PACKET ") and line.endswith("status=201"))

            last = (flash / "last-packet.cbor").read_bytes()
            status, body = _post(url, last)
            _say("demo", f"replayed the last packet: HTTP {status} {body.get('status')}")
            replay_ok = status == 200 and body.get("status") == "duplicate"
            if not replay_ok:
                failures.append(f"replay answered {status} {body}")

            status, body = _post(url, _forge_register(last))
            _say(
                "demo",
                f"sent a copy whose last register was raised by 1 kWh: HTTP {status} {body.get('type')}",
            )
            tamper_refused = status == 400 and str(body.get("type", "")).endswith("/merkle-root-mismatch")
            if not tamper_refused:
                failures.append(f"tampered packet answered {status} {body}")

            stored = dict(
                conn.execute(
                    "SELECT COUNT(*) AS packets, SUM(reading_count) AS readings FROM packets WHERE device_id = ?",
                    (DEVICE_ID,),
                ).fetchone()
            )
            chain_ok = _check_chain(conn)
            conn.close()
            if accepted != packets:
                failures.append(f"{accepted} of {packets} packets accepted")
            if not chain_ok:
                failures.append("stored chain is broken")
        except (DemoFailure, OSError, StopIteration) as e:
            failures.append(str(e) or type(e).__name__)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        print()
        print("summary")
        print(f"  packets accepted : {accepted} of {packets} sent")
        print(f"  stored in SQLite : {stored['packets']} packets, {stored['readings']} readings")
        print(f"  chain            : {'unbroken' if chain_ok else 'BROKEN'}")
        print(f"  replayed packet  : {'idempotent' if replay_ok else 'NOT idempotent'}")
        print(f"  tampered packet  : {'refused' if tamper_refused else 'NOT refused'}")
        print(f"  elapsed          : {elapsed:.1f} s")
        if failures:
            print("FAILED:")
            for f in failures:
                print(f"  - {f}")
            return 1
        print("demo OK")
        return 0


def _forge_register(packet_bytes: bytes) -> bytes:
    """The packet with its last reading's import register raised by 1 kWh, validly encoded."""
    packet = decode_packet(packet_bytes)
    forged = strict_cbor.loads(packet.readings[-1].raw)
    forged[10] += 1000
    raws = [r.raw for r in packet.readings[:-1]] + [strict_cbor.dumps(forged)]
    return b"\x82" + packet.cose_sign1 + strict_cbor.dumps(raws)


def _check_chain(conn: sqlite3.Connection) -> bool:
    """Re-decodes every stored header and checks the per-device hash chain."""
    prev = GENESIS
    rows = conn.execute("SELECT header, header_hash FROM packets WHERE device_id = ? ORDER BY seq", (DEVICE_ID,))
    for row in rows:
        header = bytes(row["header"])
        if decode_header(header).prev != prev or hashlib.sha256(header).digest() != bytes(row["header_hash"]):
            return False
        prev = bytes(row["header_hash"])
    return True
