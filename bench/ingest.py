"""Benchmark: ingest over real HTTP, durable commits.

    .venv/bin/python bench/ingest.py [--devices 8] [--packets 250] [--readings 64] [--connections 8]

Packets are built and signed beforehand by the firmware under MicroPython (one chain per
device). A `wattproof serve` process (waitress, SQLite WAL, synchronous=FULL: each answer
follows a commit on disk) receives them from a client in a separate process that keeps
--connections requests in flight, each device's packets in order. Reports packets/s,
readings/s and latency percentiles; then times `wattproof ledger audit` on the result.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from hardware import sim  # noqa: E402
from tests.enroll import enroll, es256_signer, record  # noqa: E402
from verifier import db as verifier_db  # noqa: E402

CLIENT = r"""
import http.client, json, sys, threading, time
port, files = int(sys.argv[1]), json.load(open(sys.argv[2]))
latencies, lock = [], threading.Lock()
def stream(paths):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for path in paths:
        body = open(path, "rb").read()
        t = time.perf_counter()
        conn.request("POST", "/v1/packets", body=body, headers={"Content-Type": "application/cbor"})
        r = conn.getresponse(); r.read()
        if r.status != 201:
            sys.exit(f"{path}: HTTP {r.status}")
        with lock:
            latencies.append(time.perf_counter() - t)
threads = [threading.Thread(target=stream, args=(p,)) for p in files]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
import os
cpu = os.times()
print(json.dumps({"seconds": time.perf_counter() - t0, "latencies": latencies, "cpu": cpu.user + cpu.system}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--packets", type=int, default=250, help="per device")
    parser.add_argument("--readings", type=int, default=64)
    parser.add_argument("--threads", type=int, default=8, help="server threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "verifier.sqlite"
        conn = verifier_db.connect(db)
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
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattproof.cli",
                "serve",
                "--db",
                str(db),
                "--port",
                "0",
                "--threads",
                str(args.threads),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert server.stdout is not None
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        threading.Thread(target=server.stdout.read, daemon=True).start()
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, str(port), str(files)], capture_output=True, text=True, check=True
        )
        stat = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        server_cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        server.terminate()
        server.wait()
        run = json.loads(result.stdout)
        lat = sorted(run["latencies"])
        n = len(lat)
        print(
            f"machine: {os.cpu_count()} cores; server {args.workers} worker(s) x {args.threads} threads; "
            f"{args.devices} devices streaming"
        )
        print(f"packets   {n} of {args.readings} readings in {run['seconds']:.2f} s")
        print(f"rate      {n / run['seconds']:,.0f} packets/s, {n * args.readings / run['seconds']:,.0f} readings/s")
        print(
            f"latency   p50 {lat[n // 2] * 1000:.1f} ms, p99 {lat[int(n * 0.99)] * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms"
        )
        print(
            f"cpu       server {server_cpu / n * 1000:.2f} ms per packet (the main process: with --workers, the "
            f"workers are not counted), client {run['cpu'] / n * 1000:.2f} ms per packet"
        )
        t = time.perf_counter()
        audit = subprocess.run(
            [sys.executable, "-m", "wattproof.cli", "ledger", "audit", "--db", str(db)], capture_output=True, text=True
        )
        print(f"audit     {audit.stdout.strip().splitlines()[0]} (wall {time.perf_counter() - t:.1f} s)")
        return audit.returncode


if __name__ == "__main__":
    sys.exit(main())
