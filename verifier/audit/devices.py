"""The audit of the devices' entries: installers, enrollments (ours by their installer's and
the board's signatures, third-party chargers' by their record), packets, key rotations,
revocations, equivocations and flag clearings; then the devices' tables compared."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from verifier.audit.state import Bad, Device, EdgeDigest, Handler, Replay, es256
from verifier.charging import ocmf_chargers
from verifier.devices import identity, records
from verifier.wire import cose, merkle, strict_cbor
from verifier.wire.packet import EVENT_METER_FAULT, KIND_DEVICE, KIND_METER, decode_header, decode_reading
from verifier.wire.problems import Problem


def installer(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    if body["name"] in r.installers:
        raise Bad(index, "installer registered twice")
    r.installers[body["name"]] = (body["public_key"], "active")


def installer_revoke(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    if r.installers.get(body["name"], (b"", ""))[1] != "active":
        raise Bad(index, "revokes an installer that is not active")
    r.installers[body["name"]] = (r.installers[body["name"]][0], "revoked")


def enroll(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """A board's enrollment: by an active installer, whose signature verifies (the rule the
    live path applies, identity.check_installer_sig), with the board's proof of possession."""
    device = body["device"]
    key, status = r.installers.get(body["installer"], (b"", ""))
    if status != "active":
        raise Bad(index, "enrolled by an installer that was not active")
    try:
        identity.check_installer_sig(key, device, body["challenge"], body["pop"], body["installer_sig"])
    except Problem:
        raise Bad(index, "installer signature does not verify") from None
    if not es256(device["public_key"], identity.pop_message(device, body["challenge"]), body["pop"]):
        raise Bad(index, "proof of possession does not verify")
    if device["device_id"] in r.devs or device_id != device["device_id"]:
        raise Bad(index, "device enrolled twice, or under another id")
    attributes = {k: v for k, v in device.items() if k not in ("device_id", "public_key", "role")}
    r.devs[device["device_id"]] = Device(device["public_key"], device["role"], attributes, index)


def ocmf_enroll(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    try:
        device = identity.check_ocmf_charger(dict(body["device"]))
    except (Problem, KeyError, TypeError) as e:
        raise Bad(index, f"a third-party charger's enrollment is not valid: {e}") from None
    if device["device_id"] in r.devs or device_id != device["device_id"]:
        raise Bad(index, "device enrolled twice, or under another id")
    r.devs[device["device_id"]] = Device(device["public_key"], device["role"], ocmf_chargers.attributes(device), index)


def revoke(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    r.device(body["device_id"], index).status = "revoked"


def rotate(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    dev = r.device(body["device_id"], index)
    if "key_index" in body:
        if body["key_index"] != dev.key_index:
            raise Bad(index, "key rotation not bound to the entry that set the device's key")
        message = identity.rotation_message(body["device_id"], body["new_public_key"], cose.key_id(dev.key),
                                            dev.key_index)  # fmt: skip
    else:  # entries of the first release
        message = identity.legacy_rotation_message(body["device_id"], body["new_public_key"])
    if not (es256(dev.key, message, body["old_sig"]) and es256(body["new_public_key"], message, body["new_sig"])):
        raise Bad(index, "key rotation signatures do not verify")
    dev.key, dev.key_index = body["new_public_key"], index


def equivocation(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    dev = r.device(body["device_id"], index)
    accepted, offered = body["accepted"], body["offered"]
    if accepted == offered or decode_header(accepted).seq != decode_header(offered).seq != body["seq"]:
        raise Bad(index, "equivocation evidence is not two headers for one seq")
    dev.flagged = True


def flag_clear(r: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    dev = r.device(body["device_id"], index)
    if not dev.flagged:
        raise Bad(index, "clears the flag of a device that was not flagged")
    dev.flagged = False


def packet(replay: Replay, index: int, device_id: str | None, body: dict[str, Any]) -> None:
    """A device's packet: signed with its key of the time, continuing its chain, its stored
    readings hashing to the signed root, its rows (packets, anomalies, edges) as ingest wrote them."""
    db, report = replay.db, replay.report
    dev = replay.device(body["device_id"], index)
    if dev.status != "active":
        raise Bad(index, "packet from a revoked device")
    header_bytes = body["header"]
    top = strict_cbor.loads(header_bytes, tags=(cose.TAG_SIGN1,))
    protected, _, payload, signature = top.value
    if cose.decode_protected(strict_cbor.loads(protected)) != cose.key_id(dev.key):
        raise Bad(index, "packet signed with a key that was not the device's")
    if not es256(dev.key, cose.to_be_signed(protected, payload), signature):
        raise Bad(index, "packet header signature does not verify")
    h = decode_header(header_bytes)
    if h.device_id != body["device_id"] or h.seq != dev.seq + 1 or h.prev != dev.prev or h.seq != body["seq"]:
        raise Bad(index, "packet does not continue the device's chain")
    # The packet row's readings: the array the board signed, each hashing into the signed root.
    row = db.execute("SELECT readings FROM packets WHERE device_id = ? AND seq = ?", (h.device_id, h.seq)).fetchone()
    if row is None:
        raise Bad(index, f"no packets row for packet {h.seq} of {h.device_id} (a partition detached?)")
    try:
        raws = records.unpack(row[0])
    except Exception:  # noqa: BLE001 - whatever the bytes are, they are not the packet's readings
        raise Bad(index, "the packet row's readings are not an array of byte strings") from None
    if not all(type(r) is bytes for r in raws):
        raise Bad(index, "the packet row's readings are not an array of byte strings")
    if len(raws) != h.count or merkle.root([merkle.leaf_hash(r) for r in raws]) != h.root:
        raise Bad(index, "stored readings do not hash to the packet's signed root")
    previous_meter = None if dev.meter_raw is None else decode_reading(dev.meter_raw)
    decoded = []
    for raw in raws:
        reading = decode_reading(raw)
        decoded.append(reading)
        if reading.number != dev.last_number + 1:
            raise Bad(index, "reading numbers are not consecutive")
        dev.last_number = reading.number
        dev.last_raw = reading.raw
        if reading.kind == KIND_METER:
            dev.meter_raw, dev.fault = reading.raw, False
        elif reading.kind == KIND_DEVICE and reading.values["event"] == EVENT_METER_FAULT:
            dev.fault = dev.meter_raw is not None
    stored = db.execute(
        "SELECT header_hash, ledger_idx, reading_count, first_number, first_ts, last_ts FROM packets"
        " WHERE device_id = ? AND seq = ?",
        (h.device_id, h.seq),
    ).fetchone()
    expected = (
        hashlib.sha256(header_bytes).digest(),
        index,
        h.count,
        dev.last_number - h.count + 1,
        h.first_ts,
        h.last_ts,
    )
    if stored is None or (bytes(stored[0]), *stored[1:]) != expected:
        raise Bad(index, "packets row differs from the ledger")
    recorded = sorted(
        (int(n), c, d)
        for n, c, d in db.execute("SELECT number, check_type, detail FROM anomalies WHERE ledger_idx = ?", (index,))
    )
    if recorded != sorted((int(n), c, d) for n, c, d in body.get("anomalies", [])):
        raise Bad(index, "anomalies table differs from the packet's ledger entry")
    report.anomalies += len(recorded)
    if not dev.unordered:
        edge_rows, dev.unordered, _ = records.edge_rows(h.device_id, previous_meter, decoded)
        for row in edge_rows:
            dev.edges.add(row)
    dev.seq, dev.prev = h.seq, hashlib.sha256(header_bytes).digest()
    dev.span = max(dev.span, h.last_ts - h.first_ts)
    dev.packets.append((h.seq, index))
    report.packets += 1
    report.readings += len(raws)


HANDLERS: dict[str, Handler] = {
    "installer": installer,
    "installer-revoke": installer_revoke,
    "enroll": enroll,
    "ocmf-enroll": ocmf_enroll,
    "packet": packet,
    "revoke": revoke,
    "rotate": rotate,
    "equivocation": equivocation,
    "flag-clear": flag_clear,
}


def compare_edges(r: Replay) -> None:
    """The register_edges rows and edges_unordered as the devices' readings give them."""
    db, devs = r.db, r.devs
    derived = {d: dev.edges.finish() for d, dev in devs.items() if not dev.unordered and dev.edges.count()}
    stored: dict[str, EdgeDigest] = {}
    for row in db.execute(f"SELECT {', '.join(records.EDGE_COLUMNS)} FROM register_edges ORDER BY device_id, t"):
        stored.setdefault(row[0], EdgeDigest()).add(tuple(row))
    found = {d: digest.finish() for d, digest in stored.items()}
    if found != derived:
        wrong = sorted(set(found.items()) ^ set(derived.items()))[0][0]
        raise Bad(None, f"register_edges rows of {wrong} differ from its readings")
    unordered = {str(r[0]) for r in db.execute("SELECT device_id FROM edges_unordered")}
    if unordered != {d for d, dev in devs.items() if dev.unordered}:
        raise Bad(None, "edges_unordered differs from the devices whose meter time went back")


def compare_devices(r: Replay) -> None:
    """The installers and devices tables as the entries leave them."""
    db, devs = r.db, r.devs
    stored_installers = {
        row[0]: (bytes(row[1]), row[2]) for row in db.execute("SELECT name, public_key, status FROM installers")
    }
    if stored_installers != r.installers:
        raise Bad(None, "installers table differs from the ledger")
    for row in db.execute(
        "SELECT device_id, public_key, kid, role, attributes, status, flagged, enrolled_idx FROM devices"
    ):
        dev = devs.get(row[0])
        if dev is None:
            raise Bad(None, f"device {row[0]} is in the table but was never enrolled")
        stored = (bytes(row[1]), bytes(row[2]), row[3], json.loads(row[4]), row[5], bool(row[6]), int(row[7]))
        derived = (dev.key, cose.key_id(dev.key), dev.role, dev.attributes, dev.status, dev.flagged, dev.enrolled_idx)
        if stored != derived:
            raise Bad(
                dev.packets[-1][1] if dev.packets else dev.enrolled_idx,
                f"devices row of {row[0]} differs from the ledger",
            )


def compare_chains(r: Replay) -> None:
    """The meters of the active devices; the devices, packets, readings and anomalies counted;
    every device's chain head as its packets leave it."""
    db, devs, report = r.db, r.devs, r.report
    meters: dict[tuple[str, str], str] = {}
    for device_id, dev in devs.items():  # in enrollment order: the first device keeps a shared meter
        model, serial = dev.attributes.get("meter_model"), dev.attributes.get("meter_serial")
        if dev.status == "active" and serial != identity.UNKNOWN_SERIAL:
            meters.setdefault((str(model), str(serial)), device_id)
    stored_meters = {(m[0], m[1]): m[2] for m in db.execute("SELECT meter_model, meter_serial, device_id FROM meters")}
    if stored_meters != meters:
        raise Bad(None, "meters table differs from the active devices' enrollments")
    if db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] != len(devs):
        raise Bad(None, "a device enrolled in the ledger is missing from the devices table")
    if db.execute("SELECT COUNT(*) FROM packets").fetchone()[0] != report.packets:
        raise Bad(None, "the packets table holds rows the ledger does not")
    if db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0] != report.anomalies:
        raise Bad(None, "the anomalies table holds rows no packet entry records")
    heads = {
        h[0]: (int(h[1]), bytes(h[2]), bytes(h[3]), None if h[4] is None else bytes(h[4]), bool(h[5]), int(h[6]))
        for h in db.execute("SELECT device_id, seq, header_hash, reading, meter, fault, span FROM chain_heads")
    }
    for device_id, dev in devs.items():
        chain = None if dev.last_raw is None else (dev.seq, dev.prev, dev.last_raw, dev.meter_raw, dev.fault, dev.span)
        if heads.pop(device_id, None) != chain:
            raise Bad(
                dev.packets[-1][1] if dev.packets else dev.enrolled_idx,
                f"chain_heads row of {device_id} differs from its packets",
            )
    if heads:
        raise Bad(None, f"chain_heads holds a row for {sorted(heads)[0]}, which has no packets")
