"""The web pages without a browser, on both engines: signing in (session cookie flags, CSRF),
what each role may see, every page answering with the test setting's data and charts whose
marks add up to the figures the library computes, downloads that verify, errors as pages."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Database
from tests.meters import T0
from tests.test_green import _setting
from verifier import auth, storage
from verifier.app import create_app
from verifier.certificates import matching, registry
from verifier.provenance import checks
from verifier.web import charts


@pytest.fixture
def site(database: Database, conn: storage.Connection) -> dict[str, Any]:
    _setting(conn)
    with storage.transaction(conn):
        keys = {role: auth.create_key(conn, f"web {role}", role) for role in ("admin", "utility", "auditor")}
        keys["account"] = auth.create_key(conn, "web account", "account", account="sun")
    app = create_app(database.config())
    return {"app": app, "keys": keys, "conn": conn}


def _csrf(client: Any, path: str = "/signin") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def _client(site: dict[str, Any], role: str) -> Any:
    client = site["app"].test_client()
    answer = client.post("/signin", data={"csrf_token": _csrf(client), "api_key": site["keys"][role]})
    assert answer.status_code == 302
    return client


def test_signing_in_sets_a_safe_cookie_and_needs_the_forms_token(site: dict[str, Any]) -> None:
    client = site["app"].test_client()
    assert client.get("/overview").headers["Location"] == "/signin?next=/overview"
    token = _csrf(client)
    no_token = client.post("/signin", data={"api_key": site["keys"]["utility"]})
    assert no_token.status_code == 400 and "did not come from this site" in no_token.text
    assert "text/html" in no_token.content_type  # a page, not a traceback or JSON
    wrong = client.post("/signin", data={"csrf_token": token, "api_key": "wp_nope_nope"})
    assert wrong.status_code == 401 and "unknown or revoked API key" in wrong.text
    ok = client.post(
        "/signin", data={"csrf_token": token, "api_key": site["keys"]["utility"], "next": "//evil.example/"}
    )
    assert ok.status_code == 302 and ok.headers["Location"] == "/"  # never sent to another site
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    payload = cookie.split("=", 1)[1].split(".")[0]
    held = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    key_id = site["keys"]["utility"].split("_")[1]
    assert held.pop("sid") and held == {"_permanent": True, "key_id": key_id}  # never the secret
    assert client.get("/overview").status_code == 200
    https = site["app"].test_client()
    token = _csrf(https)
    over_tls = https.post("/signin", data={"csrf_token": token, "api_key": site["keys"]["utility"]},
                          base_url="https://localhost")  # fmt: skip
    assert "Secure" in over_tls.headers["Set-Cookie"]
    # revoking the key signs the person out at their next request
    with storage.transaction(site["conn"]):
        auth.revoke_key(site["conn"], site["keys"]["utility"].split("_")[1])
    assert client.get("/overview").status_code == 302
    signout = _client(site, "admin")
    assert signout.post("/signout", data={}).status_code == 400  # a form without its token
    assert signout.post("/signout", data={"csrf_token": _csrf(signout, "/overview")}).status_code == 302
    assert signout.get("/overview").status_code == 302


def test_each_role_sees_its_pages(site: dict[str, Any]) -> None:
    account = _client(site, "account")
    assert account.get("/certificates").status_code == 200
    assert "Certificates of sun" in account.get("/certificates").text
    assert account.get("/matching?account_id=cpo").status_code == 403  # another account's load
    for path in ("/overview", "/sessions", "/communities/rue", "/devices/pv-1"):
        assert account.get(path).status_code == 403, path
    nav = account.get("/certificates").text
    assert ">Charging<" not in nav and ">Matching<" in nav
    anonymous = site["app"].test_client()
    assert anonymous.get("/ledger").status_code == 200 and anonymous.get("/verify").status_code == 200
    assert anonymous.get("/ledger/entries/3").status_code == 200
    assert anonymous.get("/sessions").status_code == 302


def test_every_page_answers_with_the_data_and_charts_add_up(site: dict[str, Any]) -> None:
    client, conn = _client(site, "admin"), site["conn"]
    day = T0 - T0 % 86400
    date = charts.utc_text(day, "%Y-%m-%d")[:-4]
    for path in ("/overview", "/devices", "/devices/pv-1", "/devices/charger-g?days=1", "/certificates",
                 "/matching", "/communities", f"/communities/rue?day={date}", "/communities/rue/settlement",
                 "/sessions", "/ledger", "/ledger/entries/0", "/ledger/consistency?from=3", "/verify"):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert "Content-Security-Policy" in page.headers and page.headers["Cache-Control"] == "no-store"

    # the matching chart's bars are the library's hours, Wh for Wh
    page = client.get(f"/matching?device_id=charger-g&from={date}&to={charts.utc_text(day + 86400, '%Y-%m-%d')[:-4]}")
    rows = matching.hours(conn, day, day + 86400, device_id="charger-g")
    summary = matching.summary(rows)
    assert page.text.count('class="bar gen') == sum(1 for h in rows if h.matched_wh)
    assert page.text.count('class="cell') == 24
    assert f"{summary['hourly_match'] * 100:.1f} %" in page.text
    # the certificates inventory is the registry's
    inventory = registry.inventory(conn)
    page = client.get("/certificates")
    assert charts.wh_text(inventory["Claimed"]["wh"]) in page.text
    # a session's downloads: the provenance certificate verifies with the log's key
    session = re.search(r'href="(/sessions/charger-g/[0-9a-f]+)"', client.get("/sessions?state=completed").text)
    assert session is not None
    shown = client.get(session.group(1))
    assert "OCMF verified" in shown.text and shown.text.count('class="dot"') >= 1
    cert = client.get(session.group(1) + "/certificate.json")
    assert cert.headers["Content-Disposition"].startswith("attachment")
    log = site["app"].extensions["wattproof.log_signer"]
    assert checks.verify(cert.data, log.verifier()).kind == "session"
    assert client.get(session.group(1) + "/ocmf.txt").data.startswith(b"OCMF|")

    # the verify page: the downloaded file verifies, a changed byte does not
    token = _csrf(client, "/verify")
    verdict = client.post("/verify", data={"csrf_token": token, "certificate": (_io(cert.data), "s.json")},
                          content_type="multipart/form-data")  # fmt: skip
    assert verdict.status_code == 200 and '<h2 id="h-result">Verified</h2>' in verdict.text
    broken = cert.data.replace(b'"OCMF|{', b'"OCMF|{ ', 1)
    verdict = client.post("/verify", data={"csrf_token": token, "certificate": (_io(broken), "s.json")},
                          content_type="multipart/form-data")  # fmt: skip
    assert "Not verified" in verdict.text and 'class="layer">ocmf<' in verdict.text


def _io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_bad_input_gets_a_page_that_says_what_to_do(site: dict[str, Any]) -> None:
    client = _client(site, "admin")
    for path, status, words in (
        ("/devices/nope", 404, "no device nope"),
        ("/devices/pv-1?days=3", 400, "one of 1, 7, 31, 365"),
        ("/matching?device_id=pv-1", 404, "not an enrolled consumer"),
        ("/matching?device_id=charger-g&from=2020-13-01", 400, "YYYY-MM-DD"),
        ("/ledger?q=hello", 400, "search by entry index"),
        ("/ledger/entries/999999", 404, "no ledger entry 999999"),
        ("/ledger/consistency?from=0", 400, "0 &lt; from"),
        ("/claims/12345", 404, "no claim 12345"),
        ("/communities/rue?month=2026-1", 400, "YYYY-MM"),
    ):
        page = client.get(path)
        assert page.status_code == status and words in page.text and "text/html" in page.content_type, (path, page.text)


def test_charts_escape_what_they_draw_and_scale_to_the_data() -> None:
    svg = charts.bars("<b>", [0, 3600], 3600, [charts.Series("a&b", [1500, None], "gen")])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a&amp;b" in svg
    assert svg.count('class="bar gen') == 1 and svg.count('class="nodata"') == 1
    assert (
        charts.wh_text(999) == "999 Wh"
        and charts.wh_text(1500) == "1.50 kWh"
        and charts.wh_text(2_500_000) == "2.50 MWh"
    )
    heat = charts.heatmap("m", [0], [[None] * 23 + [1.0]])
    assert heat.count('class="cell none"') == 23 and heat.count('class="cell m10"') == 1


def test_static_files_are_served_and_cacheable(site: dict[str, Any], tmp_path: Path) -> None:
    client = site["app"].test_client()
    css = client.get("/static/web/web.css")
    assert css.status_code == 200 and "svg.chart" in css.text
    assert client.get("/static/web/web.js").status_code == 200


def test_the_ledger_page_pages_back_to_entry_0(site: dict[str, Any]) -> None:
    client = site["app"].test_client()
    seen: list[int] = []
    url: str | None = "/ledger"
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200
        seen += [int(i) for i in re.findall(r'href="/ledger/entries/(\d+)"', page.text)]
        older = re.search(r'href="(/ledger\?before=\d+)" rel="next"', page.text)
        url = older.group(1) if older else None
    size = int(re.search(r"([\d,]+) entries in all", page.text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert seen == list(range(size - 1, -1, -1)), seen[-5:]  # every entry once, newest first, down to 0


def test_a_chargers_page_links_its_sessions(site: dict[str, Any]) -> None:
    client = _client(site, "utility")
    chargers = [r[0] for r in site["conn"].execute("SELECT device_id FROM devices WHERE role = 'charger'")]
    assert chargers
    page = client.get(f"/devices/{chargers[0]}")
    assert page.status_code == 200 and f'href="/sessions?charger={chargers[0]}"' in page.text
    assert client.get(f"/sessions?charger={chargers[0]}").status_code == 200


def test_a_device_page_opens_on_its_data(site: dict[str, Any]) -> None:
    client = _client(site, "utility")
    device, first, last = (
        site["conn"]
        .execute(
            "SELECT device_id, MIN(first_ts), MAX(last_ts) FROM packets GROUP BY device_id ORDER BY device_id LIMIT 1"
        )
        .fetchone()
    )
    span = (int(last) // 86400 - int(first) // 86400) + 1
    page = client.get(f"/devices/{device}")
    chosen = re.search(r'<option value="(\d+)" selected>', page.text)
    assert chosen is not None and int(chosen.group(1)) >= span
    assert int(chosen.group(1)) == min(n for n in (1, 7, 31, 365) if n >= span)  # the shortest that holds it
