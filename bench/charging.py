"""Benchmark: a year of a charger's sessions, and a page of 1,000 OCPI CDRs.

    .venv/bin/python bench/charging.py [--days 365] [--per-day 3] [--engine sqlite|postgresql]

One charger of ours, enrolled the real way with its charge point, charges per-day sessions
a day for days days (two hours each, a sample every 10 minutes, the stop OCMF-signed with
the device key), sent as signed packets of 60 readings through the verifier's own ingest.
Then times, each a few times (median):

- `sessions.for_device`: the year's session records; the first time ever every OCMF
  signature is checked and the checks stored (table ocmf_verdicts), then read;
- `green_share.of_sessions`: their green share, hour by hour (no certificates claimed: the
  hours are still computed);
- `GET /v1/devices/<id>/sessions`: the year's records with their green share, as JSON;
- `GET /ocpi/2.2.1/cdrs?limit=1000`: a page of 1,000 CDRs. Target: under 200 ms.

The two answers are timed cold (the sessions derived from all the readings, as a new
worker does, with the OCMF checks stored by the first derivation), with the sessions the
worker kept from the previous request (the same chain head: nothing new from the charger),
and right after the charger's next packet (the worker folds that packet's readings into
the sessions it kept).

The answers go through the Flask app in process (no socket): the time is the verifier's.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests import forge  # noqa: E402
from tests.enroll import api_key, enroll, es256_signer, record  # noqa: E402
from verifier import storage
from verifier.charging import green_share, sessions  # noqa: E402
from verifier.devices import ingest
from verifier.wire import ocmf, strict_cbor
from verifier.wire.packet import GENESIS, decode_packet  # noqa: E402

DAY = 86400
CHARGE_POINT = {
    "location_id": "LOC-BENCH-0001", "name": "Bench", "address": "1 rue du Banc", "city": "Paris",
    "postal_code": "75011", "country": "FRA", "evse_uid": "EVSE-0001", "evse_id": "FR*WTP*E0001*1",
    "connector_id": "1", "connector_standard": "IEC_62196_T2", "connector_format": "SOCKET",
    "power_type": "AC_3_PHASE",
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=3)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from tests.pg import database_for

    with tempfile.TemporaryDirectory() as tmp, database_for(args.engine, Path(tmp)) as target:
        return _run(args, target, Path(tmp) / "log.key")


def _readings(device_id: str, key: ec.EllipticCurvePrivateKey, start: int, days: int, per_day: int) -> list[bytes]:
    raws: list[bytes] = []
    register = 100_000

    def add(fields: dict[int, Any], at: int) -> None:
        raws.append(strict_cbor.dumps({0: 2, 1: len(raws), 2: at, 3: 2, **fields}))

    for day in range(days):
        for k in range(per_day):
            at = start + day * DAY + (7 + 5 * k) * 3600
            sid = (day * per_day + k).to_bytes(16, "big")
            begin = register
            add({20: 1, 21: sid, 22: 1, 23: register}, at)
            for i in range(1, 12):
                register += 1100 + (day + i) % 400
                add({20: 2, 21: sid, 22: 1, 23: register}, at + 600 * i)
            register += 1000
            stop = at + 7200
            text = ocmf.payload(device_id, len(raws), None, (at, 2, begin), (stop, 2, register))
            signature = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
            add({20: 3, 21: sid, 22: 1, 23: register, 25: 1, 26: signature}, stop)
    return raws


def _median(fn: Any, repeat: int, cold: bool = True, before: Any = None) -> tuple[float, Any]:
    """The median time of fn; cold: with no sessions kept from an earlier call (a new
    worker); before: run first each time, not timed."""
    times, out = [], None
    for _ in range(repeat):
        if cold:
            sessions.forget()
        if before is not None:
            before()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _run(args: argparse.Namespace, target: str, log_key: Path) -> int:
    from verifier.app import create_app

    db = storage.connect(target)
    key = ec.generate_private_key(ec.SECP256R1())
    device_id = "charger-bench"
    device = record(device_id, forge.point(key), role="charger", capacity_w=22_000, charge_point=CHARGE_POINT,
                    location=[48_856_600, 2_352_200])  # fmt: skip
    del device["technology"]
    enroll(db, device, es256_signer(key))
    start = int(time.time()) // DAY * DAY - (args.days + 3) * DAY
    raws = _readings(device_id, key, start, args.days + 2, args.per_day)
    year = args.days * args.per_day * 13  # readings of the year's sessions; the two days after come later
    t = time.perf_counter()
    prev, packets, later = GENESIS, [], []
    cuts = [*range(0, year, 60), *range(year, len(raws), 8)]  # the later readings in small packets
    for seq, (n, end) in enumerate(zip(cuts, [*cuts[1:], len(raws)], strict=True)):
        part = raws[n:end]
        ts = [int(strict_cbor.loads(r)[2]) for r in part]
        data = forge.packet(key, forge.header_map(device_id, seq, part, ts, prev), part)
        prev = decode_packet(data).header_hash
        (packets if n < year else later).append(data)
    for n in range(0, len(packets), 64):
        results = ingest.accept_batch(db, packets[n : n + 64])
        assert all(isinstance(r, ingest.Outcome) for r in results), results
    setup = time.perf_counter() - t
    print(f"{args.engine}: {args.days} days x {args.per_day} sessions, {year:,} readings in {len(packets)} packets"
          f", through ingest in {setup:.1f} s; {len(later)} later packets sent while timing")  # fmt: skip

    sessions.forget()
    t = time.perf_counter()
    sessions.for_device(db, device_id)  # the first derivation ever: every stop checked, the checks stored
    first_s = time.perf_counter() - t
    derive_s, found = _median(lambda: sessions.for_device(db, device_id), args.repeat)
    assert len(found) == args.days * args.per_day and all(s.ocmf_verified for s in found)
    green_s, shares = _median(lambda: green_share.of_sessions(db, device_id, found), args.repeat)
    assert all(g is not None and g.energy_wh == s.energy_wh for s, g in zip(found, shares.values(), strict=True))
    db.close()

    config: dict[str, Any] = {
        "DATABASE": target,
        "LOG_KEY_FILE": str(log_key),
        "RATE_BURST": 10**6,
        "OCPI_PAGE_LIMIT": 1000,
    }
    app = create_app(config)
    client = app.test_client()
    utility = {"Authorization": f"Bearer {api_key(target, 'utility')}"}
    ocpi = {"Authorization": "Token " + base64.b64encode(api_key(target, "utility").encode()).decode()}

    # The answers' bytes are timed (the verifier's work); they are read as JSON after.
    def listing() -> bytes:
        r = client.get(f"/v1/devices/{device_id}/sessions", headers=utility)
        assert r.status_code == 200, r.get_data(True)[:300]
        return r.data

    def page() -> bytes:
        r = client.get("/ocpi/2.2.1/cdrs?limit=1000", headers=ocpi)
        assert r.status_code == 200, r.get_data(True)[:300]
        return r.data

    db = storage.connect(target)
    sent = iter(later)

    def next_packet() -> None:  # the charger's next packet arrives (not timed)
        assert isinstance(ingest.accept_batch(db, [next(sent)])[0], ingest.Outcome)

    list_s, listed = _median(listing, args.repeat)
    page_s, cdrs = _median(page, args.repeat)
    warm_list_s, _ = _median(listing, args.repeat, cold=False)
    warm_page_s, _ = _median(page, args.repeat, cold=False)
    next_list_s, _ = _median(listing, min(args.repeat, len(later) // 2), cold=False, before=next_packet)
    next_page_s, _ = _median(page, min(args.repeat, len(later) // 2), cold=False, before=next_packet)
    db.close()
    listed, cdrs = len(json.loads(listed)["sessions"]), len(json.loads(cdrs)["data"])
    print(f"  session records, a year (sessions.for_device), first ever ({len(found):,} OCMF checks made and stored):"
          f" {first_s * 1000:.0f} ms; cold worker (the checks read): {derive_s * 1000:.0f} ms")  # fmt: skip
    print(f"  green share of every session (green_share.of_sessions):                 {green_s * 1000:.0f} ms")
    print(f"  GET /v1/devices/<id>/sessions ({listed:,} records, JSON):              {list_s * 1000:.0f} ms"
          f", sessions kept: {warm_list_s * 1000:.0f} ms, after the charger's next packet:"
          f" {next_list_s * 1000:.0f} ms")  # fmt: skip
    print(f"  GET /ocpi/2.2.1/cdrs?limit=1000 ({cdrs:,} CDRs of {len(found):,}):          {page_s * 1000:.0f} ms"
          f", sessions kept: {warm_page_s * 1000:.0f} ms, after the charger's next packet:"
          f" {next_page_s * 1000:.0f} ms (target < 200 ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
