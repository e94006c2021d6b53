"""A file's VERIFIED covers exactly its subject (what an independent review found it did not):
a packet file repeating one reading in place of the others, a subject naming another reading
than the one held, a certificate file with its claims cut out or its withdrawal left unsaid,
an open session's file that can never verify, and malformed files that crashed the verifier.
Each is refused by name, in its layer; a certificate's status is proven by the registry map
its checkpoint ends with."""

from __future__ import annotations

import base64
import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Database
from tests.meters import HOUR, T0
from tests.test_green import S1, _setting
from tests.test_ocmf_import import OtherCharger, _enroll, _post
from tests.test_provenance import WKEYS, _cosign
from verifier import storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.certificates import registry, registry_map
from verifier.log import ledger, note
from verifier.provenance import build as pf
from verifier.provenance import checks
from verifier.wire.problems import TYPE_BASE


@pytest.fixture
def made(database: Database, conn: storage.Connection, tmp_path: Path) -> dict[str, Any]:
    _setting(conn)
    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    log = app.extensions["wattproof.log_signer"]
    registry.state_checkpoint(conn, log)
    _cosign(conn, log, tmp_path)
    claimed = conn.execute(
        "SELECT c.ledger_idx FROM certificates c JOIN bundles b ON b.issuance_id = c.issuance_id"
        " WHERE c.device_id = 'pv-1' AND b.claim_id IS NOT NULL ORDER BY c.production_start LIMIT 1"
    ).fetchone()[0]
    files = {
        "reading": pf.for_reading(conn, log, "pv-1", 30),
        "packet": pf.for_packet(conn, log, "pv-1", 1),
        "certificate": pf.for_certificate(conn, log, int(claimed)),
        "session": pf.for_session(conn, log, "charger-g", S1.hex()),
    }
    return {"log": log, "files": files, "conn": conn, "app": app, "database": database, "tmp": tmp_path,
            "claimed": int(claimed)}  # fmt: skip


def _check(data: bytes | str, log: note.Signer, quorum: int | None = 0) -> checks.Report:
    return checks.verify(data, log.verifier(), WKEYS, quorum)


def _layer(data: bytes | str, log: note.Signer) -> str:
    with pytest.raises(checks.Refused) as e:
        _check(data, log)
    return e.value.layer


def _doc(data: bytes) -> dict[str, Any]:
    return dict(json.loads(data))


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# -- every reading exactly once -------------------------------------------------------------


def test_a_packet_file_repeating_one_reading_is_refused(made: dict[str, Any]) -> None:
    log, data = made["log"], made["files"]["packet"]
    assert "each once" in " ".join(_check(data, log).steps)
    doc = _doc(data)
    doc["readings"] = [copy.deepcopy(doc["readings"][0]) for _ in doc["readings"]]  # one reading, 60 times
    assert _layer(_dump(doc), log) == "file"
    twice = _doc(data)
    twice["readings"] = twice["readings"][:-1] + [twice["readings"][0]]  # the last one replaced by the first
    assert _layer(_dump(twice), log) == "file"
    session = _doc(made["files"]["session"])
    session["readings"].append(session["readings"][0])  # in every kind
    assert _layer(_dump(session), log) == "file"
    # the public page says so too
    client = made["app"].test_client()
    page = client.get("/verify").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    answer = client.post("/verify", data={"csrf_token": token.group(1), "certificate": (
        __import__("io").BytesIO(_dump(doc)), "packet.json")}, content_type="multipart/form-data")  # fmt: skip
    assert answer.status_code == 200 and "Not verified" in answer.text and "Every one" not in answer.text


# -- the subject is what the file proves -----------------------------------------------------


@pytest.mark.parametrize(
    "kind, change",
    [
        ("reading", {"reading": 31}),
        ("reading", {"device_id": "pv-2"}),
        ("reading", {"extra": 1}),
        ("packet", {"seq": 2}),
        ("certificate", {"issuance_ledger_index": 1}),
        ("certificate", {"issuance_id": "pv-1/0"}),
        ("session", {"device_id": "pv-1"}),
    ],
)
def test_a_subject_the_file_does_not_prove_is_refused(made: dict[str, Any], kind: str, change: dict[str, Any]) -> None:
    log = made["log"]
    report = _check(made["files"][kind], log)
    assert report.verdict and "subject is what it proves" in report.steps[-1]
    doc = _doc(made["files"][kind])
    doc["subject"].update(change)
    assert _layer(_dump(doc), log) == "subject"
    missing = _doc(made["files"][kind])
    missing["subject"].popitem()
    assert _layer(_dump(missing), log) == "subject"


# -- a certificate's status is proven ---------------------------------------------------------


def test_a_certificate_file_proves_its_claims_and_cannot_hide_them(made: dict[str, Any]) -> None:
    log, data = made["log"], made["files"]["certificate"]
    report = _check(data, log, quorum=None)
    status = report.subject["status"]
    assert {s["status"] for s in status} == {"Claimed", "Active"}
    assert any("Claimed for cpo" in s for s in report.steps) and "Active, held by cpo" in report.verdict
    assert sum(s["wh"] for s in status) == report.subject["wh"]

    doc = _doc(data)
    claims = [e for e in doc["entries"] if _kind(e) == "claim"]
    assert claims
    doc["entries"] = [e for e in doc["entries"] if _kind(e) != "claim"]  # the holder cuts its claim out
    assert _layer(_dump(doc), log) == "claim"
    no_status = _doc(data)
    del no_status["status"]
    assert _layer(_dump(no_status), log) == "status"
    part = _doc(data)
    part["status"] = [s for s in part["status"] if _leaf(s).status != "Claimed"]  # only the active part shown
    assert _layer(_dump(part), log) == "status"
    flipped = _doc(data)
    raw = bytearray(base64.b64decode(flipped["status"][0]["leaf"]))
    raw[-1] ^= 1
    flipped["status"][0]["leaf"] = base64.b64encode(bytes(raw)).decode()
    assert _layer(_dump(flipped), log) == "status"


def _kind(entry: dict[str, Any]) -> str:
    from verifier.wire import strict_cbor

    return str(strict_cbor.loads(base64.b64decode(entry["entry"]))["kind"])


def _leaf(item: dict[str, Any]) -> registry_map.Leaf:
    return registry_map.Leaf.decode(base64.b64decode(item["leaf"]))


def test_a_withdrawn_or_claimed_bundle_says_so_and_an_older_file_says_when(made: dict[str, Any]) -> None:
    conn, log = made["conn"], made["log"]
    row = conn.execute(
        "SELECT c.ledger_idx, c.issuance_id FROM certificates c WHERE c.device_id = 'pv-2'"
        " AND NOT EXISTS (SELECT 1 FROM bundles b WHERE b.issuance_id = c.issuance_id AND b.status <> 'Active')"
        " ORDER BY c.production_start LIMIT 1"
    ).fetchone()
    index, issuance_id = int(row[0]), str(row[1])
    before = pf.for_certificate(conn, log, index)
    assert "Active, held by cpo" in _check(before, log).verdict
    with storage.transaction(conn):
        ranges = registry.issuance_ranges(conn, issuance_id)
        withdrawn, _ = registry.act(conn, "withdraw", {"ranges": ranges, "reason": "meter recalibrated",
                                                       "time": T0 + 50 * 86400})  # fmt: skip
    after = _check(pf.for_certificate(conn, log, index), log)
    assert f"Withdrawn at entry {withdrawn}: meter recalibrated" in after.verdict
    assert [s["status"] for s in after.subject["status"]] == ["Withdrawn"]
    old = _check(before, log)  # still true of its own checkpoint, and says when that was
    assert old.subject["status_at"] < after.subject["status_at"] or old.tree_size < after.tree_size
    doc = _doc(pf.for_certificate(conn, log, index))
    doc["entries"] = [e for e in doc["entries"] if _kind(e) != "withdraw"]
    assert _layer(_dump(doc), log) == "status"
    assert replay.audit(conn, log.verifier()).ok


def test_a_state_that_is_not_the_checkpoints_last_entry_is_refused(made: dict[str, Any]) -> None:
    """A log that commits a state and appends a claim after it cannot sign a checkpoint that
    hides the claim behind the older state: the state must be the checkpoint's last entry."""
    conn, log = made["conn"], made["log"]
    data = made["files"]["certificate"]
    with storage.transaction(conn):
        ledger.append(conn, "installer", "x", {"name": "late", "public_key": b"\x04" + bytes(64)})
    stale = _doc(data)
    from verifier.log import checkpoints

    cp = checkpoints.publish(conn, log)  # a checkpoint that ends with another entry
    state = next(e for e in stale["entries"] if _kind(e) == registry_map.ENTRY_KIND)
    forged = _doc(pf.for_reading(conn, log, "pv-1", 30))  # every entry proven to cp
    entries = []
    for e in stale["entries"]:
        proof = checks.tlog_proof(e["index"], ledger.inclusion_proof(conn, e["index"], cp.size), cp.note)
        entries.append({**e, "proof": proof})
    stale.update(checkpoint=forged["checkpoint"], entries=entries)
    stale.pop("witnessed", None)
    assert state["index"] < cp.size - 1
    with pytest.raises(checks.Refused) as e:
        _check(_dump(stale), log)
    assert e.value.layer in ("status", "merkle path")


def test_the_audit_recomputes_every_committed_state(made: dict[str, Any]) -> None:
    conn, log = made["conn"], made["log"]
    assert replay.audit(conn, log.verifier()).registry_states >= 1
    with storage.transaction(conn):
        ledger.append(conn, registry_map.ENTRY_KIND, None, {"root": bytes(32), "bundles": 3, "time": T0})
    report = replay.audit(conn, log.verifier())
    assert not report.ok and "registry-state" in str(report.problem)


# -- sessions: open ones answer 409, third-party ones get a file ---------------------------------


def test_an_open_session_is_409_and_a_third_party_session_has_a_file(made: dict[str, Any]) -> None:
    from tests.enroll import api_key

    database, app, conn, log = made["database"], made["app"], made["conn"], made["log"]
    client = app.test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    from verifier.charging import sessions

    open_ids = [s.session_id for s in sessions.for_device(conn, "charger-g") if s.stop is None]
    if open_ids:
        r = client.get(f"/v1/devices/charger-g/sessions/{open_ids[0]}/certificate", headers=admin)
        assert r.status_code == 409 and r.get_json()["type"] == TYPE_BASE + "session-open"
    with pytest.raises(Exception) as caught:
        _open_session_file(conn, log)
    assert getattr(caught.value, "kind", None) == "session-open"

    other = OtherCharger("WB-0077")
    assert _enroll(client, admin, "acme-7", other.key_hex, other.serial, gateway_id="ACME_WB").status_code == 201
    assert _post(client, admin, other.record(T0, "10.000", "12.500")).status_code == 201
    sid = client.get("/v1/devices/acme-7/sessions", headers=admin).get_json()["sessions"][0]["session_id"]
    r = client.get(f"/v1/devices/acme-7/sessions/{sid}/certificate", headers=admin)
    assert r.status_code == 200
    report = _check(r.data, log)
    assert report.subject["energy_wh"] == 2500 and "third-party charger acme-7" in report.verdict
    doc = _doc(r.data)
    doc["ocmf"] = doc["ocmf"].replace('"RV":12.500', '"RV":13.500')
    assert _layer(_dump(doc), log) == "ocmf"


def _open_session_file(conn: storage.Connection, log: note.Signer) -> bytes:
    """A session of charger-g made open: its stop reading left out of what the maker sees."""
    from verifier.charging import sessions

    s = next(s for s in sessions.for_device(conn, "charger-g") if s.stop is not None)
    real = sessions.for_device

    def without_stop(db: Any, device_id: str) -> list[Any]:
        import dataclasses

        return [dataclasses.replace(x, stop=None) if x.session_id == s.session_id else x for x in real(db, device_id)]

    sessions.for_device = without_stop
    try:
        return pf.for_session(conn, log, "charger-g", s.session_id)
    finally:
        sessions.for_device = real


# -- malformed files: a layer "file", never a traceback -----------------------------------------


def mutants(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Malformed copies of a file, of the classes that crashed the verifier: wrong types for
    entries, readings, path and subject; non-ASCII base64; deep nesting; and random bytes."""
    doc = _doc(data)
    out = [b"[" * 1100 + b"]" * 1100, b'{"format":' * 1100, "é".encode() * 10, b"null", b"{}", b"[]"]
    wrong = [None, 1, 1.5, True, "x", "é", [], {}, [1], [None], {"a": 1}, -1, 2**70, "\u0663"]
    fields = ["entries", "readings", "subject", "checkpoint", "kind", "status", "witnessed", "ocmf"]
    for _ in range(count):
        d = copy.deepcopy(doc)
        roll = rng.random()
        if roll < 0.3:
            d[rng.choice(fields)] = rng.choice(wrong)
        elif roll < 0.55 and d.get("entries"):
            e = rng.choice(d["entries"])
            e[rng.choice(["index", "entry", "proof", "extra"])] = rng.choice(wrong + ["é" * 8, "AAAA\u00e9"])
        elif roll < 0.8 and d.get("readings"):
            r = rng.choice(d["readings"])
            key = rng.choice(["packet", "position", "raw", "path"])
            r[key] = rng.choice(wrong + [["é"], ["AAAA"] * 70, "é" * 4])
        elif roll < 0.9:
            d["subject"] = {k: rng.choice(wrong) for k in d["subject"]}
        else:
            raw = bytearray(_dump(d))
            for _ in range(rng.randint(1, 5)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            out.append(bytes(raw))
            continue
        out.append(_dump(d))
    return out


def test_malformed_files_are_refused_in_a_layer_never_a_traceback(made: dict[str, Any]) -> None:
    log = made["log"]
    rng = random.Random(28)
    client = made["app"].test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/verify").text)
    assert token is not None
    checked = 0
    for kind, data in made["files"].items():
        for bad in mutants(data, rng, 150):
            try:
                _check(bad, log)
            except checks.Refused:
                checked += 1
            if checked % 50 == 0:  # the public page answers them as a page too
                r = client.post("/verify", data={"csrf_token": token.group(1), "certificate": (
                    __import__("io").BytesIO(bad), f"{kind}.json")}, content_type="multipart/form-data")  # fmt: skip
                assert r.status_code == 200 and r.mimetype == "text/html"
    assert checked > 500


def test_the_file_layer_names_wrong_types() -> None:
    log = note.Signer.generate("test.example/log")
    base = {"format": checks.FORMAT, "kind": "reading", "subject": {}, "checkpoint": "", "entries": []}
    changes: list[dict[str, Any]] = [{"entries": {}}, {"entries": [{"index": "1", "entry": "", "proof": ""}]},
                   {"readings": [{"packet": 1, "position": 0, "raw": "", "path": "x"}]}, {"subject": []},
                   {"readings": [{"packet": True, "position": 0, "raw": "", "path": []}]}, {"more": 1}]  # fmt: skip
    for change in changes:
        with pytest.raises(checks.Refused) as e:
            checks.verify(_dump({**base, **change}), log.verifier())
        assert e.value.layer == "file", change
    _ = HOUR


def test_the_document_names_every_layer_subject_and_leaf_field() -> None:
    """docs/provenance.md is enough to write a verifier: every layer the code refuses in, every
    subject key, every registry leaf key and entry field it reads are in it."""
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "provenance.md").read_text()
    code = (root / "verifier" / "provenance" / "checks.py").read_text()
    layers = set(re.findall(r'Refused\(\s*"([a-z ]+)"', code)) | set(re.findall(r'_b64\([^,]+, "([a-z ]+)"\)', code))
    listed = doc.split("The first layer that fails ends the check with its name:")[1].split(".")[0]
    named = {x.strip().strip("`") for x in listed.replace("\n", " ").split(",")}
    assert layers <= named, layers - named
    for kind, fields in checks.SUBJECT_FIELDS.items():
        assert all(f"`{kind}`" in doc or kind in doc for f in fields)
        assert all(f in doc for f in fields), (kind, fields)
    for key in ("start", "end", "status", "expires_at", "changed_at", "holder", "claim"):
        assert f'"{key}"' in doc, key
    for kind in ("installer", "enroll", "ocmf-enroll", "rotate", "revoke", "packet", "issuance", "claim", "withdraw",
                 registry_map.ENTRY_KIND, "ocmf"):  # fmt: skip
        assert f"| `{kind}` |" in doc, kind


def test_a_registry_leaf_is_deterministic_cbor() -> None:
    from verifier.wire import strict_cbor

    rng = random.Random(5)
    for _ in range(2000):
        start = rng.randrange(1, 2**62)
        leaf = registry_map.Leaf(
            start, start + rng.randrange(0, 2**40), rng.choice([None, "a", "acct-" + "x" * rng.randrange(60)]),
            rng.choice(["Active", "Withdrawn", "Claimed"]), rng.randrange(0, 2**40), rng.randrange(0, 2**63),
            None,
        )  # fmt: skip
        if leaf.status == "Claimed":
            leaf = registry_map.Leaf(leaf.start, leaf.end, leaf.holder, "Claimed", leaf.expires_at, leaf.changed_at,
                                     rng.randrange(0, 2**63))  # fmt: skip
        assert leaf.encode() == strict_cbor.dumps(leaf.fields())
        assert registry_map.Leaf.decode(leaf.encode()) == leaf
