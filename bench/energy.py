"""Benchmark: the energy endpoint on a year of one-minute readings.

    .venv/bin/python bench/energy.py [--days 365] [--samples 20]

Ingests --days of one-minute meter readings of one device through the verifier's own
ingest (signed packets of 240 readings, every check), then asks
`GET /v1/devices/ID/energy` through the Flask app (a utility's key, JSON encoding
included) for the whole year by day, the whole year by hour (8,760 intervals, one request)
and a day by quarter hour, and reports p50 and max per query; then the year by hour as the
verifier's own work computes it (`records.intervals`, no JSON). Target: a year by hour
under 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cbor2  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # noqa: E402

from provisioning.enrollment import Installer, enrollment_request  # noqa: E402
from verifier import auth, storage  # noqa: E402
from verifier.app import create_app  # noqa: E402
from verifier.devices import ingest, lifecycle, records  # noqa: E402
from verifier.wire import (  # noqa: E402
    cose,
    merkle,  # noqa: E402
    strict_cbor,
)
from verifier.wire.packet import GENESIS, decode_packet  # noqa: E402

PER_PACKET = 240
N = cose.P256_ORDER


def _es256(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + min(s, N - s).to_bytes(32, "big")


def _packet(
    key: ec.EllipticCurvePrivateKey, kid: bytes, device_id: str, seq: int, prev: bytes, first: int, t0: int
) -> bytes:
    ts = [t0 + 60 * i for i in range(PER_PACKET)]
    readings = [
        strict_cbor.dumps({0: 1, 1: first + i, 2: t, 3: 2, 10: 10 * (first + i), 11: 0}) for i, t in enumerate(ts)
    ]
    header = {
        1: 1,
        2: device_id,
        3: seq,
        4: prev,
        5: merkle.root([merkle.leaf_hash(r) for r in readings]),
        6: len(readings),
        7: ts[0],
        8: ts[-1],
    }
    protected, payload = strict_cbor.dumps({1: -7, 4: kid}), strict_cbor.dumps(header)
    sig = _es256(key, cose.to_be_signed(protected, payload))
    return strict_cbor.dumps([cbor2.CBORTag(18, [protected, {}, payload, sig]), readings])


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def enroll(conn: storage.Connection, device_id: str, role: str = "producer") -> ec.EllipticCurvePrivateKey:
    """Enrolls device_id (a new key, its own meter) as an installer would; returns its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    installer = Installer.generate(f"installer-{device_id}")
    with storage.transaction(conn):
        lifecycle.register_installer(conn, installer.name, installer.public_key, "bench")
        challenge = lifecycle.new_challenge(conn)
    device = {
        "device_id": device_id,
        "public_key": point,
        "role": role,
        "technology": "solar-pv",
        "capacity_w": 50_000,
        "grid_area": "bench",
        "meter_model": "bench",
        "meter_serial": device_id,
    }
    request = enrollment_request(device, challenge, lambda m: _es256(key, m), installer)
    with storage.transaction(conn):
        lifecycle.enroll(conn, strict_cbor.loads(request))
    return key


def ingest_year(conn: storage.Connection, device_id: str, days: int, role: str = "producer") -> int:
    """Enrolls device_id and ingests days of its one-minute meter readings (10 Wh a minute)
    through the verifier's own checks, ending a day before now; returns the first day's start."""
    key = enroll(conn, device_id, role)
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    minutes = days * 1440
    t0 = int(time.time()) - minutes * 60 - 86400
    t0 -= t0 % 86400
    prev, kid = GENESIS, cose.key_id(point)
    for seq in range(minutes // PER_PACKET):
        data = _packet(key, kid, device_id, seq, prev, seq * PER_PACKET, t0 + seq * PER_PACKET * 60)
        outcome = ingest.accept_packet(conn, data)
        assert isinstance(outcome, ingest.Outcome), outcome
        prev = decode_packet(data).header_hash
    return t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE": str(Path(tmp) / "v.sqlite")})
        conn = storage.connect(app.config["DATABASE"])
        t = time.perf_counter()
        t0 = ingest_year(conn, "bench-1", args.days)
        build = time.perf_counter() - t
        readings = records.stored(conn)["readings"]
        print(f"ingest    {readings:,} readings in {build:.0f} s ({readings / build:,.0f} readings/s)")
        with storage.transaction(conn):
            token = auth.create_key(conn, "bench", "utility")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        queries = {
            f"{args.days} days by day": (t0, t0 + args.days * 86400, "1d"),
            f"{args.days} days by hour": (t0, t0 + args.days * 86400, "1h"),
            "one day by quarter hour": (t0 + 86400 * (args.days // 2), t0 + 86400 * (args.days // 2 + 1), "15m"),
        }
        for name, (start, end, interval) in queries.items():
            times = []
            for _ in range(args.samples):
                t = time.perf_counter()
                r = client.get(f"/v1/devices/bench-1/energy?from={start}&to={end}&interval={interval}", headers=headers)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, r.data
            intervals = r.get_json()["intervals"]
            total = sum(i["import_wh"] for i in intervals if i["import_wh"] is not None)
            print(
                f"energy    {name:24} {len(intervals):5} intervals, {total:,} Wh:"
                f" p50 {percentile(times, 0.5) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms ({len(times)} requests)"
            )
        times = []
        for _ in range(args.samples):
            t = time.perf_counter()
            hours = records.intervals(conn, "bench-1", t0, t0 + args.days * 86400, 3600)
            times.append(time.perf_counter() - t)
        print(
            f"intervals {args.days} days by hour (no JSON)  {len(hours):5} intervals:"
            f" p50 {percentile(times, 0.5) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms ({len(times)} calls)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
