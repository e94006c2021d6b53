"""An account reads only its own: every read endpoint, API and pages, asked by account A for
account B's objects, answers 403/404 or an answer without any of B's names in it.

The routes come from the application's own route list, so a new endpoint that this table
does not name fails the test until someone decides who may read it. Before, account keys
read other accounts' bundles, claims and statements, balances, provenance files, and every
community's per-member 15-minute consumption and bills through the API."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Database
from tests.meters import HOUR, T0, Meter
from verifier import auth, storage
from verifier.app import create_app
from verifier.certificates import issuance, registry
from verifier.communities import operation
from verifier.log import note

LOG = note.Signer.generate("test.example/log")
NOW = T0 + 40 * 86400
B_NAMES = ("acct-b", "pv-b", "home-b", "comm-b")  # nothing of these may reach account A
PUBLIC, NOT_FOR_ACCOUNTS, SCOPED = "public", "not for accounts", "scoped"


def _world(conn: storage.Connection) -> dict[str, Any]:
    """Two accounts, each with a producer, a consumer, certificates, a claim and a community."""
    found: dict[str, Any] = {}
    with storage.transaction(conn):
        for side in ("a", "b"):
            registry.create_account(conn, f"acct-{side}", f"Account {side}", "producer", now=T0)
    for side in ("a", "b"):
        Meter(conn, f"pv-{side}").send(3 * 60 + 20)
        Meter(conn, f"home-{side}", role="consumer", capacity_w=9000).send(3 * 60 + 20, wh_per_min=20)
        with storage.transaction(conn):
            registry.assign_device(conn, f"acct-{side}", f"pv-{side}", now=T0)
            registry.assign_device(conn, f"acct-{side}", f"home-{side}", now=T0)
    with storage.transaction(conn):
        issued = issuance.issue_pending(conn, NOW, LOG.name, 365 * 86400)[0]
    for side in ("a", "b"):
        mine = [b for b in issued if b["account_id"] == f"acct-{side}"]
        start = mine[0]["bundle_id_range_start"]
        with storage.transaction(conn):
            claim, _ = registry.act(
                conn, "claim",
                {"ranges": [[start, start + 99]], "beneficiary": f"acct-{side}", "holder": f"acct-{side}",
                 "consumer_device": f"home-{side}", "period_start": T0 + HOUR, "period_end": T0 + 2 * HOUR,
                 "time": NOW},
            )  # fmt: skip
            operation.create(conn, f"comm-{side}", f"Community {side}", "FR", "EUR", T0, "0.1")
            operation.add_member(conn, f"comm-{side}", f"pv-{side}", T0)
            operation.add_member(conn, f"comm-{side}", f"home-{side}", T0)
        found[side] = {"claim": claim, "issuance": mine[0]["ledger_index"], "issuance_id": mine[0]["issuance_id"]}
    with storage.transaction(conn):
        for side in ("a", "b"):
            found[side]["key"] = auth.create_key(conn, f"key {side}", "account", account=f"acct-{side}")
    return found


DAY = f"from={T0}&to={T0 + 4 * HOUR}"
MONTH = "month=" + __import__("verifier.devices.records", fromlist=["iso"]).iso(T0)[:7]

# Every GET route: who may read it, and the address of account B's object (B's ids).
ROUTES: dict[str, tuple[str, str]] = {
    # the API
    "certificates.list_bundles": (SCOPED, "/v1/certificates?account_id=acct-b"),
    "certificates.list_claims": (SCOPED, "/v1/claims?beneficiary=acct-b"),
    "certificates.claim_statement": (SCOPED, "/v1/claims/{b_claim}"),
    "certificates.list_accounts": (SCOPED, "/v1/accounts"),
    "certificates.hourly_matching": (SCOPED, f"/v1/matching?account_id=acct-b&{DAY}"),
    "provenance.granular": (SCOPED, "/v1/certificates/{b_issuance}/provenance"),
    "communities.list_communities": (SCOPED, "/v1/communities"),
    "communities.show_community": (SCOPED, "/v1/communities/comm-b"),
    "communities.allocation": (SCOPED, f"/v1/communities/comm-b/allocation?{DAY}"),
    "communities.settlement": (SCOPED, f"/v1/communities/comm-b/settlement?{MONTH}"),
    "devices.list_devices": (NOT_FOR_ACCOUNTS, "/v1/devices"),
    "devices.get_device": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b"),
    "devices.device_energy": (NOT_FOR_ACCOUNTS, f"/v1/devices/pv-b/energy?{DAY}"),
    "devices.device_readings": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b/readings"),
    "provenance.reading": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b/readings/0/certificate"),
    "provenance.packet": (NOT_FOR_ACCOUNTS, "/v1/packets/pv-b/0/certificate"),
    "provenance.session": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b/sessions/x/certificate"),
    "sessions.device_sessions": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b/sessions"),
    "sessions.device_session": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b/sessions/x"),
    "sessions.session_ocmf": (NOT_FOR_ACCOUNTS, "/v1/devices/pv-b/sessions/x/ocmf"),
    "keys.list_keys": (NOT_FOR_ACCOUNTS, "/v1/keys"),
    "ledger.packet": (NOT_FOR_ACCOUNTS, "/v1/packets/pv-b/0"),
    "ocpi.versions": (NOT_FOR_ACCOUNTS, "/ocpi/versions"),
    "ocpi.version_details": (NOT_FOR_ACCOUNTS, "/ocpi/2.2.1"),
    "ocpi.cdrs": (NOT_FOR_ACCOUNTS, "/ocpi/2.2.1/cdrs"),
    # public by design: anyone may check the log (docs/ledger.md)
    "ledger.checkpoint": (PUBLIC, "/v1/ledger/checkpoint"),
    "ledger.key": (PUBLIC, "/v1/ledger/key"),
    "ledger.entry": (PUBLIC, "/v1/ledger/entries/1"),
    "ledger.consistency": (PUBLIC, "/v1/ledger/proof/consistency?from=1&to=2"),
    "ledger.inclusion": (PUBLIC, "/v1/ledger/proof/inclusion?index=1&size=2"),
    "ledger.packet_header": (PUBLIC, "/v1/packets/pv-b/0/header"),
    "openapi.openapi": (PUBLIC, "/v1/openapi.json"),
    "tiles.checkpoint": (PUBLIC, "/log/checkpoint"),
    "tiles.tile": (PUBLIC, "/log/tile/0/000"),
    "static": (PUBLIC, "/static/web.css"),
    # the pages (signed in with the account key)
    "web.home": (SCOPED, "/"),
    "web.signin": (PUBLIC, "/signin"),
    "web.verify": (PUBLIC, "/verify"),
    "web.static": (PUBLIC, "/static/web/web.css"),
    "web.ledger": (PUBLIC, "/ledger"),
    "web.ledger_consistency": (PUBLIC, "/ledger/consistency"),
    "web.ledger_entry": (PUBLIC, "/ledger/entries/1"),
    "web.certificates": (SCOPED, "/certificates?account_id=acct-b"),
    "web.issuance": (SCOPED, "/certificates/{b_issuance}"),
    "web.issuance_provenance": (SCOPED, "/certificates/{b_issuance}/provenance.json"),
    "web.issuance_of": (SCOPED, "/certificates/hour/{b_issuance_id}"),
    "web.claim": (SCOPED, "/claims/{b_claim}"),
    "web.matching": (SCOPED, "/matching?account_id=acct-b"),
    "web.overview": (NOT_FOR_ACCOUNTS, "/overview"),
    "web.devices": (NOT_FOR_ACCOUNTS, "/devices"),
    "web.device": (NOT_FOR_ACCOUNTS, "/devices/pv-b"),
    "web.packet_certificate": (NOT_FOR_ACCOUNTS, "/devices/pv-b/packets/0/certificate.json"),
    "web.reading_certificate": (NOT_FOR_ACCOUNTS, "/devices/pv-b/readings/0/certificate.json"),
    "web.communities": (NOT_FOR_ACCOUNTS, "/communities"),
    "web.community": (NOT_FOR_ACCOUNTS, "/communities/comm-b"),
    "web.community_settlement": (NOT_FOR_ACCOUNTS, f"/communities/comm-b/settlement?{MONTH}"),
    "web.community_csv": (NOT_FOR_ACCOUNTS, f"/communities/comm-b/steps.csv?{MONTH}"),
    "web.sessions": (NOT_FOR_ACCOUNTS, "/sessions"),
    "web.session_page": (NOT_FOR_ACCOUNTS, "/sessions/pv-b/x"),
    "web.session_cdr": (NOT_FOR_ACCOUNTS, "/sessions/pv-b/x/cdr.json"),
    "web.session_certificate": (NOT_FOR_ACCOUNTS, "/sessions/pv-b/x/certificate.json"),
    "web.session_ocmf": (NOT_FOR_ACCOUNTS, "/sessions/pv-b/x/ocmf.txt"),
}


def get_routes(app: Flask) -> set[str]:
    return {r.endpoint for r in app.url_map.iter_rules() if "GET" in (r.methods or ())}


@pytest.fixture
def scoped(database: Database, conn: storage.Connection) -> tuple[Flask, dict[str, Any]]:
    world = _world(conn)
    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    return app, world


def _signed_in(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/signin").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    assert client.post("/signin", data={"csrf_token": csrf.group(1), "api_key": token}).status_code == 302
    return client


def _ask(app: Flask, endpoint: str, url: str, token: str) -> Any:
    if endpoint.startswith("web.") or endpoint == "static":
        return _signed_in(app, token).get(url)
    if endpoint.startswith("ocpi."):
        return app.test_client().get(url, headers={"Authorization": f"Token {token}"})
    return app.test_client().get(url, headers={"Authorization": f"Bearer {token}"})


def test_the_table_names_every_read_endpoint(scoped: tuple[Flask, dict[str, Any]]) -> None:
    app, _ = scoped
    assert get_routes(app) == set(ROUTES), "decide who may read a new endpoint, and add it to ROUTES"


def test_an_account_reads_only_its_own(scoped: tuple[Flask, dict[str, Any]]) -> None:
    app, world = scoped
    names = {"b_claim": world["b"]["claim"], "b_issuance": world["b"]["issuance"],
             "b_issuance_id": world["b"]["issuance_id"]}  # fmt: skip
    leaks = []
    for endpoint, (who, template) in sorted(ROUTES.items()):
        url = template.format(**names)
        as_a = _ask(app, endpoint, url, world["a"]["key"])
        body = as_a.get_data(as_text=True)
        if who == PUBLIC:
            assert as_a.status_code in (200, 302, 404), (endpoint, as_a.status_code)
            continue
        if who == NOT_FOR_ACCOUNTS:
            assert as_a.status_code in (401, 403), (endpoint, url, as_a.status_code)
            continue
        if as_a.status_code in (403, 404):
            continue
        assert as_a.status_code in (200, 302), (endpoint, url, as_a.status_code, body[:300])
        shown = [n for n in B_NAMES if n in body]
        if shown:
            leaks.append(f"{endpoint} {url}: {', '.join(shown)}")
        # B asking for the same gets its own data: the address is a real one
        as_b = _ask(app, endpoint, url, world["b"]["key"])
        assert as_b.status_code in (200, 302), (endpoint, url, as_b.status_code)
    assert not leaks, "account A read account B's data:\n" + "\n".join(leaks)


def test_an_account_sees_its_own_rows_and_the_community_totals(scoped: tuple[Flask, dict[str, Any]]) -> None:
    app, world = scoped
    a = {"Authorization": f"Bearer {world['a']['key']}"}
    client = app.test_client()
    listed = client.get("/v1/communities", headers=a).get_json()["communities"]
    assert [c["community_id"] for c in listed] == ["comm-a"]
    steps = client.get(f"/v1/communities/comm-a/allocation?{DAY}", headers=a).get_json()["steps"]
    assert steps and set(steps[0]["consumers"]) <= {"home-a"}
    accounts = client.get("/v1/accounts", headers=a).get_json()["accounts"]
    assert [x["account_id"] for x in accounts] == ["acct-a"] and accounts[0]["balance_wh"]["claimed"] == 100
    claims = client.get("/v1/claims", headers=a).get_json()["claims"]
    assert [c["claim_id"] for c in claims] == [world["a"]["claim"]]
    own = client.get(f"/v1/certificates?claim_id={world['a']['claim']}", headers=a).get_json()["bundles"]
    assert sum(b["bundle_quantity"] for b in own) == 100
    assert client.get(f"/v1/certificates/{world['a']['issuance']}/provenance", headers=a).status_code == 200
    utility = auth.create_key(storage.connect(app.config["DATABASE"]), "u", "utility")
    everyone = client.get("/v1/communities", headers={"Authorization": f"Bearer {utility}"}).get_json()
    assert [c["community_id"] for c in everyone["communities"]] == ["comm-a", "comm-b"]
