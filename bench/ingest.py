"""Benchmark: ingest over real HTTP, durable commits.

    .venv/bin/python bench/ingest.py [--devices 8] [--packets 250] [--readings 64]
                                     [--batch 1] [--workers 1] [--threads 8]
                                     [--engine sqlite|postgresql] [--witnesses 0]

Packets are built and signed beforehand by the firmware under MicroPython (one chain per
device). A `wattproof serve` process (SQLite WAL, synchronous=FULL, or with --engine
postgresql a throw-away PostgreSQL cluster on this machine (tests/pg.py, fsync on): each
answer follows a durable commit; waitress, forked into --workers processes on one socket)
receives them from a client in a separate process with one sender per device, each
sending its device's packets in order, --batch at a time (1: POST /v1/packets; more:
POST /v1/packets/batch), each request on a
new connection as boards do. Reports packets/s, readings/s, latency percentiles (a packet's
latency is its request's), CPU per packet and how busy the machine was; then times
`wattproof ledger audit` on the result.

With --witnesses N, N `wattproof witness serve` processes run beside it and the server's
cosigner asks them to cosign the latest checkpoint every second (WITNESS_INTERVAL_S=1)
while the stream runs: the report adds each witness round trip (the server's log line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from hardware import sim  # noqa: E402
from tests.enroll import enroll, es256_signer, record  # noqa: E402
from verifier import settings, storage  # noqa: E402

CLIENT = r"""
import http.client, json, sys, threading, time
import cbor2
port, files, batch = int(sys.argv[1]), json.load(open(sys.argv[2])), int(sys.argv[3])
latencies, lock = [], threading.Lock()
def stream(paths):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    bodies = [open(path, "rb").read() for path in paths]
    for i in range(0, len(bodies), batch):
        group = bodies[i : i + batch]
        if batch == 1:
            url, body, ok = "/v1/packets", group[0], 201
        else:
            url, body, ok = "/v1/packets/batch", cbor2.dumps(group), 200
        t = time.perf_counter()
        conn.request("POST", url, body=body, headers={"Content-Type": "application/cbor", "Connection": "close"})
        r = conn.getresponse(); answer = r.read()
        if r.status != ok or (batch > 1 and json.loads(answer)["accepted"] != len(group)):
            sys.exit(f"{url}: HTTP {r.status} {answer[:300]!r}")
        with lock:
            latencies.extend([time.perf_counter() - t] * len(group))
threads = [threading.Thread(target=stream, args=(p,)) for p in files]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
import os
cpu = os.times()
print(json.dumps({"seconds": time.perf_counter() - t0, "latencies": latencies, "cpu": cpu.user + cpu.system}))
"""


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process and its descendants."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += _tree_cpu(int(child))
    return total


def _witness(work: Path, name: str, log_vkey: str) -> tuple[subprocess.Popen[str], str]:
    """A `wattproof witness serve` process for the log; returns it and its WITNESSES setting."""
    key = work / f"{name.rsplit('/', 1)[1]}.witness-key"
    cli = [sys.executable, "-m", "wattproof.cli", "witness"]
    vkey = subprocess.run([*cli, "keygen", "--name", name, "--out", str(key)], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    proc = subprocess.Popen([*cli, "serve", "--key", str(key), "--state", f"{key}.sqlite", "--log", log_vkey,
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, f"{url} {vkey}"


def _cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--packets", type=int, default=250, help="per device")
    parser.add_argument("--readings", type=int, default=64)
    parser.add_argument("--threads", type=int, default=8, help="server threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument(
        "--batch", type=int, default=1, help="packets per request (1: POST /v1/packets, else /v1/packets/batch)"
    )
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--witnesses", type=int, default=0, help="witness processes cosigning during the stream")
    args = parser.parse_args()
    from tests.pg import cluster_for

    with cluster_for(args.engine) as cluster:
        return _run(args, cluster)


def _run(args: argparse.Namespace, cluster: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = cluster.new_database() if cluster is not None else str(work / "verifier.sqlite")
        where = ["--database" if cluster else "--db", db, "--log-key", str(work / "log.key")]
        log_vkey = settings.log_signer(
            {**settings.DEFAULTS, "DATABASE": db, "LOG_KEY_FILE": work / "log.key"}
        ).verifier()
        witnesses = [_witness(work, f"bench.example/w{i}", str(log_vkey)) for i in range(args.witnesses)]
        conn = storage.connect(db)
        streams = []
        start = int(time.time()) - 60 * args.packets * args.readings - 86400
        print(
            f"signing {args.devices} x {args.packets} packets of {args.readings} readings under MicroPython ...",
            flush=True,
        )
        for d in range(args.devices):
            key_hex = f"{d + 1:064x}"
            key = ec.derive_private_key(int(key_hex, 16), ec.SECP256R1())
            paths = sim.make_packets(
                work / f"dev{d}", args.readings, args.packets, key_hex=key_hex, start_ts=start, device_id=f"bench-{d}"
            )
            pub = (work / f"dev{d}" / "device-key.sec1").read_bytes()
            enroll(conn, record(f"bench-{d}", pub, capacity_w=10**9), es256_signer(key))
            streams.append([str(p) for p in paths])
        conn.close()
        files = work / "streams.json"
        files.write_text(json.dumps(streams))
        env = {**os.environ, "WATTPROOF_RATE_PACKETS_PER_S": "100000", "WATTPROOF_RATE_BURST": "100000"}
        if witnesses:
            env["WATTPROOF_WITNESSES"] = json.dumps([w for _, w in witnesses])
            env["WATTPROOF_WITNESS_INTERVAL_S"] = "1"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattproof.cli",
                "serve",
                *where,
                "--port",
                "0",
                "--threads",
                str(args.threads),
                "--workers",
                str(args.workers),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        log_lines: list[str] = []
        threading.Thread(target=lambda: log_lines.extend(server.stdout), daemon=True).start()  # type: ignore[arg-type]
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0]) if cluster else None
        pg0 = _tree_cpu(postmaster) if postmaster else 0.0
        busy0 = _cpu_busy()
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, str(port), str(files), str(args.batch)],
            capture_output=True,
            text=True,
            check=True,
        )
        busy, total = (b - a for a, b in zip(busy0, _cpu_busy(), strict=True))
        server_cpu = _tree_cpu(server.pid)
        pg_cpu = _tree_cpu(postmaster) - pg0 if postmaster else 0.0
        server.terminate()
        server.wait()
        for proc, _ in witnesses:
            proc.terminate()
            proc.wait()
        run = json.loads(result.stdout)
        lat = sorted(run["latencies"])
        n = len(lat)
        print(
            f"machine: {os.cpu_count()} cores; {args.engine}; server {args.workers} worker(s) x "
            f"{args.threads} threads; {args.devices} devices streaming, {args.batch} packet(s) per request"
        )
        print(f"packets   {n} of {args.readings} readings in {run['seconds']:.2f} s")
        print(f"rate      {n / run['seconds']:,.0f} packets/s, {n * args.readings / run['seconds']:,.0f} readings/s")
        print(
            f"latency   p50 {lat[n // 2] * 1000:.1f} ms, p99 {lat[int(n * 0.99)] * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms"
        )
        print(
            f"cpu       server {server_cpu / n * 1000:.2f} ms per packet (all its processes), "
            + (f"PostgreSQL {pg_cpu / n * 1000:.2f} ms per packet, " if postmaster else "")
            + f"client {run['cpu'] / n * 1000:.2f} ms per packet"
        )
        print(f"machine   all cores {100 * busy / total:.0f} % busy during the stream (server, client and the rest)")
        if witnesses:
            trips = sorted(
                float(line.rsplit(" in ", 1)[1].split()[0]) for line in log_lines if " cosigned size " in line
            )
            sizes = [
                int(line.split(" cosigned size ")[1].split()[0]) for line in log_lines if " cosigned size " in line
            ]
            p50, worst = (trips[len(trips) // 2], trips[-1]) if trips else (float("nan"), float("nan"))
            print(
                f"witnesses {len(witnesses)}: {len(trips)} cosignatures during the stream, round trip p50 {p50:.1f} ms,"
                f" max {worst:.1f} ms; largest size cosigned {max(sizes, default=0):,}"
            )
        t = time.perf_counter()
        named = [arg for _, w in witnesses for arg in ("--witness", w.split()[1])]  # their cosignatures checked too
        audit = subprocess.run(
            [sys.executable, "-m", "wattproof.cli", "ledger", "audit", *where, *named], capture_output=True, text=True
        )
        print(f"audit     {audit.stdout.strip().splitlines()[0]} (wall {time.perf_counter() - t:.1f} s)")
        return audit.returncode


if __name__ == "__main__":
    sys.exit(main())
