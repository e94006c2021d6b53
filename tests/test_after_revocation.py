"""What a revoked device's history still answers (found by the model test): a board that
resends a packet the ledger accepted before its revocation gets its receipt again (a
duplicate, so it can let the packet go) while any other packet of it is refused; and a
certificate it produced still has a provenance file that verifies, speaking as of the
registry state it proves (the later revocation is not part of that state)."""

from __future__ import annotations

from typing import Any

from tests import forge
from tests.meters import Meter
from verifier import storage
from verifier.certificates import issuance
from verifier.devices import ingest, lifecycle
from verifier.log import note
from verifier.provenance import build as pf
from verifier.provenance import checks
from verifier.wire.packet import GENESIS
from verifier.wire.problems import PacketError

LOG = note.Signer.generate("test.example/log")
T0 = 1_790_000_000 // 3600 * 3600


def test_a_revoked_boards_resent_packet_gets_its_receipt_and_a_new_one_is_refused(conn: Any) -> None:
    meter = Meter(conn, "pv-r", start=T0 + 60)
    meter.send(120)
    last = ingest.stored_packet(conn, "pv-r", meter.seq - 1)
    with storage.transaction(conn):
        lifecycle.revoke(conn, "pv-r", "taken out of service", "test")
    (again,) = ingest.accept_batch(conn, [last], now=meter.ts + 60)
    assert isinstance(again, ingest.Outcome) and again.duplicate, again
    readings = [forge.meter(meter.number, meter.ts, 100_000, 200_000)]
    later = forge.packet(meter.key, forge.header_map("pv-r", meter.seq, readings, [meter.ts], meter.prev), readings)
    (refused,) = ingest.accept_batch(conn, [later], now=meter.ts + 60)
    assert isinstance(refused, PacketError) and refused.kind == "device-revoked", refused
    # a packet at an accepted seq that differs is no duplicate: refused as revoked too
    other = [forge.meter(0, T0 + 60, 100_000, 100_001)]
    forged = forge.packet(meter.key, forge.header_map("pv-r", 0, other, [T0 + 60], GENESIS), other)
    (refused,) = ingest.accept_batch(conn, [forged], now=meter.ts + 60)
    assert isinstance(refused, PacketError) and refused.kind == "device-revoked", refused


def test_a_certificate_of_a_device_revoked_since_has_a_file_that_verifies(conn: Any) -> None:
    meter = Meter(conn, "pv-c", start=T0 + 60)
    meter.send(126, wh_per_min=10)
    with storage.transaction(conn):
        issued, _ = issuance.issue_pending(conn, meter.ts + 3600, LOG.name, 30 * 86400)
    assert issued
    index = int(conn.execute("SELECT ledger_idx FROM certificates ORDER BY ledger_idx LIMIT 1").fetchone()[0])
    checks.verify(pf.for_certificate(conn, LOG, index), LOG.verifier(), (), 0)
    with storage.transaction(conn):
        lifecycle.revoke(conn, "pv-c", "taken out of service", "test")
    report = checks.verify(pf.for_certificate(conn, LOG, index), LOG.verifier(), (), 0)
    assert report.subject["issuance_ledger_index"] == index and report.subject["status"], report.subject
