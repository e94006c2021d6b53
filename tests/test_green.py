"""The green share of charging sessions on both engines: each session's energy split into
its hours exactly, covered hour by hour by certificates claimed for the charger (named, or
its account's share) and by its community's allocation, never a Wh twice; in the API."""

from __future__ import annotations

import random
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import Database
from tests.enroll import enroll, es256_signer, record
from tests.meters import HOUR, T0, Meter
from tests.test_api_contract import _check
from verifier import storage
from verifier.certificates import issuance, registry
from verifier.charging import green_share, sessions
from verifier.communities import operation
from verifier.devices import ingest, records
from verifier.log import note
from verifier.wire import ocmf, strict_cbor
from verifier.wire.packet import GENESIS, decode_packet, decode_reading

LOG = note.Signer.generate("test.example/log")
NOW = T0 + 40 * 86400


class MeteredCharger:
    """A charger of ours: a meter reading every minute and its sessions' readings between
    them, in one chain, through the verifier's ingest checks."""

    def __init__(self, db: storage.Connection, device_id: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.db, self.device_id = db, device_id
        device = record(device_id, forge.point(self.key), role="charger", capacity_w=22_000)
        del device["technology"]
        enroll(db, device, es256_signer(self.key))
        self.raws: list[bytes] = []
        self.ts: list[int] = []
        self.register = 50_000
        self.open: dict[bytes, tuple[int, int]] = {}
        self.sent, self.seq, self.prev = 0, 0, GENESIS

    def _add(self, fields: dict[int, Any], at: int) -> None:
        self.raws.append(strict_cbor.dumps({1: len(self.raws), 2: at, 3: 2, **fields}))
        self.ts.append(at)

    def run(self, minutes: int, sessions: list[tuple[bytes, int, int]], wh_per_min: int = 20, first: int = 0) -> None:
        """From T0 + first minutes, minute by minute; sessions (id, start, stop) draw
        wh_per_min while open. Sends what it has not sent yet."""
        for m in range(first, minutes + 1):
            at = T0 + 60 * m
            for sid, _, end in sessions:
                if at == end:
                    start_at, start_wh = self.open.pop(sid)
                    number = len(self.raws)
                    text = ocmf.payload(self.device_id, number, None, (start_at, 2, start_wh), (at, 2, self.register))
                    signature = self.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
                    self._add({0: 2, 20: 3, 21: sid, 22: 1, 23: self.register, 25: 1, 26: signature}, at)
            self._add({0: 1, 10: self.register, 11: 0}, at)
            for sid, begin, end in sessions:
                if at == begin:
                    self.open[sid] = (at, self.register)
                    self._add({0: 2, 20: 1, 21: sid, 22: 1, 23: self.register}, at)
                elif begin < at < end and (at - begin) % 600 == 0:
                    self._add({0: 2, 20: 2, 21: sid, 22: 1, 23: self.register}, at)
            if any(begin <= at < end for _, begin, end in sessions):
                self.register += wh_per_min
        packets = []
        for n in range(self.sent, len(self.raws), 60):
            raws, ts = self.raws[n : n + 60], self.ts[n : n + 60]
            data = forge.packet(self.key, forge.header_map(self.device_id, self.seq, raws, ts, self.prev), raws)
            packets.append(data)
            self.prev, self.seq = decode_packet(data).header_hash, self.seq + 1
        self.sent = len(self.raws)
        results = ingest.accept_batch(self.db, packets, now=self.ts[-1] + 60)
        assert all(isinstance(r, ingest.Outcome) for r in results), results


S1, S2 = b"\x01" * 16, b"\x02" * 16
SESSIONS = [(S1, T0 + 1800, T0 + 9000), (S2, T0 + 9600, T0 + 10200)]


def _setting(conn: storage.Connection) -> None:
    """pv-1 (not in the community): 3,000 Wh an hour, then 300; pv-2 (in it): 600 an hour.
    The charger draws 1,200 Wh an hour in its sessions: session 1 from 00:30 to 02:30
    (600 + 1,200 + 600 Wh), session 2 from 02:40 to 02:50 (200 Wh). The operator claims for
    the charger 200, 300 and 300 Wh of pv-1 and 600 Wh of pv-2's hour 1."""
    with storage.transaction(conn):
        registry.create_account(conn, "sun", "Rooftops", "producer", now=T0)
        registry.create_account(conn, "cpo", "Charge point operator", "consumer", now=T0)
    pv1 = Meter(conn, "pv-1", start=T0)
    pv2 = Meter(conn, "pv-2", start=T0)
    charger = MeteredCharger(conn, "charger-g")
    with storage.transaction(conn):
        registry.assign_device(conn, "sun", "pv-1", now=T0)
        registry.assign_device(conn, "sun", "pv-2", now=T0)
        registry.assign_device(conn, "cpo", "charger-g", now=T0)
        operation.create(conn, "rue", "Rue solaire", "FR-ENEDIS-PARIS", "EUR", T0, "0.10", now=T0)
        operation.add_member(conn, "rue", "pv-2", T0)
        operation.add_member(conn, "rue", "charger-g", T0)
    pv1.send(3 * 60 + 10, wh_per_min=lambda ts: 5 if ts >= T0 + 2 * HOUR else 50)
    pv2.send(3 * 60 + 10, wh_per_min=10)
    charger.run(3 * 60 + 10, SESSIONS)
    with storage.transaction(conn):
        issued, _ = issuance.issue_pending(conn, NOW, LOG.name)
    first = {(b["device_id"], b["production_starting_interval"]): b["bundle_id_range_start"] for b in issued}
    ranges = [[first["pv-1", T0 + h * HOUR], first["pv-1", T0 + h * HOUR] + wh - 1] for h, wh in ((0, 200), (1, 300),
              (2, 300))] + [[first["pv-2", T0 + HOUR], first["pv-2", T0 + HOUR] + 599]]  # fmt: skip
    with storage.transaction(conn):
        everything = [[b["bundle_id_range_start"], b["bundle_id_range_end"]] for b in issued]
        registry.act(conn, "transfer", {"ranges": everything, "to_account": "cpo", "from_account": "sun", "time": NOW})
        registry.act(conn, "claim", {"ranges": ranges, "beneficiary": "cpo", "holder": "cpo",
                                     "consumer_device": "charger-g", "period_start": T0, "period_end": T0 + 3 * HOUR,
                                     "time": NOW})  # fmt: skip


def test_a_session_splits_into_its_hours_exactly() -> None:
    rng = random.Random(7)
    for _ in range(300):
        at, wh, points = T0 + rng.randrange(0, 7200), rng.randrange(0, 10**6), []
        for _ in range(rng.randrange(2, 12)):
            points.append((at, wh))
            at, wh = at + rng.choice((0, 1, 59, 600, 3599, 3600, 7201)), wh + rng.randrange(0, 5000)
        readings = [decode_reading(strict_cbor.dumps({0: 2, 1: n, 2: t, 3: 2, 20: 1 if n == 0 else 2,
                    21: S1, 22: 1, 23: w})) for n, (t, w) in enumerate(points)]  # fmt: skip
        s = sessions.Session("c", S1.hex(), 1, readings[0], None, readings[-1], readings[1:-1])
        split = green_share.session_hours(s)
        assert split is not None and sum(split.values()) == s.energy_wh
        assert all(h % HOUR == 0 and points[0][0] - HOUR < h <= points[-1][0] and wh > 0 for h, wh in split.items())
    # 00:30 to 02:30 without samples: 3,001 Wh along the line, the remainder in the last hour.
    start = decode_reading(strict_cbor.dumps({0: 2, 1: 0, 2: T0 + 1800, 3: 2, 20: 1, 21: S1, 22: 1, 23: 0}))
    stop = decode_reading(strict_cbor.dumps({0: 2, 1: 1, 2: T0 + 9000, 3: 2, 20: 3, 21: S1, 22: 1, 23: 3001}))
    split = green_share.session_hours(sessions.Session("c", S1.hex(), 1, start, None, stop))
    assert split == {T0: 750, T0 + HOUR: 1500, T0 + 2 * HOUR: 751}
    assert green_share.session_hours(sessions.Session("c", S1.hex(), 1, start, None)) is None  # open


def test_certificates_and_the_community_cover_each_session_hour_by_hour(conn: storage.Connection) -> None:
    _setting(conn)
    found = sessions.for_device(conn, "charger-g")
    assert [(s.state, s.energy_wh, s.ocmf_verified) for s in found] == [("completed", 2400, True),
                                                                          ("completed", 200, True)]  # fmt: skip
    shares = green_share.of_sessions(conn, "charger-g", found, hours=True)
    one, two = shares[S1.hex()], shares[S2.hex()]
    assert one is not None and two is not None
    # Hour 0: load 600, the community 300 (its two last quarters: 150 of 300 each), pv-1 200.
    # Hour 1: load 1,200, community 600; pv-2's 600 certify Wh the community allocated
    # already: only pv-1's 300 add. Hour 2: load 800 (600 + 200), community 300 + 200, pv-1 300.
    assert [(h["energy_wh"], h["green_wh"], h["community_wh"], h["certificates_wh"]) for h in one.hours] == [
        (600, 500, 300, 200),
        (1200, 900, 600, 300),
        (600, 600, 375, 225),
    ]
    assert [(h["energy_wh"], h["green_wh"], h["community_wh"]) for h in two.hours] == [(200, 200, 125)]
    assert (one.energy_wh, one.green_wh, one.community_wh, one.certificates_wh) == (2400, 2000, 1275, 725)
    assert one.as_json()["share"] == round(2000 / 2400, 6) and two.as_json()["share"] == 1.0
    # The charger's load is its meter's; the community's steps give the local Wh.
    loads = [h["import_wh"] for h in records.energy(conn, "charger-g", T0, T0 + 3 * HOUR, "1h")]
    assert loads == [600, 1200, 800] == [one.hours[0]["charger_load_wh"], 1200, one.hours[2]["charger_load_wh"]]
    local = sum(s.allocated.get("charger-g", 0) for s in operation.steps(conn, "rue", T0, T0 + 3 * HOUR))
    assert local == one.community_wh + two.community_wh
    # No hour gives its sessions more than the charger's green supply.
    for h in range(3):
        given = sum(x.hours[k]["green_wh"] for x in (one, two) for k in range(len(x.hours))
                    if x.hours[k]["start"] == T0 + h * HOUR)  # fmt: skip
        assert given <= one.hours[min(h, 2)]["charger_green_wh"]


def test_a_claim_for_the_account_is_shared_by_load_and_a_charger_without_claims_is_grey(
    conn: storage.Connection,
) -> None:
    with storage.transaction(conn):
        registry.create_account(conn, "sun", "Rooftops", "producer", now=T0)
        registry.create_account(conn, "cpo", "Charge point operator", "consumer", now=T0)
    pv = Meter(conn, "pv-1", start=T0)
    office = Meter(conn, "office-1", role="consumer", capacity_w=20_000, start=T0)
    charger = MeteredCharger(conn, "charger-g")
    with storage.transaction(conn):
        for account, device in (("sun", "pv-1"), ("cpo", "office-1"), ("cpo", "charger-g")):
            registry.assign_device(conn, account, device, now=T0)
    pv.send(2 * 60 + 10, wh_per_min=50)
    office.send(2 * 60 + 10, wh_per_min=60)  # 3,600 Wh an hour beside the charger's 1,200
    charger.run(2 * 60 + 10, [(S1, T0, T0 + 2 * HOUR)])
    (s,) = sessions.for_device(conn, "charger-g")
    grey = green_share.of_sessions(conn, "charger-g", [s])[S1.hex()]
    assert grey is not None and (grey.energy_wh, grey.green_wh, grey.as_json()["share"]) == (2400, 0, 0.0)
    with storage.transaction(conn):
        issued, _ = issuance.issue_pending(conn, NOW, LOG.name)
        everything = [[b["bundle_id_range_start"], b["bundle_id_range_end"]] for b in issued]
        registry.act(conn, "transfer", {"ranges": everything, "to_account": "cpo", "from_account": "sun", "time": NOW})
        hour0 = [b for b in issued if b["production_starting_interval"] == T0][0]["bundle_id_range_start"]
        registry.act(conn, "claim", {"ranges": [[hour0, hour0 + 2399]], "beneficiary": "cpo", "holder": "cpo",
                                     "period_start": T0, "period_end": T0 + HOUR, "time": NOW})  # fmt: skip
    shared = green_share.of_sessions(conn, "charger-g", [s], hours=True)[S1.hex()]
    # 2,400 Wh for 4,800 Wh of the account's load in hour 0: the charger's 1,200 get 600.
    assert shared is not None and [h["green_wh"] for h in shared.hours] == [600, 0]
    assert shared.certificates_wh == 600 and shared.community_wh == 0


def test_the_api_gives_each_session_its_green_share(database: Database, conn: storage.Connection) -> None:
    from verifier import auth
    from verifier.app import create_app

    _setting(conn)
    with storage.transaction(conn):
        utility = auth.create_key(conn, "utility", "utility")
    client = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0)).test_client()
    headers = {"Authorization": f"Bearer {utility}"}
    answer = client.get("/v1/devices/charger-g/sessions", headers=headers)
    _check(client, answer, "/v1/devices/{device_id}/sessions")
    listed = answer.get_json()["sessions"]
    assert [(x["energy_wh"], x["green"]["green_wh"], x["green"]["community_wh"]) for x in listed] == [
        (2400, 2000, 1275),
        (200, 200, 125),
    ]
    assert "hours" not in listed[0]["green"]
    # A selection by time still shares the hour with the session left out.
    later = client.get(f"/v1/devices/charger-g/sessions?from={T0 + 9000}", headers=headers).get_json()["sessions"]
    assert [x["green"]["green_wh"] for x in later] == [200]
    answer = client.get(f"/v1/devices/charger-g/sessions/{S1.hex()}", headers=headers)
    _check(client, answer, "/v1/devices/{device_id}/sessions/{session_id}")
    one = answer.get_json()
    assert one["green"]["share"] == round(2000 / 2400, 6)
    assert [h["start_time"] for h in one["green"]["hours"]] == [records.iso(T0 + h * HOUR) for h in range(3)]


def test_a_charger_s_new_packet_renews_its_sessions(conn: storage.Connection) -> None:
    """The sessions a worker keeps for a charger are its answer only until the charger's
    next packet: a session open in one packet is stopped by the next."""
    charger = MeteredCharger(conn, "charger-k")
    charger.run(165, SESSIONS)  # session 2 started at 160 minutes, not stopped yet
    first = {s.session_id: s.state for s in sessions.for_device(conn, "charger-k")}
    assert first == {S1.hex(): "completed", S2.hex(): "active"}
    assert {s.session_id: s.state for s in sessions.for_device(conn, "charger-k")} == first
    charger.run(175, SESSIONS, first=166)
    later = {s.session_id: s for s in sessions.for_device(conn, "charger-k")}
    assert later[S2.hex()].state == "completed" and later[S2.hex()].energy_wh == 200
    assert later[S2.hex()].ocmf_verified
