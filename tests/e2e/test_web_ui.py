"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against a whole
``pat up``: live list, message view, attachments, remote-image blocking, delete, hostile mail."""

from __future__ import annotations

import base64
import http.server
import json
import smtplib
import threading
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.error import HTTPError
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.conftest import PatUp
from tests.support.postgres import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = "/tmp/pat-ui.png"
# A 16x16 PNG, for the inline (cid:) image.
LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAF0lEQVR4nGNkYPjPQApgIkn1qIahqwEAL4YBH4oz"
    "h+0AAAAASUVORK5CYII=")
PDF = b"%PDF-1.4 not really a report\n"


@pytest.fixture
def page(pat_up: PatUp) -> Iterator[Page]:
    """A browser tab; closed before ``pat up`` stops, so no live stream holds the server."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=pat_up.base_url, accept_downloads=True,
                                      viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        yield context.new_page()
        browser.close()


class _CountingImageServer(http.server.ThreadingHTTPServer):
    """A "remote" image host on another origin that counts the requests it gets."""

    hits = 0


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    server: _CountingImageServer

    def do_GET(self) -> None:
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(LOGO)))
        self.end_headers()
        self.wfile.write(LOGO)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def remote_images() -> Iterator[_CountingImageServer]:
    server = _CountingImageServer(("127.0.0.1", free_port()), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _send(pat_up: PatUp, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", pat_up.smtp_port) as client:
        client.send_message(message)


def _invoice(remote_url: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Billing <billing@shop.example>"
    message["To"] = "Ada Lovelace <ada@example.test>"
    message["Cc"] = "ops@example.test"
    message["Subject"] = "Invoice 1042"
    message.set_content("Hello Ada,\nyour invoice is attached.\n")
    message.add_alternative(
        '<h2 id="title">Invoice 1042</h2><p>Hello <b>Ada</b>, your invoice is attached.</p>'
        f'<img id="logo" src="cid:logo@shop.example"><img id="remote" src="{remote_url}">',
        subtype="html")
    html = message.get_payload()[1]  # type: ignore[index]
    html.add_related(LOGO, maintype="image", subtype="png", cid="<logo@shop.example>")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    return message


def _status(pat_up: PatUp, path: str) -> int:
    try:
        with urllib.request.urlopen(pat_up.base_url + path) as answer:
            return int(answer.status)
    except HTTPError as error:
        return error.code


def _inline_part_index(pat_up: PatUp, message_id: str, content_id: str) -> int:
    with urllib.request.urlopen(f"{pat_up.base_url}/api/v3/messages/{quote(message_id)}") as got:
        parts = json.load(got)["parts"]
    return int(next(p["index"] for p in parts if p["content_id"] == content_id))


def test_a_message_arrives_live_is_read_and_deleted(
        pat_up: PatUp, page: Page, remote_images: _CountingImageServer) -> None:
    page.goto("/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator(".empty")).to_be_visible()
    page.evaluate("window.samePage = true")

    _send(pat_up, _invoice(f"http://127.0.0.1:{remote_images.server_port}/pixel.png"))
    row = page.locator(".message", has_text="Invoice 1042")
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("processed")
    expect(row.locator(".from")).to_have_text("Billing <billing@shop.example>")
    assert page.evaluate("window.samePage") is True, "the list reloaded instead of updating"
    expect(page.locator("#total")).to_have_text("1 message")
    message_id = row.get_attribute("data-id")
    assert message_id

    row.locator("a").click()
    expect(page.locator("h1.subject")).to_have_text("Invoice 1042")
    expect(page.locator("#message-status")).to_have_text("processed")
    expect(page.locator(".field-cc")).to_have_text("ops@example.test")

    frame_element = page.locator("#body-frame")
    sandbox = frame_element.get_attribute("sandbox")
    assert sandbox is not None
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    body = page.frame_locator("#body-frame")
    expect(body.locator("#title")).to_have_text("Invoice 1042")
    logo = body.locator("#logo")
    index = _inline_part_index(pat_up, message_id, "logo@shop.example")
    expect(logo).to_have_attribute(
        "src", f"/api/v3/messages/{quote(message_id, safe='')}/parts/{index}")
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 16
    assert body.locator("#remote").evaluate("img => img.naturalWidth") == 0
    assert remote_images.hits == 0, "a remote image was fetched without being asked for"
    expect(page.locator("#remote-note")).to_be_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.locator("#remote-toggle").check()
    expect(body.locator("#remote")).to_have_js_property("naturalWidth", 16)
    assert remote_images.hits >= 1

    workflow = page.locator("#workflow-link")
    ui = f"http://127.0.0.1:{pat_up.ui_port}"
    assert workflow.get_attribute("href") == (
        f"{ui}/namespaces/default/workflows/{quote('email-' + message_id, safe='')}")

    attachment = page.locator(".attachment-link", has_text="invoice.pdf")
    expect(attachment).to_be_visible()
    with page.expect_download() as download:
        attachment.click()
    assert download.value.suggested_filename == "invoice.pdf"
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == PDF

    page.locator(".tabs [data-tab=text]").click()
    expect(page.locator("#text-body")).to_have_text("Hello Ada,\nyour invoice is attached.\n")
    page.locator(".tabs [data-tab=headers]").click()
    expect(page.locator("#headers")).to_contain_text("Invoice 1042")
    page.locator(".tabs [data-tab=raw]").click()
    expect(page.locator("#raw-source")).to_contain_text("Subject: Invoice 1042")

    page.locator("#delete-message").click()
    expect(page).to_have_url(f"{pat_up.base_url}/")
    expect(page.locator(".empty")).to_be_visible()
    assert _status(pat_up, f"/api/v3/messages/{quote(message_id, safe='')}") == 404


HOSTILE_SUBJECT = '<script>window.pwned = "subject"</script><img src=x onerror="window.pwned=1">'


def _hostile() -> EmailMessage:
    message = EmailMessage()
    message["From"] = '"<b onmouseover=alert(1)>Mallory</b>" <mallory@evil.example>'
    message["To"] = "dev@example.test"
    message["Subject"] = HOSTILE_SUBJECT
    message.set_content("<script>window.pwned = 'text'</script>\n")
    message.add_alternative(
        '<p id="probe">scripts blocked</p><p id="handler">handlers blocked</p>'
        '<script>document.getElementById("probe").textContent = "script ran";'
        'window.parent.pwned = "html"; alert("html")</script>'
        '<img src="data:," onerror="document.getElementById(\'handler\').textContent = '
        '\'handler ran\'; alert(2)">', subtype="html")
    return message


def test_a_hostile_message_runs_nothing(pat_up: PatUp, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")

    _send(pat_up, _hostile())
    row = page.locator(".message").first
    expect(row.locator(".subject")).to_have_text(HOSTILE_SUBJECT)
    expect(row.locator(".badge")).to_have_text("processed")
    expect(row.locator(".from")).to_contain_text("<b onmouseover=alert(1)>Mallory</b>")
    row.locator("a").click()

    expect(page.locator("h1.subject")).to_have_text(HOSTILE_SUBJECT)
    body = page.frame_locator("#body-frame")
    expect(body.locator("#probe")).to_have_text("scripts blocked")
    expect(body.locator("#handler")).to_have_text("handlers blocked")
    page.locator(".tabs [data-tab=text]").click()
    expect(page.locator("#text-body")).to_contain_text("<script>window.pwned = 'text'</script>")
    assert page.evaluate("window.pwned") is None
    assert page.title().startswith(HOSTILE_SUBJECT)

    # Opened on its own, outside the sandboxed frame, the body is still sandboxed by its CSP.
    body_url = page.locator("#body-frame").get_attribute("src")
    assert body_url
    answer = page.goto(body_url)
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "sandbox" in policy and "allow-scripts" not in policy
    expect(page.locator("#probe")).to_have_text("scripts blocked")
    expect(page.locator("#handler")).to_have_text("handlers blocked")
    assert dialogs == []
