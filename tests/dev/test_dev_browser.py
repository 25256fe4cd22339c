"""The outbox page in a real browser: Debian's Chromium, driven by Playwright.

Never `playwright install`: the system Chromium is the browser. Absent Chromium (or the
playwright package) skips with the reason, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dev_outbox import LocalOutbox, alert

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # bound on every wait for the page; never a timing assertion


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A persistent Chromium context on a fresh profile directory, shared by this module."""
    if shutil.which(CHROMIUM) is None:
        _missing(f"{CHROMIUM} not found: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -r requirements-dev.txt")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def test_open_a_message_and_download_its_attachment(
    local_outbox: LocalOutbox, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    report = b"mount,used\n/var,91%\n" + bytes(range(256))
    local_outbox.send(
        alert(
            "Disk 91% on db-1",
            html="<h2>Disk almost full</h2><p>Volume <b>/var</b> at 91%.</p>",
            attachments=[("보고서 df.csv", "text/csv", report)],
        )
    )

    page.goto(local_outbox.url + "/")
    row = page.locator("tr.message-row", has_text="Disk 91% on db-1")
    expect(row).to_be_visible()
    expect(row).to_contain_text("Dev Alerts <alerts@dev.localhost>")
    row.locator("td.subject a").click()

    expect(page.locator("h1.subject")).to_have_text("Disk 91% on db-1")
    body = page.frame_locator("iframe.html-body").locator("body")
    expect(body).to_contain_text("Volume /var at 91%.")

    with page.expect_download() as download_info:
        page.locator("a.attachment", has_text="보고서 df.csv").click()
    download = download_info.value
    assert download.suggested_filename == "보고서 df.csv"
    saved = tmp_path / "download.bin"
    download.save_as(saved)
    assert saved.read_bytes() == report


def test_scripts_in_an_html_body_do_not_run(local_outbox: LocalOutbox, page: Any) -> None:
    from playwright.sync_api import expect

    hostile = (
        "<p id='static'>static content stays</p>"
        "<script>document.body.innerHTML = 'SCRIPT RAN';"
        " try { parent.document.title = 'pwned'; } catch (e) {}"
        " try { top.pwned = true; } catch (e) {}</script>"
        "<img src='x' onerror=\"document.body.innerHTML = 'HANDLER RAN'\">"
    )
    local_outbox.send(alert("hostile html", html=hostile))
    (message_id,) = local_outbox.outbox.ids()

    page.goto(f"{local_outbox.url}/messages/{message_id}")
    frame_body = page.frame_locator("iframe.html-body").locator("body")
    ran = "a script in the html body ran and replaced the static content"
    expect(frame_body, ran).to_contain_text("static content stays")
    title = page.title()
    assert "pwned" not in title
    assert page.evaluate("() => window.pwned === undefined")
    frame_text = frame_body.inner_text()
    assert "SCRIPT RAN" not in frame_text
    assert "HANDLER RAN" not in frame_text

    # Opened on its own (no iframe sandbox to help), the body's CSP alone keeps scripts off.
    page.goto(f"{local_outbox.url}/messages/{message_id}/body.html")
    expect(page.locator("#static"), ran).to_have_text("static content stays")
    text = page.locator("body").inner_text()
    assert "SCRIPT RAN" not in text
    assert "HANDLER RAN" not in text


def test_the_list_refreshes_when_mail_arrives(local_outbox: LocalOutbox, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(local_outbox.url + "/")
    expect(page.locator("p.empty")).to_be_visible()
    local_outbox.send(alert("arrived while watching"))
    expect(page.locator("tr.message-row", has_text="arrived while watching")).to_be_visible()
