"""What the devices' rows hold that the evidence already says, and how to make it again.

Kept forever, the evidence: the ledger (every entry, with each packet's signed header) and each
packet row's readings (the array its board signed, hashing to the signed root). Derived from
them, kept only so that reads are fast: each device's chain head (its last packet, reading,
meter reading, meter fault, longest packet) and its register edges (the registers at every
quarter hour), and whether its meter's time ever went back. `wattproof db rebuild` writes these
again from the packets, with the rules ingest follows; `wattproof ledger audit` checks the
result as it checks ingest's.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifier.devices import records
from verifier.storage import Connection, transaction
from verifier.wire.packet import EVENT_METER_FAULT, KIND_DEVICE, KIND_METER, Reading, decode_reading


@dataclass
class Rebuilt:
    devices: int = 0
    packets: int = 0
    readings: int = 0
    edges: int = 0
    unordered: int = 0


def rebuild(db: Connection) -> Rebuilt:
    """Deletes and writes again every device's chain head, register edges and time-went-back
    mark from its packets, in one transaction (a failure leaves the rows as they were)."""
    done = Rebuilt()
    with transaction(db):
        for table in ("register_edges", "edges_unordered", "chain_heads"):
            db.execute(f"DELETE FROM {table}")
        devices = [str(d) for (d,) in db.execute("SELECT DISTINCT device_id FROM packets ORDER BY device_id")]
        for device_id in devices:
            _device(db, device_id, done)
            done.devices += 1
    return done


def _device(db: Connection, device_id: str, done: Rebuilt) -> None:
    edges: dict[int, tuple[int | str, ...]] = {}
    meter: Reading | None = None
    last: Reading | None = None
    fault = unordered = False
    span, head = 0, None
    after = -1
    while True:
        rows = db.execute(
            "SELECT seq, header_hash, first_ts, last_ts, readings FROM packets WHERE device_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (device_id, after, records.PAGE),
        ).fetchall()
        for seq, header_hash, first_ts, last_ts, blob in rows:
            readings = [decode_reading(raw) for raw in records.unpack(blob)]
            if not unordered:
                new, went_back, replaced = records.edge_rows(device_id, meter, readings)
                if went_back:
                    unordered, edges = True, {}
                else:
                    if replaced is not None:
                        edges.pop(replaced, None)
                    edges.update((int(row[1]), row) for row in new)
            for r in readings:
                if r.kind == KIND_METER:
                    meter, fault = r, False
                elif r.kind == KIND_DEVICE and r.values["event"] == EVENT_METER_FAULT:
                    fault = meter is not None
            last = readings[-1]
            span = max(span, int(last_ts) - int(first_ts))
            head = (int(seq), bytes(header_hash))
            done.packets += 1
            done.readings += len(readings)
        if len(rows) < records.PAGE:
            break
        after = int(rows[-1][0])
    if head is None or last is None:
        return
    db.insert_rows("register_edges", records.EDGE_COLUMNS, list(edges.values()))
    done.edges += len(edges)
    if unordered:
        db.execute("INSERT INTO edges_unordered (device_id) VALUES (?)", (device_id,))
        done.unordered += 1
    db.execute(
        "INSERT INTO chain_heads (device_id, seq, header_hash, reading, meter, fault, span)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (device_id, *head, last.raw, None if meter is None else meter.raw, int(fault and meter is not None), span),
    )
