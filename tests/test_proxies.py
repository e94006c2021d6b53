"""Behind a reverse proxy every board shares one address: one client's junk made every
board's upload 429 (73 of 73). The waste bucket now never stops a device's next packet, and
the operator names the proxies whose X-Forwarded-For is believed (waitress' trusted proxy)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cbor2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import forge
from tests.conftest import serve
from tests.enroll import enroll_key
from tests.test_security import _chain
from verifier.app import create_app

PROXY = "10.9.8.7"  # every board's requests arrive from the proxy


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    limits = {"RATE_CLIENT_WASTE_BURST": 10, "RATE_CLIENT_WASTE_PER_S": 0.01}
    return create_app({"DATABASE": str(tmp_path / "v.sqlite"), **limits, "CHECKPOINT_INTERVAL_S": 0,
                       "CERTIFICATE_INTERVAL_S": 0})  # fmt: skip


def _post(client: FlaskClient, data: bytes, path: str = "/v1/packets") -> Any:
    return client.post(path, data=data, content_type="application/cbor", environ_base={"REMOTE_ADDR": PROXY})


def test_one_clients_junk_never_stops_the_boards_behind_the_same_proxy(app: Flask) -> None:
    client = app.test_client()
    boards = {}
    for n in range(3):
        key = forge.new_key()
        enroll_key(app.config["DATABASE"], f"board-{n}", key)
        boards[f"board-{n}"] = _chain(key, 6, device_id=f"board-{n}")
    assert _post(client, boards["board-0"][0]).status_code == 201
    junk = [_post(client, b"\xa1\x00" + bytes([n % 256]) * 40) for n in range(30)]
    replays = [_post(client, boards["board-0"][0]) for _ in range(10)]
    assert junk[-1].status_code == 429 and replays[-1].status_code == 429  # the waster waits
    assert replays[-1].get_json()["field"] == "client"
    # every board's next packets still go in, through the same address
    for name, first, last in (("board-0", 1, 5), ("board-1", 0, 3), ("board-2", 0, 3)):
        for seq in range(first, last + 1):
            r = _post(client, boards[name][seq])
            assert r.status_code == 201, (name, seq, r.get_json())
    # a batch from the same address: the new packets are taken, the replays limited
    batch = cbor2.dumps([boards["board-1"][4], boards["board-1"][0], b"junk", boards["board-2"][4]])
    r = _post(client, batch, "/v1/packets/batch")
    assert r.status_code == 200, r.get_json()
    statuses = [a["status"] for a in r.get_json()["results"]]
    assert statuses == ["accepted", "refused", "refused", "accepted"], r.get_json()
    assert r.get_json()["results"][1]["problem"]["type"].endswith("/rate-limited")
    only_junk = _post(client, cbor2.dumps([b"junk", boards["board-1"][0]]), "/v1/packets/batch")
    assert only_junk.status_code == 429


def _send(url: str, data: bytes, forwarded: str) -> int:
    request = urllib.request.Request(f"{url}/v1/packets", data=data, method="POST", headers={
        "Content-Type": "application/cbor", "X-Forwarded-For": forwarded})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "no-proxy-configured"])
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path, trusted: bool) -> None:
    db = tmp_path / "v.sqlite"
    key = forge.new_key()
    enroll_key(db, "forge-1", key)
    packets = _chain(key, 1)
    env = {"WATTPROOF_RATE_CLIENT_WASTE_BURST": "5", "WATTPROOF_RATE_CLIENT_WASTE_PER_S": "0.01"}
    if trusted:
        env["WATTPROOF_TRUSTED_PROXY"] = "127.0.0.1"
    proc, url = serve(db, 0, env)
    try:
        assert _send(url, packets[0], "203.0.113.9") == 201
        wasted = [_send(url, packets[0], "203.0.113.9") for _ in range(8)]  # duplicates: waste
        assert wasted[-1] == 429
        other = _send(url, packets[0], "203.0.113.10")  # another client behind the proxy
        # trusted: its own bucket (a duplicate, 200); not trusted: the header is not believed
        assert other == (200 if trusted else 429)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
