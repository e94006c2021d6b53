"""The web pages in a real browser: Debian's Chromium driven by Playwright, against the
verifier that `wattproof demo --serve` leaves running with the demo's data. Every page loads
without a console error or a failed request, its charts are drawn (SVG marks counted), a
person's flow works end to end (sign in, find a charging session, download its provenance
certificate, upload it on the verify page: verified; a tampered copy: not verified, with the
layer named), a phone-width viewport stays usable, and the keyboard reaches everything.

The screenshots of docs/screenshots/ are taken here, from the demo's data, so they stay
current."""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="make test installs Debian's chromium"
    ),
]


@pytest.fixture(scope="module")
def demo(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(the pages' URL, an API key): the suite's one `wattproof demo --serve` (tests/conftest.py,
    demo_runs). WATTPROOF_WEB_DEMO="URL KEY" uses a demo already running (while working on
    the pages)."""
    if os.environ.get("WATTPROOF_WEB_DEMO"):
        running_url, running_key = os.environ["WATTPROOF_WEB_DEMO"].split()
        return running_url.rstrip("/"), running_key
    runs = request.getfixturevalue("demo_runs")
    return runs.url, runs.key


class Watch:
    """Console errors and failed requests of a page, collected as it runs."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=ARGS, headless=True, timezone_id="Europe/Paris", locale="en-US",
            viewport={"width": 1280, "height": 900}, accept_downloads=True,
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def _sign_in(page: Any, url: str, key: str) -> None:
    page.goto(url + "/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")  # the keyboard submits the form
    page.wait_for_url(re.compile(r".*/overview$"))


def _marks(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def test_every_page_loads_clean_and_draws_its_charts(demo: tuple[str, str], browser: Any) -> None:
    url, key = demo
    page = browser.new_page()
    watch = Watch(page)
    _sign_in(page, url, key)
    SHOTS.mkdir(parents=True, exist_ok=True)

    def visit(name: str, path: str, charts: dict[str, int] | None = None) -> None:
        page.goto(url + path)
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() == 1, name
        for selector, least in (charts or {}).items():
            assert _marks(page, selector) >= least, f"{name}: {selector} drew {_marks(page, selector)} marks"
        # times were shown in the viewer's zone by the page's script (Paris is not UTC), in one
        # unambiguous form whatever the browser's locale (2026-12-05 14:00:00, 2026-12-05)
        for t in page.locator("main time").all()[:3]:
            assert "UTC" not in t.inner_text() and "UTC" in (t.get_attribute("title") or ""), name
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?", t.inner_text()), (name, t.inner_text())
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    visit("overview", "/overview")
    cut = page.evaluate("[...document.querySelectorAll('.card .scroll')].filter(e => e.scrollWidth > e.clientWidth)"
                        ".map(e => e.innerText.slice(0, 40))")  # fmt: skip
    assert cut == [], f"an overview card hides columns at 1280 px: {cut}"
    assert "Witness cosignatures: witness.example/w1, witness.example/w2" in page.inner_text("main")
    visit("devices", "/devices")
    visit("device-producer", "/devices/solar-roof-1?days=1", {"svg.chart rect.bar.gen": 8})
    visit("device-consumer", "/devices/home-1?days=1", {"svg.chart rect.bar.use": 8})
    visit("certificates", "/certificates")
    page.locator("a", has_text="lifecycle").first.click()
    page.wait_for_load_state("networkidle")
    assert "Lifecycle" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "certificate-lifecycle.png"), full_page=True)
    page.goto(url + "/certificates")
    page.locator("a", has_text="statement").first.click()
    page.wait_for_load_state("networkidle")
    assert "Cancellation statement" in page.inner_text("h1")
    page.screenshot(path=str(SHOTS / "claim-statement.png"), full_page=True)
    visit("matching", "/matching?device_id=home-1", {"svg.chart rect.bar": 8, "svg.heatmap rect.cell": 24,
                                                      "svg.chart polyline.line": 1})  # fmt: skip
    assert re.search(r"Hourly match\s+\d+\.\d %", page.inner_text("main"))
    visit("communities", "/communities")
    page.locator("main a").first.click()
    page.wait_for_load_state("networkidle")
    assert _marks(page, "svg.chart rect.bar.gen") >= 8
    page.screenshot(path=str(SHOTS / "community.png"), full_page=True)
    page.get_by_role("link", name=re.compile("settlement statement")).click()
    page.wait_for_load_state("networkidle")
    assert "Who owes whom" in page.inner_text("main") and "EUR" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "community-settlement.png"), full_page=True)
    visit("sessions", "/sessions")
    page.goto(url + "/sessions?state=completed")
    page.locator("table.sessions a").first.click()
    page.wait_for_load_state("networkidle")
    assert _marks(page, "svg.chart circle.dot") >= 2 and "OCMF verified" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "session.png"), full_page=True)
    visit("ledger", "/ledger")
    page.get_by_label("Find an entry").fill("solar-roof-1/0")
    page.get_by_role("button", name="Find").click()
    page.wait_for_url(re.compile(r".*/ledger/entries/\d+$"))
    assert "included" in page.inner_text("main") and "Inclusion proof" in page.inner_text("main")
    leaf = page.locator("dd code").first.inner_text()
    page.screenshot(path=str(SHOTS / "ledger-entry.png"), full_page=True)
    page.goto(url + "/ledger?q=" + leaf)  # the same entry by its leaf hash
    assert page.url.endswith("/ledger/entries/" + page.url.rsplit("/", 1)[1]) and leaf in page.inner_text("main")
    visit("consistency", "/ledger/consistency?from=11")
    assert "consistent" in page.inner_text("main")
    visit("verify", "/verify")
    assert not watch.problems, watch.problems


def test_a_person_verifies_a_sessions_certificate_and_a_tampered_copy(
    demo: tuple[str, str], browser: Any, tmp_path: Path
) -> None:
    url, key = demo
    page = browser.new_page()
    watch = Watch(page)
    _sign_in(page, url, key)
    page.get_by_role("link", name="Charging").click()
    page.get_by_label("State").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    page.locator("table.sessions a").first.click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Provenance certificate").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    page.get_by_role("link", name="Verify", exact=True).click()
    page.get_by_label("Certificate file").set_input_files(str(saved))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_load_state("networkidle")
    verdict = page.locator(".verdict")
    assert verdict.locator("h2").inner_text() == "Verified", verdict.inner_text()
    assert "OCMF record the charger signed" in verdict.inner_text()
    page.screenshot(path=str(SHOTS / "verify-verified.png"), full_page=True)

    doc = json.loads(saved.read_bytes())
    raw = bytearray(base64.b64decode(doc["readings"][0]["raw"]))
    raw[6] ^= 1
    doc["readings"][0]["raw"] = base64.b64encode(bytes(raw)).decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    page.get_by_label("Certificate file").set_input_files(str(tampered))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".verdict h2").inner_text() == "Not verified"
    assert page.locator(".verdict .layer").inner_text() == "merkle path"
    page.screenshot(path=str(SHOTS / "verify-not-verified.png"), full_page=True)
    assert not watch.problems, watch.problems


def test_a_phone_and_a_keyboard_can_use_the_pages(demo: tuple[str, str], browser: Any) -> None:
    url, key = demo
    page = browser.new_page()
    watch = Watch(page)
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, url, key)
    phone_pages = ("/overview", "/devices/solar-roof-1", "/matching?device_id=home-1", "/sessions", "/ledger",
                   "/certificates", "/communities")  # fmt: skip
    for path in phone_pages:
        page.goto(url + path)
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 1, f"{path} is {wide}px wider than a phone"
        assert page.get_by_role("navigation", name="Pages").is_visible()
        # every table scrolls in its own box, and no cell breaks a word in two
        loose = page.evaluate("[...document.querySelectorAll('main table')].filter(t => !t.closest('.scroll')).length")
        assert loose == 0, f"{path}: {loose} tables outside a scrolling box"
        broken = page.evaluate("[...document.querySelectorAll('main td')].filter(td =>"
                               " getComputedStyle(td).overflowWrap === 'anywhere').length")  # fmt: skip
        assert broken == 0, f"{path}: cells break inside words"
        # charts keep labels a person can read: drawn at least 36em wide, scrolling sideways
        narrow = page.evaluate("[...document.querySelectorAll('svg.chart')].filter(s =>"
                               " s.getBoundingClientRect().width < 500).length")  # fmt: skip
        assert narrow == 0, f"{path}: a chart shrunk below a readable size"
    page.goto(url + "/ledger")
    page.screenshot(path=str(SHOTS / "phone-ledger.png"), full_page=False)
    page.goto(url + "/devices/solar-roof-1")
    tall = page.evaluate("document.documentElement.scrollHeight")
    assert tall < 6000, f"a device page is {tall}px tall on a phone"
    page.goto(url + "/communities")
    page.locator("main a").first.click()
    page.get_by_role("link", name=re.compile("settlement statement")).click()
    page.wait_for_load_state("networkidle")
    cut = page.evaluate("[...document.querySelectorAll('main table')].filter(t => !t.closest('.scroll')).length")
    assert cut == 0 and page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    page.screenshot(path=str(SHOTS / "phone-settlement.png"), full_page=False)

    # keyboard: the first Tab reaches the skip link, which moves the focus to the content
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(url + "/overview")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the content's first stop: a link, or a table that scrolls (Chromium focuses those)
    assert page.evaluate("document.activeElement.closest('main') !== null && document.activeElement.id !== 'main'")
    # every form control has a label, every chart a title and description for screen readers
    for path in ("/signin", "/verify", "/matching?device_id=home-1", "/sessions", "/ledger", "/devices/home-1"):
        page.goto(url + path)
        unlabelled = page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)"""
        )
        assert unlabelled == [], f"{path}: {unlabelled}"
        charts = page.evaluate(
            """[...document.querySelectorAll('svg.chart')].map(s => s.getAttribute('role') === 'img' &&
                 s.getAttribute('aria-labelledby').split(' ').every(id => document.getElementById(id)?.textContent))"""
        )
        assert all(charts), f"{path}: a chart without its title or description"
    assert not watch.problems, watch.problems


def test_a_visitor_without_a_key_is_asked_to_sign_in_and_a_wrong_key_is_refused(
    demo: tuple[str, str], browser: Any
) -> None:
    url, key = demo
    page = browser.new_page()
    page.context.clear_cookies()
    page.goto(url + "/overview")
    assert page.url.endswith("/signin?next=/overview")
    page.get_by_label("API key").fill(key[:-2] + "xx")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("[role=alert]").inner_text() == "unknown or revoked API key"
    assert page.get_by_label("API key").get_attribute("aria-invalid") == "true"
    page.goto(url + "/ledger")  # public
    assert page.locator("h1").inner_text() == "The ledger"
