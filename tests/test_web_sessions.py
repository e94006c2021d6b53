"""Sessions end: signing out ends the session on the server, so a copied cookie no longer
signs anyone in (it stayed valid for up to 8 hours); sign-in attempts are limited per client
address and per key id (1,000 wrong keys went through in 2.4 s)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Database
from verifier import auth, storage
from verifier.app import create_app
from verifier.web import SIGNIN_BURST


@pytest.fixture
def site(database: Database, conn: storage.Connection) -> dict[str, Any]:
    with storage.transaction(conn):
        key = auth.create_key(conn, "web utility", "utility")
    return {"app": create_app(database.config()), "key": key}


def _csrf(client: Any) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").text)
    assert found is not None
    return found.group(1)


def _sign_in(client: Any, key: str, address: str = "192.0.2.1") -> Any:
    return client.post("/signin", data={"csrf_token": _csrf(client), "api_key": key},
                       environ_base={"REMOTE_ADDR": address})  # fmt: skip


def test_a_copied_cookie_is_worth_nothing_after_sign_out(site: dict[str, Any]) -> None:
    client = site["app"].test_client()
    assert _sign_in(client, site["key"]).status_code == 302
    cookie = client.get_cookie("wattproof_session")
    assert cookie is not None
    thief = site["app"].test_client()
    thief.set_cookie("wattproof_session", cookie.value)
    assert thief.get("/overview").status_code == 200  # a copy works while the session is open
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/overview").text)
    assert token is not None
    assert client.post("/signout", data={"csrf_token": token.group(1)}).status_code == 302
    assert client.get("/overview").status_code == 302  # signed out
    copied = thief.get("/overview")
    assert copied.status_code == 302 and copied.headers["Location"].startswith("/signin")
    # signing in again gives a new session; the old cookie stays dead
    assert _sign_in(client, site["key"]).status_code == 302
    assert client.get("/overview").status_code == 200 and thief.get("/overview").status_code == 302


def test_a_session_ends_after_its_hours(site: dict[str, Any], database: Database) -> None:
    client = site["app"].test_client()
    assert _sign_in(client, site["key"]).status_code == 302
    conn = storage.connect(database.target)
    try:
        with storage.transaction(conn):
            conn.execute("UPDATE web_sessions SET expires_at = 1")
    finally:
        conn.close()
    assert client.get("/overview").status_code == 302


def test_sign_in_is_limited_per_address_and_per_key_id(site: dict[str, Any]) -> None:
    client = site["app"].test_client()
    key_id = site["key"].split("_")[1]
    answers = [_sign_in(client, f"wp_{key_id}_wrong{n}").status_code for n in range(SIGNIN_BURST + 5)]
    assert answers[:SIGNIN_BURST] == [401] * SIGNIN_BURST and answers[-1] == 429
    limited = _sign_in(client, f"wp_{key_id}_wrong")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in limited.text
    # the key id under attack waits from any address; another key from a fresh address does not
    assert _sign_in(client, site["key"], "198.51.100.9").status_code == 429
    other = site["app"].test_client()
    with storage.transaction(conn := storage.connect(site["app"].config["DATABASE"])):
        second = auth.create_key(conn, "other", "auditor")
    conn.close()
    assert _sign_in(other, second, "198.51.100.10").status_code == 302
    # an address that guesses many key ids waits too
    spray = [_sign_in(other, f"wp_{n:012x}_x", "203.0.113.5").status_code for n in range(SIGNIN_BURST + 2)]
    assert spray[-1] == 429
