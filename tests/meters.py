"""Meters that feed a verifier in process: real signed packets of one-minute readings,
accepted through the verifier's own ingest checks (no HTTP). A producer counts on export_wh,
a consumer on import_wh; each minute's energy is given by a number or by a function of the
minute's start time."""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.enroll import enroll, es256_signer, record
from verifier import storage
from verifier.audit import replay
from verifier.devices import ingest
from verifier.log import note
from verifier.wire.packet import GENESIS, decode_packet

HOUR = 3600
T0 = 1_790_006_400 - 30 * 86400  # a whole hour, a month back


class Meter:
    def __init__(
        self,
        db: storage.Connection,
        device_id: str,
        role: str = "producer",
        capacity_w: int = 4000,
        start: int = T0 + 600,
        **extra: object,
    ) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.db, self.device_id, self.role = db, device_id, role
        device = record(device_id, forge.point(self.key), role=role, capacity_w=capacity_w, **extra)
        if role != "producer":
            device.pop("technology", None)
        enroll(db, device, es256_signer(self.key))
        self.seq, self.number, self.prev, self.ts = 0, 0, GENESIS, start
        self.registers = [100_000, 100_000]  # import_wh, export_wh

    def send(
        self, minutes: int, wh_per_min: int | Callable[[int], int] = 50, per: int = 60, back_at: int | None = None
    ) -> None:
        """minutes one-minute readings, per readings a packet, all accepted in one batch; with
        back_at, the register goes back 200 Wh at that reading (an anomaly: disputed)."""
        counted = 1 if self.role == "producer" else 0
        packets = []
        while minutes > 0:
            n = min(per, minutes)
            ts, readings = [], []
            for _ in range(n):
                if back_at is not None and self.number == back_at:
                    self.registers[counted] -= 200
                ts.append(self.ts)
                readings.append(forge.meter(self.number, self.ts, self.registers[0], self.registers[1]))
                step = wh_per_min(self.ts) if callable(wh_per_min) else wh_per_min
                self.number, self.ts = self.number + 1, self.ts + 60
                self.registers[counted] += step
            data = forge.packet(self.key, forge.header_map(self.device_id, self.seq, readings, ts, self.prev), readings)
            packets.append(data)
            self.prev, self.seq, minutes = decode_packet(data).header_hash, self.seq + 1, minutes - n
        results = ingest.accept_batch(self.db, packets, now=self.ts + 60)
        assert all(isinstance(r, ingest.Outcome) and not r.duplicate for r in results), results


def audit_tampered(db: storage.Connection, statement: str, log_key: note.Verifier) -> replay.Report:
    """The audit's report with one statement applied to the database, which is then rolled back."""
    with storage.transaction(db):
        db.execute("SAVEPOINT tamper")
        db.execute(statement)
        report = replay.audit(db, log_key)
        db.execute("ROLLBACK TO SAVEPOINT tamper")
    return report
