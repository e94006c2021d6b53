"""Provenance certificates and `wattproof verify`: one file per kind (a reading, a packet, a
granular certificate with its claim, a charging session with its OCMF record) verifies with
the log's and two witnesses' keys, and every tampered layer is refused by name. Some
tamperings need a log that signs what it should not: the test plays that log (it holds the
log key) and re-derives the tree and proofs around a forged entry, so that the deeper checks
are what must catch it."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Database, stored_readings
from tests.test_green import S1, _setting
from verifier import storage
from verifier.app import create_app
from verifier.certificates import registry
from verifier.log import checkpoints, ledger, note, witness
from verifier.provenance import build as pf
from verifier.provenance import checks
from verifier.wire import merkle, strict_cbor

ROOT = Path(__file__).resolve().parent.parent
W = [note.Signer.generate(f"witness.example/w{i}", note.ALG_COSIGNATURE_V1) for i in (1, 2)]
WKEYS = [w.verifier() for w in W]


def _cosign(db: storage.Connection, log: note.Signer, tmp: Path, old: int = 0) -> None:
    """Both witnesses cosign the latest checkpoint through the protocol's own checks, from
    the size old they cosigned before."""
    cp = checkpoints.publish(db, log)
    proof = ledger.consistency_proof(db, old, cp.size) if old else []
    for w in W:
        state = witness.WitnessState(tmp / f"{w.name.replace('/', '_')}.sqlite")
        answer = witness.add_checkpoint(
            state, w, {log.name: [log.verifier()]}, witness.request_body(old, proof, cp.note)
        )
        state.close()
        assert answer.status == 200
        when = int.from_bytes(base64.b64decode(answer.body.split()[-1])[4:12], "big")
        with storage.transaction(db):
            db.execute("INSERT INTO cosignatures VALUES (?, ?, ?, ?)", (cp.size, w.name, answer.body, when))


@pytest.fixture
def files(database: Database, conn: storage.Connection, tmp_path: Path) -> dict[str, Any]:
    _setting(conn)
    log = create_app(database.config()).extensions["wattproof.log_signer"]
    registry.state_checkpoint(conn, log)  # the registry's state, committed before the witnesses' round
    _cosign(conn, log, tmp_path)
    row = conn.execute(
        "SELECT c.ledger_idx FROM certificates c JOIN bundles b ON b.issuance_id = c.issuance_id"
        " WHERE c.device_id = 'pv-1' AND b.claim_id IS NOT NULL ORDER BY c.production_start LIMIT 1"
    ).fetchone()
    issuance = int(row[0])
    made = {
        "reading": pf.for_reading(conn, log, "pv-1", 30),
        "packet": pf.for_packet(conn, log, "pv-1", 1),
        "certificate": pf.for_certificate(conn, log, issuance),
        "session": pf.for_session(conn, log, "charger-g", S1.hex()),
    }
    return {"log": log, "files": made, "conn": conn, "database": database}


def _verify(data: bytes | str, log: note.Signer, quorum: int | None = None, witnesses: Any = None) -> Any:
    return checks.verify(data, log.verifier(), WKEYS if witnesses is None else witnesses, quorum)


def _refused(data: bytes | str, log: note.Signer, **kw: Any) -> checks.Refused:
    with pytest.raises(checks.Refused) as e:
        _verify(data, log, **kw)
    return e.value


def test_every_kind_verifies_with_the_log_and_two_witnesses(files: dict[str, Any]) -> None:
    log, made, conn = files["log"], files["files"], files["conn"]
    for kind, data in made.items():
        report = _verify(data, log)
        assert report.kind == kind and report.witnesses == ["witness.example/w1", "witness.example/w2"]
        assert any("installer" in s for s in report.steps) and any("cosigned" in s for s in report.steps)
    reading = _verify(made["reading"], log).subject
    raw = stored_readings(conn, "pv-1")[30]
    assert reading["reading"] == 30 and reading["values"]["import_wh"] == strict_cbor.loads(bytes(raw))[10]
    assert _verify(made["packet"], log).subject["readings"] == 60
    cert = _verify(made["certificate"], log).subject
    row = conn.execute("SELECT bundle_quantity FROM certificates WHERE ledger_idx = ?",
                       (cert["issuance_ledger_index"],)).fetchone()  # fmt: skip
    assert cert["wh"] == int(row[0]) and 0 < cert["claimed_wh"] <= cert["wh"]
    session = _verify(made["session"], log).subject
    assert session["energy_wh"] == 2400 and session["ocmf_verified"]
    for data in made.values():
        assert len(data) < 32_000


def _doc(data: bytes) -> dict[str, Any]:
    return json.loads(data)  # type: ignore[no-any-return]


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _flip_b64(text: str, at: int = 3) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _reforge(doc: dict[str, Any], log: note.Signer, change: Any) -> bytes:
    """What a dishonest log could hand out: the file's entries, change(entries) applied,
    as the whole of a tree the log signs (and the witnesses cosign, being shown no other)."""
    doc = copy.deepcopy(doc)
    entries = sorted(doc["entries"], key=lambda e: e["index"])
    decoded = [strict_cbor.loads(base64.b64decode(e["entry"])) for e in entries]
    old_index = [e["index"] for e in entries]
    decoded = change(decoded)
    raws = [strict_cbor.dumps(d) for d in decoded]
    leaves = [merkle.leaf_hash(r) for r in raws]
    text = note.Checkpoint(log.name, len(raws), merkle.root(leaves)).text()
    signed = note.sign(text, log) + b"".join(w.signature_line(text, 1_800_000_000).encode() for w in W)
    doc["checkpoint"] = signed.decode()
    doc["entries"] = [
        {"index": i, "entry": base64.b64encode(r).decode(),
         "proof": checks.tlog_proof(i, merkle.inclusion_proof(i, leaves), signed)}
        for i, r in enumerate(raws)
    ]  # fmt: skip
    where = {old: new for new, old in enumerate(old_index)}
    for r in doc["readings"]:
        r["packet"] = where.get(r["packet"], r["packet"])
    return _dump(doc)


def test_each_tampered_layer_is_refused_by_name(files: dict[str, Any]) -> None:
    log, made = files["log"], files["files"]
    doc = _doc(made["reading"])

    bad = copy.deepcopy(doc)
    bad["readings"][0]["raw"] = _flip_b64(bad["readings"][0]["raw"], 8)
    assert _refused(_dump(bad), log).layer == "merkle path"  # a reading byte
    bad = copy.deepcopy(doc)
    bad["readings"][0]["path"][0] = _flip_b64(bad["readings"][0]["path"][0])
    assert _refused(_dump(bad), log).layer == "merkle path"
    bad = copy.deepcopy(doc)
    lines = bad["entries"][0]["proof"].split("\n")
    lines[2] = _flip_b64(lines[2])
    bad["entries"][0]["proof"] = "\n".join(lines)
    assert _refused(_dump(bad), log).layer == "ledger inclusion"
    bad = copy.deepcopy(doc)
    bad["entries"][1]["entry"] = _flip_b64(bad["entries"][1]["entry"], 20)
    assert _refused(_dump(bad), log).layer == "ledger inclusion"

    cp = doc["checkpoint"]
    body, sigs = cp.split("\n\n", 1)
    origin, size, root = body.split("\n")[:3]
    other_root = base64.b64encode(bytes(32)).decode()
    assert _refused(_dump({**doc, "checkpoint": cp.replace(root, other_root, 1)}), log).layer == "checkpoint signature"
    stranger = note.Signer.generate(log.name)
    refused = _refused(made["reading"], stranger)
    assert refused.layer == "checkpoint signature"
    log_line, w1, w2 = sigs.strip("\n").split("\n")
    broken = w1[:-6] + ("A" if w1[-6] != "A" else "B") + w1[-5:]
    assert _refused(_dump({**doc, "checkpoint": f"{body}\n\n{log_line}\n{broken}\n{w2}\n"}), log).layer == "cosignature"
    one = _dump({**doc, "checkpoint": f"{body}\n\n{log_line}\n{w2}\n"})
    assert "quorum is 2" in str(_refused(one, log))
    assert _verify(one, log, quorum=1).witnesses == ["witness.example/w2"]  # a quorum of one is met

    # Deeper layers, behind a log that signs forged entries.
    def forge_installer_sig(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            if e["kind"] == "enroll":
                e["installer_sig"] = bytes([e["installer_sig"][0] ^ 1]) + e["installer_sig"][1:]
        return entries

    assert _refused(_reforge(doc, log, forge_installer_sig), log).layer == "enrollment"

    def forge_header(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            if e["kind"] == "packet":
                e["header"] = e["header"][:-1] + bytes([e["header"][-1] ^ 1])
        return entries

    assert _refused(_reforge(doc, log, forge_header), log).layer == "header signature"

    def rotated_before(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        enroll = next(i for i, e in enumerate(entries) if e["kind"] == "enroll")
        rotation = {"kind": "rotate", "device_id": "pv-1", "new_public_key": b"\x04" + bytes(64), "old_sig": b"",
                    "new_sig": b"", "key_index": entries[enroll]}  # fmt: skip
        return [*entries[: enroll + 1], rotation, *entries[enroll + 1 :]]

    assert _refused(_reforge(doc, log, rotated_before), log).layer == "key rotation"

    def revoked_before(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        enroll = next(i for i, e in enumerate(entries) if e["kind"] == "enroll")
        revoke = {"kind": "revoke", "device_id": "pv-1", "reason": "stolen", "by": "admin"}
        return [*entries[: enroll + 1], revoke, *entries[enroll + 1 :]]

    refused = _refused(_reforge(doc, log, revoked_before), log)
    assert refused.layer == "device key" and "revoked" in refused.why
    assert _verify(_reforge(doc, log, lambda e: e), log).kind == "reading"  # the forging itself is sound

    cert = _doc(made["certificate"])
    bad = copy.deepcopy(cert)
    bad["readings"] = bad["readings"][:-1]  # a reading around the hour left out
    assert _refused(_dump(bad), log).layer == "energy"

    session = _doc(made["session"])
    text = session["ocmf"]
    changed = text.replace('"RV":', '"RV": ', 1)
    assert changed != text
    assert _refused(_dump({**session, "ocmf": changed}), log).layer == "ocmf"


def test_a_certificate_made_before_the_log_grew_still_verifies(files: dict[str, Any], tmp_path: Path) -> None:
    log, made, conn = files["log"], files["files"], files["conn"]
    before = checkpoints.latest(conn)
    assert before is not None
    with storage.transaction(conn):
        from verifier.certificates import registry

        registry.create_account(conn, "late", "Later account", "consumer", now=1)
    _cosign(conn, log, tmp_path, old=before.size)
    assert _verify(made["reading"], log).kind == "reading"

    # Against the newer checkpoint, as an auditor fetches it with the consistency proof.
    client = create_app(files["database"].config()).test_client()
    newer = client.get("/v1/ledger/checkpoint").data
    size = int(newer.split(b"\n")[1])
    assert size > before.size
    proof = client.get(f"/v1/ledger/proof/consistency?from={before.size}&to={size}").data
    keys = (log.verifier(), WKEYS)
    report = checks.verify(made["reading"], *keys, newer=newer, consistency=proof)
    assert any(f"newer state at {size}" in s for s in report.steps) and len(report.witnesses) == 2
    assert any("the newer state at" in s for s in report.steps if s.startswith("Witness"))

    def refused(newer: bytes, proof: bytes | str, **kw: Any) -> checks.Refused:
        with pytest.raises(checks.Refused) as e:
            checks.verify(made["reading"], *keys, newer=newer, consistency=proof, **kw)
        return e.value

    hashes = json.loads(proof)["proof"]
    first = hashes[0][:-1] + ("0" if hashes[0][-1] != "0" else "1")
    flipped = json.dumps({"from": before.size, "to": size, "proof": [first, *hashes[1:]]})
    assert refused(newer, flipped).layer == "consistency"
    assert refused(newer, "\n".join(hashes[:-1])).layer == "consistency"  # a hash short
    assert refused(newer, json.dumps({"from": 1, "to": size, "proof": hashes})).layer == "consistency"
    # one hash a line, as the JSON's list, reads the same
    assert checks.verify(made["reading"], *keys, newer=newer, consistency="\n".join(hashes)).kind == "reading"
    # a newer head of a forked log (one entry changed) does not extend the file's
    leaves = [merkle.leaf_hash(ledger.entry(conn, i).raw) for i in range(size)]
    leaves[0] = merkle.leaf_hash(b"forged")
    forked_text = note.Checkpoint(log.name, size, merkle.root(leaves)).text()
    forked = note.sign(forked_text, log) + b"".join(w.signature_line(forked_text, 1_800_000_000).encode() for w in W)
    assert refused(forked, proof).layer == "consistency"
    stranger = note.Signer.generate(log.name)
    assert refused(note.sign(newer.split(b"\n\n")[0].decode() + "\n", stranger), proof).layer == "newer checkpoint"
    uncosigned = newer.split(b"\n\n")[0] + b"\n\n" + newer.split(b"\n\n")[1].split(b"\n")[0] + b"\n"
    assert refused(uncosigned, proof).layer == "cosignature"  # the quorum is asked of the newer head
    assert checks.verify(made["reading"], *keys, quorum=0, newer=uncosigned, consistency=proof).witnesses == []

    # the command, as an auditor runs it with the two files fetched from the log
    (tmp_path / "reading.json").write_bytes(made["reading"])
    (tmp_path / "checkpoint.txt").write_bytes(newer)
    (tmp_path / "consistency.json").write_bytes(proof)
    (tmp_path / "forked.txt").write_bytes(forked)
    run = [sys.executable, "-m", "wattproof.cli", "verify", str(tmp_path / "reading.json"), "--log-key",
           str(log.verifier()), *[a for w in WKEYS for a in ("--witness", str(w))]]  # fmt: skip
    newer_args = ["--checkpoint", str(tmp_path / "checkpoint.txt"), "--consistency", str(tmp_path / "consistency.json")]
    ok = subprocess.run([*run, *newer_args], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and f"newer state at {size}" in ok.stdout, ok.stdout + ok.stderr
    newer_args[1] = str(tmp_path / "forked.txt")
    bad = subprocess.run([*run, *newer_args, "--json"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and json.loads(bad.stdout)["layer"] == "consistency"
    usage = subprocess.run([*run, *newer_args[:2]], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "go together" in usage.stderr


def test_the_commands_make_and_verify_a_file(files: dict[str, Any], tmp_path: Path) -> None:
    database: Database = files["database"]
    log = files["log"]
    out = tmp_path / "reading.json"
    where = ["--database" if database.engine == "postgresql" else "--db", database.target, "--log-key",
             str(database.log_key)]  # fmt: skip
    run = [sys.executable, "-m", "wattproof.cli"]
    made = subprocess.run([*run, "certificate", "reading", *where, "--device", "pv-1", "--number", "30", "--out",
                           str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    keys = ["--log-key", str(log.verifier()), *[a for w in WKEYS for a in ("--witness", str(w))]]
    ok = subprocess.run([*run, "verify", str(out), *keys], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("and 2 witness(es))") and "Reading 30 of pv-1" in ok.stdout
    assert "VERIFIED: reading 30 of pv-1" in ok.stdout  # the verdict names its subject
    doc = _doc(out.read_bytes())
    doc["readings"][0]["raw"] = _flip_b64(doc["readings"][0]["raw"], 8)
    (tmp_path / "bad.json").write_bytes(_dump(doc))
    bad = subprocess.run([*run, "verify", str(tmp_path / "bad.json"), *keys, "--json"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and json.loads(bad.stdout)["layer"] == "merkle path"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_verify_part_installs_alone_and_checks_a_file(files: dict[str, Any], tmp_path: Path) -> None:
    """`pip install wattproof` without the server extra: cbor2, cryptography and click, no Flask."""
    env_dir = tmp_path / "auditor"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)]
    pip = subprocess.run(
        install, capture_output=True, text=True, timeout=600, env={**os.environ, "PIP_NO_CACHE_DIR": "1"}
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert {"cbor2", "cryptography"} <= names and not names & {"flask", "waitress", "psycopg", "mpremote"}
    path = tmp_path / "session.json"
    path.write_bytes(files["files"]["session"])
    keys = ["--log-key", str(files["log"].verifier()), *[a for w in WKEYS for a in ("--witness", str(w))]]
    result = subprocess.run([str(env_dir / "bin" / "wattproof"), "verify", str(path), *keys], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OCMF record the charger signed" in result.stdout
    serve = subprocess.run([str(env_dir / "bin" / "wattproof"), "serve", "--db", str(tmp_path / "v.sqlite")],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert serve.returncode == 2 and "pip install 'wattproof[server]'" in serve.stderr, serve.stderr
    assert "Traceback" not in serve.stderr
