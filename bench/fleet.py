"""Benchmark: a city's fleet. Bulk enrollment, then every device's 15-reading packet every 15
simulated minutes, time compressed to a target rate, over HTTP.

    .venv/bin/python bench/fleet.py [--devices 1000] [--slots 4] [--rate 0] [--senders 16]
                                    [--engine sqlite|postgresql] [--workers 2] [--keep-alive]

The devices are hardware/fleet.py's: keys made here, packets built as the firmware builds
them (byte for byte, tests/test_fleet.py). A `wattproof serve` process (SQLite WAL, or with
--engine postgresql a throw-away PostgreSQL cluster on this machine, fsync on) enrolls them in
batches of 1,000 (POST /v1/enrollments/challenges, then /v1/enrollments/batch: each board's
proof of possession and its installer's signature checked one by one). Then --slots rounds:
in each every device sends its next packet (POST /v1/packets), on a new connection as a board
does (--keep-alive: one connection per sender, as a head-end would), --senders at a time; with
--rate the packets are due at that many per second (open loop: a late packet is sent at
once and its latency counts from when it was sent). Reports enrollments/s, packets/s,
p50/p99/max latency from send to receipt, packets lost (answered accepted but not in the
ledger, or never answered accepted) and duplicated (in the ledger twice: `ledger audit`
re-derives the count), and the database's bytes per reading, by table and index.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hardware import fleet  # noqa: E402
from verifier import storage  # noqa: E402


def _wattproof(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "wattproof.cli", *args], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=4, help="15-minute rounds: packets per device")
    parser.add_argument("--rate", type=float, default=0, help="packets/s due (0: as fast as the server answers)")
    parser.add_argument("--senders", type=int, default=16, help="packets in flight")
    parser.add_argument("--keep-alive", action="store_true", help="a connection per sender, not per packet")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=8, help="server threads per worker")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--transport", choices=("http", "mqtt"), default="http",
                        help="mqtt: a local mosquitto, --bridges bridges; --senders connections")  # fmt: skip
    parser.add_argument("--bridges", type=int, default=2, help="bridge processes on one shared subscription")
    parser.add_argument("--held", type=int, default=0,
                        help="mqtt: idle device connections held by the broker through the run")  # fmt: skip
    parser.add_argument("--checkpoint-gap", type=float, default=0,
                        help="the server's checkpoint_min_gap_s (0: a checkpoint after every batch)")  # fmt: skip
    args = parser.parse_args()
    if args.held:  # a descriptor a connection in the broker started from here
        fleet.raise_file_limit(args.held + 4096)
    from tests.pg import cluster_for

    with cluster_for(args.engine) as cluster:
        return run(args, cluster)


def run(args: argparse.Namespace, cluster: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = cluster.new_database() if cluster is not None else str(work / "verifier.sqlite")
        where = ["--database" if cluster else "--db", db, "--log-key", str(work / "log.key")]
        _wattproof("db", "upgrade", *where)
        admin = _wattproof("keys", "create", "--role", "admin", "--name", "fleet-admin", *where).strip()
        env = {**os.environ, "WATTPROOF_RATE_PACKETS_PER_S": "1000000", "WATTPROOF_RATE_BURST": "1000000"}
        if args.checkpoint_gap:
            env["WATTPROOF_CHECKPOINT_MIN_GAP_S"] = str(args.checkpoint_gap)
            env["WATTPROOF_CHECKPOINT_INTERVAL_S"] = str(args.checkpoint_gap)
        server = subprocess.Popen(
            [sys.executable, "-m", "wattproof.cli", "serve", *where, "--port", "0", "--threads", str(args.threads),
             "--workers", str(args.workers)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().strip().rsplit(" ", 1)[1]
        threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()  # type: ignore[union-attr]
        broker, bridges = None, []
        if args.transport == "mqtt":
            from wattproof.broker import LocalBroker

            broker = LocalBroker(work / "broker")
            broker.start()
            bridges = [subprocess.Popen([sys.executable, "-m", "wattproof.cli", "mqtt", *where, "--broker", broker.url,
                                         "--client-id", f"bench-bridge-{i}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=env) for i in range(args.bridges)]  # fmt: skip
        try:
            t = time.perf_counter()
            devices = fleet.fleet(args.devices)
            made = time.perf_counter() - t
            enroll_s = fleet.enroll(url, admin, devices)
            start = (int(time.time()) - args.slots * fleet.SLOT_S - 86400) // fleet.SLOT_S * fleet.SLOT_S
            if broker is not None:
                time.sleep(2)  # the bridges' subscriptions

            def stream_of(slots: int, first: int) -> fleet.Stream:
                if broker is not None:
                    return fleet.MqttStream(broker.url, devices, slots, first, args.rate, connections=args.senders)
                return fleet.Stream(int(url.rsplit(":", 1)[1]), devices, slots, first, args.rate, args.senders,
                                    args.keep_alive)  # fmt: skip

            # The first slot apart: what the database grows by after it is the cost of each
            # further reading (the devices' own rows, their enrollments, are paid by then).
            held = None
            if broker is not None and args.held:
                t = time.perf_counter()
                held = fleet.HeldConnections("127.0.0.1", broker.port, args.held)
                print(f"broker    {held.count:,} device connections opened and held in {time.perf_counter() - t:.1f} s")
            busy0 = _cpu_busy()
            stream = stream_of(1, start)
            seconds = stream.run()
            after_first = _bytes(db)
            if args.slots > 1:
                rest = stream_of(args.slots - 1, start + fleet.SLOT_S)
                seconds += rest.run()
                stream.latencies += rest.latencies
                stream.errors += rest.errors
                for status, count in rest.answers.items():
                    stream.answers[status] = stream.answers.get(status, 0) + count
            busy, total = (b - a for a, b in zip(busy0, _cpu_busy(), strict=True))
            if held is not None:
                print(f"broker    {held.still_held():,} of the {held.count:,} held connections still answered"
                      " a ping after the stream")  # fmt: skip
        finally:
            for proc in [server, *bridges]:
                proc.terminate()
                proc.wait()
            if broker is not None:
                broker.stop()
        sent = args.devices * args.slots
        lat = sorted(stream.latencies)
        n = len(lat)
        audit = subprocess.run([sys.executable, "-m", "wattproof.cli", "ledger", "audit", *where], capture_output=True,
                               text=True)  # fmt: skip
        summary = audit.stdout.strip().splitlines()[0] if audit.stdout.strip() else audit.stderr.strip()
        in_ledger = int(summary.split("packets ")[1].split(",")[0]) if "packets " in summary else -1
        accepted = stream.answers.get(201, 0)
        links = "keep-alive" if args.keep_alive else "a connection per packet"
        if broker is not None:
            links = f"MQTT through mosquitto, {args.bridges} bridges, {args.senders} publishing connections"
        gap = f"; a checkpoint at most every {args.checkpoint_gap:g} s" if args.checkpoint_gap else ""
        print(f"machine   {os.cpu_count()} cores; {args.engine}; server {args.workers} worker(s) x {args.threads}"
              f" threads; {args.senders} senders, {links}{gap}")  # fmt: skip
        print(f"fleet     {args.devices:,} devices: keys made in {made:.1f} s; enrolled in {enroll_s:.1f} s"
              f" ({args.devices / enroll_s:,.0f} enrollments/s)")  # fmt: skip
        print(f"packets   {sent:,} of {fleet.READINGS_PER_PACKET} readings ({args.slots} slots) in {seconds:.1f} s:"
              f" {n / seconds:,.0f} packets/s, {n * fleet.READINGS_PER_PACKET / seconds:,.0f} readings/s"
              + (f" (due at {args.rate:,.0f}/s)" if args.rate else ""))  # fmt: skip
        print(f"latency   send to receipt p50 {lat[n // 2] * 1000:.1f} ms, p99 {lat[int(n * 0.99)] * 1000:.1f} ms,"
              f" max {lat[-1] * 1000:.1f} ms")  # fmt: skip
        lost = sent - accepted + max(0, accepted - in_ledger)
        print(f"answers   {dict(sorted(stream.answers.items()))}; lost {lost},"
              f" duplicated {max(0, in_ledger - accepted)} (ledger holds {in_ledger:,} packets)")  # fmt: skip
        for e in stream.errors:
            print(f"          e.g. {e}")
        print(f"machine   all cores {100 * busy / total:.0f} % busy during the stream")
        print(f"audit     {summary}")
        _space(db, in_ledger * fleet.READINGS_PER_PACKET)
        if args.slots > 1:
            further = (args.slots - 1) * args.devices * fleet.READINGS_PER_PACKET
            print(f"          each further reading: {(_bytes(db) - after_first) / further:,.1f} B"
                  f" (the growth after the first slot, over its {further:,} readings)")  # fmt: skip
        return 0 if audit.returncode == 0 and accepted == sent == in_ledger else 1


def _bytes(db: str) -> int:
    conn = storage.connect(db, upgrade=False)
    try:
        return sum(r[2] for r in conn.space())
    finally:
        conn.close()


def _space(db: str, readings: int) -> None:
    """Bytes on disk per reading, by table and index (the tables that grow with readings)."""
    conn = storage.connect(db, upgrade=False)
    try:
        rows = sorted(conn.space(), key=lambda r: -r[2])
    finally:
        conn.close()
    total = sum(r[2] for r in rows)
    print(f"database  {total / 1e6:,.1f} MB, {total / max(1, readings):,.1f} B per reading ({readings:,} readings)")
    for table, name, size in rows:
        if size * 100 >= total:  # the ones that weigh 1 % or more
            label = table if name == table else f"{table} / {name}"
            print(f"          {label:44} {size / max(1, readings):7.1f} B per reading")


def _cpu_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


if __name__ == "__main__":
    sys.exit(main())
